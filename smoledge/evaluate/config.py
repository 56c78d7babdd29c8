"""Config section for evaluation: what is measured on each artifact, and the gates a build must pass."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from smoledge.config import Section


@dataclass
class EvalSetConfig(Section):
    name: str = ""
    """Name of the set in the report."""
    path: str = ""
    """JSONL file, one {"text": ..., "lang": ...} object per line (lang optional when `lang` is set)."""
    lang: str = ""
    """Language of rows that carry none (empty: every row must carry one)."""

    def __post_init__(self) -> None:
        if not self.name:
            self.fail("name", "an eval set needs a name")
        if not self.path:
            self.fail("path", "an eval set needs the path of its JSONL file")


@dataclass
class TaskConfig(Section):
    name: str = ""
    """Name of the task in the report (and in evaluate.gates.min_task_accuracy)."""
    path: str = ""
    """JSONL file of multiple-choice items."""
    format: Literal["auto", "hellaswag", "belebele", "belebele_cloze", "generic"] = "auto"
    """Row format: HellaSwag ({ctx, endings, label}), Belebele ({flores_passage, question, mc_answer1..4,
    correct_answer_num}, lm-eval's prompt with letters as choices), belebele_cloze (Belebele rows with the
    answers' text as continuations, the form small models are measured with; never auto-detected),
    generic ({context, choices, gold}); auto detects it from the first row."""
    limit: int = 0
    """Score at most this many items (0: all)."""
    lang: str = ""
    """Language of rows that carry no 'lang' (empty: such rows count only in the overall score)."""

    def __post_init__(self) -> None:
        if not self.name:
            self.fail("name", "a task needs a name")
        if not self.path:
            self.fail("path", "a task needs the path of its JSONL file")
        if self.limit < 0:
            self.fail("limit", f"must be >= 0, got {self.limit}")


@dataclass
class PasskeyConfig(Section):
    enabled: bool = True
    """Run the passkey retrieval grid (context lengths x needle depths)."""
    lengths: list[int] = field(default_factory=list)
    """Context lengths in tokens (empty: fractions and multiples of the trained length, up to the
    exported context, YaRN included)."""
    depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    """Needle depths, as fractions of the haystack (0: at the start, 1: just before the question)."""
    trials: int = 4
    """Prompts (each with its own random key and haystack) per cell."""
    threshold: float = 0.5
    """Accuracy under which the report says retrieval has fallen off."""

    def __post_init__(self) -> None:
        # The needle and question alone take ~45 tokens: shorter prompts hold no haystack.
        if any(n < 64 for n in self.lengths):
            self.fail("lengths", f"every length must be >= 64 tokens, got {self.lengths}")
        if not self.depths or any(not 0.0 <= d <= 1.0 for d in self.depths):
            self.fail("depths", f"needs at least one depth, each in [0, 1], got {self.depths}")
        if self.trials < 1:
            self.fail("trials", f"must be >= 1, got {self.trials}")
        if not 0.0 < self.threshold <= 1.0:
            self.fail("threshold", f"must be in (0, 1], got {self.threshold}")


@dataclass
class GatesConfig(Section):
    max_ppl_delta_pct: float | None = None
    """Largest held-out perplexity increase (%) of a device's artifact over the fp32 artifact of the same
    runtime. Artifacts over it are not selected for any device; if none is left the build fails."""
    min_passkey_accuracy: float | None = None
    """Lowest passkey retrieval accuracy (0..1, mean over depths) of a device's artifact at `passkey_context`."""
    passkey_context: int = 0
    """Context (tokens) min_passkey_accuracy applies at (0: the longest grid length the device runs that is
    within the model's trained context)."""
    min_task_accuracy: dict[str, float] = field(default_factory=dict)
    """Per task name (evaluate.tasks), the lowest accuracy of a device's artifact."""
    max_passkey_drop: float | None = None
    """Largest fall in passkey accuracy (0..1, at any context length the device runs) of a device's artifact
    below the fp32 PyTorch model's, on the same prompts. Like max_ppl_delta_pct it steers selection: an
    artifact over it is set aside and the next smallest one that passes the other gates is checked. A
    quantization can cost little perplexity and all of its long-context retrieval."""

    def __post_init__(self) -> None:
        if self.max_ppl_delta_pct is not None and not math.isfinite(self.max_ppl_delta_pct):
            self.fail("max_ppl_delta_pct", f"must be a finite number, got {self.max_ppl_delta_pct}")
        if self.min_passkey_accuracy is not None and not 0.0 <= self.min_passkey_accuracy <= 1.0:
            self.fail("min_passkey_accuracy", f"must be in [0, 1], got {self.min_passkey_accuracy}")
        if self.passkey_context < 0:
            self.fail("passkey_context", f"must be >= 0, got {self.passkey_context}")
        if self.max_passkey_drop is not None and not 0.0 <= self.max_passkey_drop <= 1.0:
            self.fail("max_passkey_drop", f"must be in [0, 1], got {self.max_passkey_drop}")
        for task, acc in self.min_task_accuracy.items():
            if not 0.0 <= acc <= 1.0:
                self.fail(f"min_task_accuracy.{task}", f"must be in [0, 1], got {acc}")


@dataclass
class EvaluateConfig(Section):
    seq_len: int = 256
    """Context window used to score held-out text."""
    max_tokens_per_language: int = 8192
    """Held-out tokens scored per language (caps eval time)."""
    gguf: bool = True
    """Also score the GGUF artifacts through llama.cpp, next to PyTorch."""
    onnx: bool = True
    """Also score the ONNX artifacts (fp32 and each int8) through onnxruntime, when export wrote them."""
    eval_sets: list[EvalSetConfig] = field(default_factory=list)
    """Your own held-out text (JSONL), scored per language on every artifact like the curated valid split."""
    tasks: list[TaskConfig] = field(default_factory=list)
    """Multiple-choice log-likelihood tasks (JSONL), run on the fp32 model and on each device's artifact."""
    passkey: PasskeyConfig = field(default_factory=PasskeyConfig)
    """Long-context retrieval grid, run on the fp32 model and on each device's artifact."""
    gates: GatesConfig = field(default_factory=GatesConfig)
    """Quality gates: a failing one fails the build, naming the gate, the measured value and the limit."""

    def __post_init__(self) -> None:
        if self.seq_len < 8:
            self.fail("seq_len", f"must be >= 8, got {self.seq_len}")
        if self.max_tokens_per_language < self.seq_len:
            self.fail("max_tokens_per_language", f"must be >= seq_len ({self.seq_len})")
        for key, items in (("eval_sets", self.eval_sets), ("tasks", self.tasks)):
            names = [i.name for i in items]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                self.fail(key, f"names must be unique, repeated: {', '.join(dup)}")
        unknown = sorted(set(self.gates.min_task_accuracy) - {t.name for t in self.tasks})
        if unknown:
            self.fail("gates.min_task_accuracy", f"names no task in evaluate.tasks: {', '.join(unknown)}; "
                      f"tasks: {', '.join(t.name for t in self.tasks) or 'none'}")
        if self.gates.min_passkey_accuracy is not None and not self.passkey.enabled:
            self.fail("gates.min_passkey_accuracy", "needs evaluate.passkey.enabled: true")
        if self.gates.max_passkey_drop is not None and not self.passkey.enabled:
            self.fail("gates.max_passkey_drop", "needs evaluate.passkey.enabled: true")
