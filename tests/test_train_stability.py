"""The spike/NaN guard, the data cursor and the runtime's up-front checks (pure, no training)."""

from __future__ import annotations

import math

import pytest
import torch

from smoledge.config import ConfigError
from smoledge.train.config import PretrainConfig
from smoledge.train.runtime import Runtime
from smoledge.train.stability import DataCursor, SpikeGuard


def test_guard_waits_for_a_full_window_then_compares_to_the_median() -> None:
    g = SpikeGuard(factor=2.0, window=3)
    assert g.check(100.0) is None  # no history yet: nothing to compare against
    for x in (3.0, 1.0, 50.0):
        g.accept(x)
    assert g.median() == 3.0  # the 50 outlier does not drag the reference up, as a mean would
    assert g.check(6.0) is None
    assert "spike" in g.check(6.1)
    assert "nan" in g.check(math.nan) and "inf" in g.check(1.0, grad_norm=math.inf)
    g.accept(2.0)  # the window slides: (1, 50, 2)
    assert g.median() == 2.0 and "spike" in g.check(4.5)
    restored = SpikeGuard(2.0, 3)
    restored.load(g.state())
    assert restored.check(4.5) == g.check(4.5) and list(restored.history) == [1.0, 50.0, 2.0]
    assert SpikeGuard(factor=0.0, window=3, history=[1.0] * 3).check(1e9) is None  # spikes off, NaN still on


def test_cursor_skips_marked_batches_and_round_trips() -> None:
    c = DataCursor(skipped={2, 3})
    assert [c.take() for _ in range(4)] == [0, 1, 4, 5]
    again = DataCursor.from_state(c.state(), also_skip={7})
    assert [again.take() for _ in range(2)] == [6, 8] and again.state()["skipped"] == [2, 3, 7]


def test_runtime_rejects_what_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device: 'cuda'"):
            Runtime.from_config(PretrainConfig(device="cuda"), num_params=10)
    rt = Runtime.from_config(PretrainConfig(), num_params=10)
    assert (rt.world, rt.parallel, rt.rank) == (1, "single", 0)
    assert rt.autocast_dtype is (torch.bfloat16 if torch.cuda.is_available() else None)
    assert Runtime.from_config(PretrainConfig(precision="bf16"), 10).autocast_dtype is torch.bfloat16


@pytest.mark.parametrize("key,value,match", [
    ("qk_clip", 0.5, "crush attention"),
    ("spike_factor", 0.9, "must be > 1"),
    ("spike_window", 2, ">= 3"),
    ("mtp_heads", -1, ">= 0"),
    ("mtp_kind", "diagonal", "mtp_kind"),
    ("parallel", "zero3", "parallel"),
])
def test_bad_stability_and_scale_settings_name_the_key(key: str, value, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as exc:
        PretrainConfig.from_dict({key: value})
    assert key in str(exc.value)
