"""The stage contract: each stage's files are declared once (smoledge.layout), the orchestrator's dependency
edges cover every declared read, and no module spells another stage's file names."""

from __future__ import annotations

import re
from pathlib import Path

from smoledge.layout import BY_STAGE, READS, RunFiles
from smoledge.runs import STAGES, spec
from smoledge.stage import Stage

ROOT = Path(__file__).resolve().parents[1] / "smoledge"


def _upstream(name: str) -> set[str]:
    out: set[str] = set()
    for dep in spec(name).deps:
        out |= {dep} | _upstream(dep)
    return out


def test_every_stage_declares_its_files_and_hooks():
    assert [s.name for s in STAGES] == list(BY_STAGE) == list(READS)
    for s in STAGES:
        assert isinstance(s.stage, Stage), s.name
        assert s.dir == BY_STAGE[s.name].DIR


def test_reads_are_covered_by_dependencies_and_name_real_files():
    files = RunFiles(Path("runs/x"))
    for reader, reads in READS.items():
        for stage, prop in reads:
            assert stage in _upstream(reader), f"{reader} reads {stage}.{prop} but does not depend on {stage}"
            path = getattr(files.of(stage), prop)
            assert isinstance(path, Path) and path.is_relative_to(files.of(stage).dir), (reader, stage, prop)


def test_no_module_spells_a_stage_file_name():
    names = ("curated.parquet", "excluded.jsonl", "report.json", "report.md", "report.html", "parity.json",
             "prune.json", "cache.json", "topk.bin", "index.npy", "metrics.jsonl", "health.jsonl", "events.jsonl",
             "bundle.tar.gz", "stage.json", "inprogress.json", "imatrix.gguf", "kept.partial.arrow", "loss.png")
    literal = re.compile(r'"(%s)"|/ "(hf|model|shards)"' % "|".join(re.escape(n) for n in names))
    offenders = [f"{p.relative_to(ROOT.parent)}:{i}: {line.strip()}"
                 for p in sorted(ROOT.rglob("*.py")) if p.name != "layout.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if literal.search(line)]
    assert not offenders, "spell these through smoledge.layout:\n" + "\n".join(offenders)
