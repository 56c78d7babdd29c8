"""Training metrics: JSONL + TensorBoard logs across resumes and rollbacks, the loss plot, FLOPs and MFU."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from smoledge.errors import SmoledgeError
from smoledge.model.build import hf_config, init_model, num_params
from smoledge.model.config import ModelConfig
from smoledge.train.metrics import (EVENTS, METRICS, PEAK_FLOPS_ENV, PLOT, TENSORBOARD, MetricsLog,
                                    flops_per_token, matmul_params, peak_flops, read_metrics, rollback_steps,
                                    table_peak)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _row(step: int, attempt: int = 0) -> dict:
    # `attempt` shifts the values so a test can tell which run wrote a point.
    row = {"step": step, "loss": 8.0 - 0.1 * step + attempt, "lr": 1e-3 * min(step, 4) / 4,
           "grad_norm": 1.0 + attempt, "tokens_per_s": 1000.0, "ce": 7.0, "note": "text"}
    if step % 4 == 0:
        row["val_loss"] = 7.5 - 0.1 * step + attempt
    return row


def _logged(stage: Path, steps: range, resume_step: int | None = None, attempt: int = 0,
            events: tuple[tuple[str, int, dict], ...] = (), tensorboard: bool = True) -> None:
    """One attempt: log `steps`, then record each (kind, step, info) event."""
    with MetricsLog(stage, tensorboard=tensorboard, resume_step=resume_step) as log:
        for k in steps:
            log.log(_row(k, attempt))
        for kind, step, info in events:
            log.event(kind, step, **info)


def _scalars(stage: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(stage / TENSORBOARD))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_log_writes_jsonl_and_tensorboard(tmp_path: Path) -> None:
    stage = tmp_path / "pretrain"
    _logged(stage, range(1, 9), events=(("rollback", 6, {"to_step": 4, "loss": 42.0}),))
    rows = read_metrics(stage / METRICS)
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert rows[3]["val_loss"] == pytest.approx(7.1) and rows[0]["note"] == "text"
    assert [s for s, _ in _scalars(stage, "train/loss")] == list(range(1, 9))
    assert [s for s, _ in _scalars(stage, "val/loss")] == [4, 8]
    assert _scalars(stage, "opt/lr")[0] == (1, pytest.approx(2.5e-4))
    assert [s for s, _ in _scalars(stage, "perf/tokens_per_s")] == list(range(1, 9))
    assert [s for s, _ in _scalars(stage, "train/ce")] == list(range(1, 9))
    acc = EventAccumulator(str(stage / TENSORBOARD))
    acc.Reload()
    assert "events/rollback/text_summary" in acc.Tags()["tensors"]
    assert "train/note" not in acc.Tags()["scalars"]  # non-numeric fields stay in the JSON line
    events = read_metrics(stage / EVENTS)
    assert [e["event"] for e in events] == ["start", "rollback"]
    assert events[1]["step"] == 6 and events[1]["to_step"] == 4 and events[1]["time"] > 0


def test_resume_truncates_and_purges_tensorboard(tmp_path: Path) -> None:
    stage = tmp_path / "pretrain"
    _logged(stage, range(1, 11), events=(("rollback", 9, {"to_step": 8}),))
    # The run died at step 10; the last checkpoint is step 6, so steps 7.. run again.
    _logged(stage, range(7, 13), resume_step=6, attempt=1)
    rows = read_metrics(stage / METRICS)
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert rows[5]["grad_norm"] == 1.0 and rows[6]["grad_norm"] == 2.0
    points = _scalars(stage, "opt/grad_norm")
    assert [s for s, _ in points] == list(range(1, 13))  # no step twice
    assert [v for _, v in points] == [1.0] * 6 + [2.0] * 6  # steps 7..10 of the dead run were purged
    assert [s for s, _ in _scalars(stage, "val/loss")] == [4, 8, 12]
    # The rollback of the earlier attempt is still on record, and still drawn.
    assert [e["event"] for e in read_metrics(stage / EVENTS)] == ["start", "rollback", "resume"]
    assert rollback_steps(stage / EVENTS) == [9]


def test_rewind_after_a_rollback_drops_the_steps_that_run_again(tmp_path: Path) -> None:
    stage = tmp_path / "pretrain"
    with MetricsLog(stage, tensorboard=True, resume_step=None) as log:
        for k in range(1, 9):
            log.log(_row(k))
        log.event("rollback", 8, to_step=5, loss=99.0)
        log.rewind(5)
        for k in range(6, 11):
            log.log(_row(k, attempt=1))
    assert [r["step"] for r in read_metrics(stage / METRICS)] == list(range(1, 11))
    assert [s for s, _ in _scalars(stage, "train/loss")] == list(range(1, 11))
    assert rollback_steps(stage / EVENTS) == [8]


def test_fresh_start_clears_a_stale_curve_but_keeps_events(tmp_path: Path) -> None:
    stage = tmp_path / "pretrain"
    _logged(stage, range(1, 4), events=(("rollback", 3, {"to_step": 0}),))
    assert (stage / PLOT).exists()
    # Died before the first checkpoint: the next attempt starts from step 0.
    with MetricsLog(stage, tensorboard=True, resume_step=None) as log:
        assert read_metrics(stage / METRICS) == []
        assert not (stage / PLOT).exists()
        log.log(_row(1, attempt=1))
    assert [r["grad_norm"] for r in read_metrics(stage / METRICS)] == [2.0]
    assert _scalars(stage, "opt/grad_norm") == [(1, 2.0)]
    assert [e["event"] for e in read_metrics(stage / EVENTS)] == ["start", "rollback", "start"]
    assert rollback_steps(stage / EVENTS) == []  # the old attempt's rollback is not this curve's


def test_read_metrics_drops_a_line_cut_by_a_kill(tmp_path: Path) -> None:
    path = tmp_path / METRICS
    path.write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n" + '{"step": 2, "lo')
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}]
    with MetricsLog(tmp_path, tensorboard=False, resume_step=1) as log:
        log.log({"step": 2, "loss": 1.5})
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    assert not (tmp_path / TENSORBOARD).exists()


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_loss_png_with_val_lr_and_rollbacks(tmp_path: Path) -> None:
    import matplotlib.image

    stage = tmp_path / "distill"
    _logged(stage, range(1, 21), tensorboard=False,
            events=(("rollback", 12, {"to_step": 10}), ("rollback", 17, {"to_step": 15}), ("lr_drop", 18, {})))
    assert rollback_steps(stage / EVENTS) == [12, 17]
    assert _png_size(stage / PLOT) == (800, 450)
    assert matplotlib.image.imread(stage / PLOT).shape[:2] == (450, 800)
    assert not list(stage.glob(".loss.png.*"))  # the temp file was renamed, not left behind


def test_loss_png_with_one_row_and_with_none(tmp_path: Path) -> None:
    one, none = tmp_path / "one", tmp_path / "none"
    with MetricsLog(one, tensorboard=False, resume_step=None) as log:
        log.log({"step": 1, "loss": 5.0, "lr": 1e-4})
    assert _png_size(one / PLOT) == (800, 450)
    log = MetricsLog(none, tensorboard=True, resume_step=None)
    log.close()
    log.close()  # idempotent
    assert not (none / PLOT).exists()


def test_log_needs_a_step(tmp_path: Path) -> None:
    with MetricsLog(tmp_path, tensorboard=False, resume_step=None) as log:
        with pytest.raises(ValueError, match="step"):
            log.log({"loss": 1.0})


# --------------------------------------------------------------------------- FLOPs and MFU

TINY = ModelConfig(preset="custom", num_layers=2, hidden_size=64, intermediate_size=192, num_heads=4,
                   num_kv_heads=2, max_position_embeddings=64)


def test_flops_per_token_hand_count() -> None:
    config = hf_config(TINY, vocab_size=1000)
    # head_dim 16: q 64x64, k 64x32, v 64x32, o 64x64 = 12288; MLP 3 x 64x192 = 36864; per layer 49152.
    n = 2 * 49152 + 1000 * 64  # + the tied lm_head
    assert matmul_params(config) == n == 162304
    # The only parameters left out are the RMSNorm weights: 2 per layer + the final norm.
    assert num_params(init_model(config, seed=0)) - n == (2 * 2 + 1) * 64
    assert flops_per_token(config, seq_len=32) == 6 * n + 12 * 2 * 4 * 16 * 32 == 1022976


def test_flops_per_token_matches_torch_flop_counter() -> None:
    """Forward + backward matmul FLOPs counted by torch on the real model equal the formula
    (eager attention computes the full T x T square, as the formula assumes)."""
    from torch.utils.flop_counter import FlopCounterMode

    config = hf_config(TINY, vocab_size=1000)
    config._attn_implementation = "eager"
    model = init_model(config, seed=0)
    b, t = 2, 32
    ids = torch.randint(0, 1000, (b, t))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
    # RoPE's angle table is one tiny matmul, (1, hd/2, 1) @ (1, 1, T) for the default position_ids,
    # forward only: not model FLOPs.
    rope = 2 * (16 // 2) * 1 * t
    assert counter.get_total_flops() - rope == flops_per_token(config, t) * b * t


def test_peak_flops_cpu_is_measured_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PEAK_FLOPS_ENV, raising=False)
    flops, source = peak_flops(torch.device("cpu"), torch.float32)
    assert source == "measured" and flops > 1e8
    t0 = time.perf_counter()
    again = peak_flops(torch.device("cpu"), torch.float32)
    assert again == (flops, "measured") and time.perf_counter() - t0 < 0.05  # cached, not re-timed


def test_peak_flops_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PEAK_FLOPS_ENV, "989e12")
    assert peak_flops(torch.device("cpu"), torch.bfloat16) == (989e12, "env")
    monkeypatch.setenv(PEAK_FLOPS_ENV, "fast")
    with pytest.raises(SmoledgeError, match=PEAK_FLOPS_ENV):
        peak_flops(torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("name, dtype, tf32, peak, key", [
    ("NVIDIA H200", torch.bfloat16, False, 989e12, "H200"),
    ("NVIDIA H100 80GB HBM3", torch.bfloat16, False, 989e12, "H100"),
    ("NVIDIA H100 PCIe", torch.float16, False, 756e12, "H100 PCIe"),
    ("NVIDIA A100-SXM4-80GB", torch.float32, True, 156e12, "A100"),   # not matched as "A10"
    ("NVIDIA A100-SXM4-80GB", torch.float32, False, 19.5e12, "A100"),
    ("NVIDIA A10G", torch.bfloat16, False, 125e12, "A10G"),
    ("NVIDIA L40S", torch.bfloat16, False, 362e12, "L40S"),           # not matched as "L4"
    ("NVIDIA L4", torch.bfloat16, False, 121e12, "L4"),
    ("NVIDIA GeForce RTX 4090", torch.bfloat16, False, 165.2e12, "RTX 4090"),
    ("Orin", torch.bfloat16, False, 42.5e12, "Orin"),
])
def test_table_peak_by_gpu_name(name: str, dtype: torch.dtype, tf32: bool, peak: float, key: str) -> None:
    assert table_peak(name, dtype, tf32) == (peak, f"table:{key}")


def test_table_peak_unknown_gpu_is_none() -> None:
    assert table_peak("Tesla K80", torch.float32, tf32=False) is None
