"""Where every stage's files live: the one place the pipeline's hand-offs are spelled.

Stages hand each other files. Each stage's directory and the files it writes are named here once,
and `READS` says which of another stage's files each stage reads; a stage reaches an upstream file
only through `ctx.files.<stage>.<file>`, never by spelling its name. The orchestrator
(smoledge.runs) takes the directory names from here too, and tests/test_layout.py checks that every
stage's declared reads come from stages it depends on.

    runs/<recipe name>/
      curate/         curated.parquet, excluded.jsonl
      tokenizer/      tokenizer/, shards/
      pretrain/       model/, metrics.jsonl, health.jsonl, events.jsonl, loss.png, checkpoints/
      teacher-cache/  cache.json, topk.bin, index.npy
      distill/        model/, prune.json, and the training logs as pretrain
      export/         hf/, model-<type>.gguf, onnx*/, imatrix.gguf, parity.json
      evaluate/       report.json, report.md, report.html
      bundle/         the bundle (its format: smoledge.serve.bundle); bundle.tar.gz beside it
      bench/          <device>.json from `smoledge bench --out`

Every stage directory also holds its record, `stage.json` (and `inprogress.json` while it runs).
Torch-free and import-free: boards and the CLI read it.

    from smoledge.layout import RunFiles
    files = RunFiles(Path("runs/quickstart"))
    files.curate.curated      # runs/quickstart/curate/curated.parquet
    files.export.gguf("q8_0") # runs/quickstart/export/model-q8_0.gguf
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# A stage's record: complete only when this exists and matches (smoledge.runs).
RECORD = "stage.json"
# Left by a stage while it runs; the next build with the same fingerprint resumes in place.
INPROGRESS = "inprogress.json"
# The training loop's logs and checkpoints, in the directory of the stage that trains (smoledge.train).
METRICS, HEALTH, EVENTS, PLOT, CHECKPOINTS = "metrics.jsonl", "health.jsonl", "events.jsonl", "loss.png", "checkpoints"
# A teacher cache's files; distill.cache_dir may point at another run's cache directory.
CACHE_META, CACHE_DATA, CACHE_INDEX = "cache.json", "topk.bin", "index.npy"


@dataclass(frozen=True)
class StageFiles:
    """One stage's directory."""

    dir: Path
    DIR = ""

    @property
    def record(self) -> Path:
        return self.dir / RECORD


class CurateFiles(StageFiles):
    DIR = "curate"

    @property
    def curated(self) -> Path:
        """The kept documents (text, lang, split, source, ...)."""
        return self.dir / "curated.parquet"

    @property
    def excluded(self) -> Path:
        """Every dropped document with the step and reason that dropped it."""
        return self.dir / "excluded.jsonl"

    @property
    def spill(self) -> Path:
        """Kept documents spilled to disk while curation runs (removed when it finishes)."""
        return self.dir / "kept.partial.arrow"

    @property
    def excluded_spill(self) -> Path:
        """Dropped documents' rows spilled to disk while curation runs (removed when it finishes)."""
        return self.dir / "excluded.partial.jsonl"


class TokenizerFiles(StageFiles):
    DIR = "tokenizer"

    @property
    def tokenizer(self) -> Path:
        """HF tokenizer directory (tokenizer.json, tokenizer_config.json, ...)."""
        return self.dir / "tokenizer"

    @property
    def shards(self) -> Path:
        """Packed token shards: train/valid splits with their .meta.json."""
        return self.dir / "shards"


class TrainFiles(StageFiles):
    """pretrain/ and distill/: a trained model and the logs of its training."""

    @property
    def model(self) -> Path:
        """The trained HF model directory (safetensors, config, tokenizer)."""
        return self.dir / "model"

    @property
    def metrics(self) -> Path:
        return self.dir / METRICS

    @property
    def health(self) -> Path:
        return self.dir / HEALTH

    @property
    def events(self) -> Path:
        return self.dir / EVENTS

    @property
    def plot(self) -> Path:
        return self.dir / PLOT

    @property
    def checkpoints(self) -> Path:
        return self.dir / CHECKPOINTS


class PretrainFiles(TrainFiles):
    DIR = "pretrain"


class DistillFiles(TrainFiles):
    DIR = "distill"

    @property
    def prune_report(self) -> Path:
        """What pruning kept of the teacher (init: prune)."""
        return self.dir / "prune.json"


class TeacherCacheFiles(StageFiles):
    DIR = "teacher-cache"

    @property
    def meta(self) -> Path:
        """Written last: a cache without it is incomplete."""
        return self.dir / CACHE_META

    @property
    def data(self) -> Path:
        return self.dir / CACHE_DATA

    @property
    def index(self) -> Path:
        return self.dir / CACHE_INDEX


# The fp32 ONNX export, the reference its int8 variants (onnx-int8-<target>/) are compared with.
ONNX_FP32 = "onnx"


class ExportFiles(StageFiles):
    DIR = "export"

    @property
    def hf(self) -> Path:
        """The model as an HF directory: the PyTorch reference of every other artifact."""
        return self.dir / "hf"

    def gguf(self, dtype: str) -> Path:
        return self.dir / f"model-{dtype}.gguf"

    def ggufs(self) -> list[Path]:
        return sorted(self.dir.glob("model-*.gguf"))

    @property
    def onnx(self) -> Path:
        return self.dir / ONNX_FP32

    def onnx_int8(self, target: str, static: bool = False) -> Path:
        """The int8 ONNX model for a CPU target (arm64, avx2, ...): dynamic, or static (QDQ, calibrated)."""
        return self.dir / f"{ONNX_FP32}-int8-{'static-' if static else ''}{target}"

    def onnx_dirs(self) -> list[Path]:
        """onnx/ and every int8 variant, the fp32 one first."""
        return sorted((d for d in self.dir.glob(f"{ONNX_FP32}*") if d.is_dir()),
                      key=lambda d: (d.name != ONNX_FP32, d.name))

    @property
    def imatrix(self) -> Path:
        return self.dir / "imatrix.gguf"

    @property
    def parity(self) -> Path:
        return self.dir / "parity.json"


class ReportFiles(StageFiles):
    """A directory whose result is a report: report.json (what was measured) and report.md (for people)."""

    @property
    def report(self) -> Path:
        return self.dir / "report.json"

    @property
    def markdown(self) -> Path:
        return self.dir / "report.md"


class EvaluateFiles(ReportFiles):
    """report.json holds everything measured, and each device's choice of artifact (package reads it)."""

    DIR = "evaluate"

    @property
    def html(self) -> Path:
        return self.dir / "report.html"


class PackageFiles(StageFiles):
    DIR = "bundle"

    @property
    def tokenizer(self) -> Path:
        """The bundle's tokenizer directory (tokenizer.json: what onnxruntime serving reads)."""
        return self.dir / "tokenizer"

    @property
    def archive(self) -> Path:
        """bundle.tar.gz, beside the bundle directory (with its .sha256)."""
        return self.dir.parent / "bundle.tar.gz"


class Arm64CheckFiles(ReportFiles):
    """Not a build stage (nothing writes its record): what `smoledge arm64-check` (smoledge.arm64.check)
    writes beside the stages."""

    DIR = "arm64-check"

    def fingerprints(self, machine: str) -> Path:
        """One machine's fingerprints of every artifact (machine: 'x86_64', 'aarch64')."""
        return self.dir / f"{machine}.npz"

    def bench(self, device: str) -> Path:
        return self.dir / f"bench-{device}.json"


@dataclass(frozen=True)
class RunFiles:
    """runs/<recipe name>/ and every stage's files in it."""

    root: Path

    @property
    def curate(self) -> CurateFiles:
        return CurateFiles(self.root / CurateFiles.DIR)

    @property
    def tokenizer(self) -> TokenizerFiles:
        return TokenizerFiles(self.root / TokenizerFiles.DIR)

    @property
    def pretrain(self) -> PretrainFiles:
        return PretrainFiles(self.root / PretrainFiles.DIR)

    @property
    def teacher_cache(self) -> TeacherCacheFiles:
        return TeacherCacheFiles(self.root / TeacherCacheFiles.DIR)

    @property
    def distill(self) -> DistillFiles:
        return DistillFiles(self.root / DistillFiles.DIR)

    @property
    def export(self) -> ExportFiles:
        return ExportFiles(self.root / ExportFiles.DIR)

    @property
    def evaluate(self) -> EvaluateFiles:
        return EvaluateFiles(self.root / EvaluateFiles.DIR)

    @property
    def package(self) -> PackageFiles:
        return PackageFiles(self.root / PackageFiles.DIR)

    @property
    def bench(self) -> Path:
        """`smoledge bench --out` results the report shows, one JSON per device."""
        return self.root / "bench"

    @property
    def arm64_check(self) -> Arm64CheckFiles:
        """`smoledge arm64-check` results: each machine's fingerprints, the comparison, serve and bench output."""
        return Arm64CheckFiles(self.root / Arm64CheckFiles.DIR)

    def training(self) -> tuple[TrainFiles, ...]:
        return (self.pretrain, self.distill)

    def of(self, stage: str) -> StageFiles:
        """A stage's files by its stage name."""
        return BY_STAGE[stage](self.root / BY_STAGE[stage].DIR)


# Each stage's files, by stage name (smoledge.runs.STAGES takes its directory names from here).
BY_STAGE: dict[str, type[StageFiles]] = {
    "curate": CurateFiles,
    "train-tokenizer": TokenizerFiles,
    "pretrain": PretrainFiles,
    "teacher-cache": TeacherCacheFiles,
    "distill": DistillFiles,
    "export": ExportFiles,
    "evaluate": EvaluateFiles,
    "package": PackageFiles,
}

# What each stage reads of the others: (stage, file property) pairs. The orchestrator's dependency
# edges (smoledge.runs.STAGES deps, directly or through another stage) must cover these, so a change
# upstream re-runs the reader;
# tests/test_layout.py checks it, and that every named file exists in the stage's class.
READS: dict[str, tuple[tuple[str, str], ...]] = {
    "curate": (),
    "train-tokenizer": (("curate", "curated"),),
    "pretrain": (("train-tokenizer", "tokenizer"), ("train-tokenizer", "shards")),
    "teacher-cache": (("train-tokenizer", "tokenizer"), ("train-tokenizer", "shards"),
                      ("train-tokenizer", "record"), ("pretrain", "model")),
    "distill": (("train-tokenizer", "tokenizer"), ("train-tokenizer", "shards"), ("pretrain", "model"),
                ("teacher-cache", "meta"), ("teacher-cache", "data"), ("teacher-cache", "index")),
    # The records feed the model card's provenance (data, tokenizer, teacher, student).
    "export": (("distill", "model"), ("train-tokenizer", "tokenizer"), ("train-tokenizer", "shards"),
               ("curate", "record"), ("train-tokenizer", "record"), ("pretrain", "record"), ("distill", "record")),
    "evaluate": (("curate", "curated"), ("export", "hf"), ("export", "parity"),
                 ("pretrain", "metrics"), ("pretrain", "health"), ("pretrain", "events"),
                 ("distill", "metrics"), ("distill", "health"), ("distill", "events")),
    "package": (("export", "hf"), ("export", "record"), ("evaluate", "report"), ("evaluate", "record")),
}
