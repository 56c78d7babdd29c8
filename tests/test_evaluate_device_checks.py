"""The passkey gate that steers selection (evaluate.gates.max_passkey_drop), on scorers built to retrieve:
a teacher-forced predictor that puts all its mass on the next token of the prompt retrieves every needle,
and one that is wrong past some length retrieves none there. Random tiny models retrieve nothing, so only a
constructed predictor can tell a check that stops early from one that reads every length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from smoledge.evaluate.config import EvaluateConfig
from smoledge.evaluate.device_checks import DeviceChecks, passkey_drop
from smoledge.progress import Progress

LENGTHS = [64, 128, 256]


class NextTokenOracle:
    """Scorer whose row t is one-hot on ids[t + 1] for windows of at most `good_up_to` ids and one-hot on
    the id after it beyond: it retrieves every needle up to that length and none past it."""

    def __init__(self, vocab: int, good_up_to: int):
        self.vocab, self.good_up_to, self.windows = vocab, good_up_to, []

    def window_logits(self, ids: list[int]) -> np.ndarray:
        self.windows.append(len(ids))
        out = np.zeros((len(ids), self.vocab), dtype=np.float32)  # (T, V)
        shift = 0 if len(ids) <= self.good_up_to else 1
        nxt = (np.asarray(ids[1:] + [0]) + shift) % self.vocab  # (T,)
        out[np.arange(len(ids)), nxt] = 10.0
        return out


@pytest.fixture()
def setup(tiny_tokenizer_dir: Path):
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    scorers = {"hf": NextTokenOracle(len(tok), 10**9), "model-q4_0.gguf": NextTokenOracle(len(tok), 64),
               "model-q8_0.gguf": NextTokenOracle(len(tok), 10**9)}
    filler = ["The committee met on Tuesday to discuss the budget for the coming year and the repairs."] * 40
    return tok, scorers, filler


def checks_for(tok, scorers, filler, gate: float | None) -> DeviceChecks:
    cfg = EvaluateConfig.from_dict({"seq_len": 64, "passkey": {"lengths": LENGTHS, "depths": [0.0, 0.5, 1.0],
                                                               "trials": 1},
                                    "gates": {"max_passkey_drop": gate}}, prefix="evaluate")
    return DeviceChecks(tok, filler, LENGTHS, {}, cfg, 256, lambda name, n_ctx, threads: scorers[name],
                        Progress("evaluate"))


def test_an_artifact_that_loses_retrieval_is_set_aside_after_the_first_failing_length(setup) -> None:
    tok, scorers, filler = setup
    checks = checks_for(tok, scorers, filler, 0.2)
    ref = checks.run("hf", LENGTHS, None, None)
    assert ref.passkey["by_length"] == {"64": 1.0, "128": 1.0, "256": 1.0}
    small = checks.run("model-q4_0.gguf", LENGTHS, 2, "pi", ref)
    # 64 passes, 128 falls by 1.0: the 256-token prompts are never read.
    assert small.passkey["by_length"] == {"64": 1.0, "128": 0.0} and small.passkey["stopped_after"] == 128
    assert max(scorers["model-q4_0.gguf"].windows) == 128
    assert passkey_drop(small, ref) == {"drop": 1.0, "length": 128, "accuracy": 0.0, "reference": 1.0}
    assert checks.passkey_problem(small, ref) == ("passkey accuracy 0.00 at 128 tokens against the PyTorch "
                                                  "model's 1.00: a drop of 1.00, gate max_passkey_drop is 0.20")
    checks.set_aside(small, "pi")
    big = checks.run("model-q8_0.gguf", LENGTHS, 2, "pi", ref)
    assert checks.passkey_problem(big, ref) is None and big.passkey["by_length"]["256"] == 1.0
    # A second device on the same artifact and lengths reuses the check instead of reading the prompts again.
    reads = len(scorers["model-q8_0.gguf"].windows)
    assert checks.run("model-q8_0.gguf", LENGTHS, 2, "laptop", ref) is big
    assert len(scorers["model-q8_0.gguf"].windows) == reads
    assert [c.label for c in checks.used()] == ["hf (fp32, PyTorch)", "model-q4_0.gguf set aside for pi (2 threads)",
                                                "model-q8_0.gguf on pi, laptop (2 threads)"]


def test_without_the_gate_every_length_is_read_and_nothing_is_set_aside(setup) -> None:
    tok, scorers, filler = setup
    checks = checks_for(tok, scorers, filler, None)
    ref = checks.run("hf", LENGTHS, None, None)
    small = checks.run("model-q4_0.gguf", LENGTHS, 2, "pi", ref)
    assert small.passkey["by_length"] == {"64": 1.0, "128": 0.0, "256": 0.0} and "stopped_after" not in small.passkey
    assert checks.passkey_problem(small, ref) is None


def test_a_device_that_runs_shorter_lengths_reads_the_references_prompts(setup) -> None:
    """The grid's prompts are built once for every length: at 128 the device reads exactly the reference's."""
    tok, scorers, filler = setup
    checks = checks_for(tok, scorers, filler, None)
    ref = checks.run("hf", LENGTHS, None, None)
    short = checks.run("model-q8_0.gguf", [64, 128], 2, "pi", ref)
    keys = lambda c, n: [(t["depth"], t["key"]) for t in c.passkey["trials"] if t["length"] == n]  # noqa: E731
    assert keys(short, 128) == keys(ref, 128) and short.passkey["lengths"] == [64, 128]
