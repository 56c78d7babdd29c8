"""Training-health monitors: each metric on inputs with known answers, the loop writing health.jsonl and
TensorBoard scalars, and planted pathologies (attention-logit blow-up, a collapsed layer, a loss spike)
caught as alerts in events.jsonl, each next to a healthy control that raises none."""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

import pytest
import torch

from smoledge.config import ConfigError
from smoledge.tokenizer.shards import Shard, write_split
from smoledge.evaluate.report import health_summary, read_health, render
from smoledge.model.build import hf_config, init_model
from smoledge.model.config import ModelConfig
from smoledge.progress import Progress
from smoledge.recipe import Recipe
from smoledge.stage import StageContext
from smoledge.train.config import HealthConfig, PretrainConfig
from smoledge.train.data import PackedSampler, validation_batches
from smoledge.train.health import (DEAD_RELATIVE, HealthMonitor, dead_units, effective_rank, token_rank,
                                   unit_stats)
from smoledge.train.loop import train
from smoledge.train.metrics import MetricsLog, read_metrics
from smoledge.train.stability import SpikeGuard

VOCAB = 1024


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the metrics, on known answers ------------------------------------------------------------

def test_effective_rank_known_spectra() -> None:
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(200, 1, generator=g), torch.randn(1, 48, generator=g)
    assert float(effective_rank(u @ v)) == pytest.approx(1.0, abs=1e-3)              # rank one
    q, _ = torch.linalg.qr(torch.randn(32, 32, generator=g, dtype=torch.float64))
    assert float(effective_rank(q)) == pytest.approx(32.0, rel=1e-4)                 # orthogonal: n equal sigmas
    # Singular values 3 and 1: p = (3/4, 1/4), exp(H) = exp(-(.75 ln .75 + .25 ln .25)) = 1.7548.
    assert float(effective_rank(torch.diag(torch.tensor([3.0, 1.0, 0.0])))) == pytest.approx(1.75478, abs=1e-4)
    assert float(effective_rank(torch.zeros(10, 4))) == 0.0
    assert math.isnan(float(effective_rank(torch.tensor([[1.0, math.nan], [0.0, 1.0]]))))


def test_token_rank_centres_and_subsamples() -> None:
    g = torch.Generator().manual_seed(1)
    same = torch.randn(1, 1, 16, generator=g).expand(2, 50, 16)                         # (B, T, C): one vector
    assert float(token_rank(same, 64)) == 0.0                                            # collapsed: nothing spanned
    # A large direction shared by every token over isotropic 8-dim noise: uncentred that is one dominant
    # singular value; centred, the tokens' own 8 directions show.
    mean = 50 * torch.randn(1, 1, 16, generator=g)
    noise = torch.zeros(2, 100, 16)
    noise[..., :8] = torch.randn(2, 100, 8, generator=g)
    hidden = mean + noise                                                                 # (2, 100, 16)
    assert float(effective_rank(hidden.reshape(-1, 16))) < 1.5
    assert 7.0 < float(token_rank(hidden, 200)) <= 8.0
    assert float(token_rank(hidden, 4)) <= 4.0                                           # only 4 tokens taken


def test_dead_units_definition() -> None:
    g = torch.Generator().manual_seed(2)
    gate, up = torch.randn(3, 40, 10, generator=g), torch.randn(3, 40, 10, generator=g)
    gate[..., 2] = -1.0 - gate[..., 2].abs()     # gate never positive, silu still passes signal: alive
    gate[..., 4] = -30.0                         # gate driven far negative: silu ~ -3e-12, dead
    up[..., 7] = 0.0                             # zeroed up row: dead
    a = torch.nn.functional.silu(gate) * up      # (B, T, I): SwiGLU unit activations
    peak, ms = unit_stats(a)
    assert peak.shape == (10,) and float(ms) == pytest.approx(float(a.pow(2).mean()))
    assert dead_units(peak, ms).nonzero().flatten().tolist() == [4, 7]
    # The boundary is relative to the layer's RMS: a unit at 2 x the threshold lives, at 0.5 x it is dead.
    rms = float(ms.sqrt())
    a[..., 4] = 2 * DEAD_RELATIVE * rms
    a[..., 7] = 0.5 * DEAD_RELATIVE * rms
    assert dead_units(*unit_stats(a)).nonzero().flatten().tolist() == [7]
    assert bool(dead_units(*unit_stats(torch.zeros(2, 5, 6))).all())                 # a vanished layer: all dead


def _tiny(seed: int = 0) -> torch.nn.Module:
    return init_model(hf_config(ModelConfig(preset="tiny"), vocab_size=VOCAB), seed=seed)


def _batch(seed: int = 0, rows: int = 2, T: int = 32) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, VOCAB, (rows, T), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "labels": ids.clone()}


def _measured_step(model, lr: float = 0.1, batch=None, monitor_kw: dict | None = None):
    """One SGD step measured by a HealthMonitor (interval 1): (record, alerts, grads, weights before)."""
    monitor = HealthMonitor(model, HealthConfig(interval=1, **(monitor_kw or {})), SpikeGuard(3.0, 5))
    batch = batch or _batch()
    try:
        model.train()
        probe = monitor.probe(1)
        model(**batch).loss.backward()
        probe.before_update(lambda: model(**batch))
        grads = [[p.grad.clone() for p in layer.parameters()] for layer in model.model.layers]
        before = [[p.detach().clone() for p in layer.parameters()] for layer in model.model.layers]
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
        record, alerts = probe.finish()
    finally:
        monitor.close()
    return record, alerts, grads, before


def test_per_layer_gradient_update_and_activation_numbers() -> None:
    model = _tiny()
    batch = _batch()
    with torch.no_grad():
        hidden = model.model(input_ids=batch["input_ids"], output_hidden_states=True).hidden_states
    record, alerts, grads, before = _measured_step(model, lr=0.1, batch=batch)
    L = len(model.model.layers)
    for i in range(L):
        g = torch.cat([t.flatten() for t in grads[i]])
        w = torch.cat([t.flatten() for t in before[i]])
        assert record["grad_norm"][i] == pytest.approx(float(g.norm()), rel=1e-5)
        # Plain SGD moves W by -lr * g, so RMS(dW) / RMS(W) = lr * |g| / |W|.
        assert record["update_ratio"][i] == pytest.approx(0.1 * float(g.norm()) / float(w.norm()), rel=1e-4)
    # hidden_states[i + 1] is layer i's output (the last one is taken after the final norm, so skip it).
    for i in range(L - 1):
        assert record["act_rms"][i] == pytest.approx(float(hidden[i + 1].pow(2).mean().sqrt()), rel=1e-5)
        assert record["erank"][i] == pytest.approx(float(token_rank(hidden[i + 1], 512)), rel=1e-4)
    assert record["dead_fraction"] == [0.0] * L and alerts == []
    assert len(record["attn_logit"]) == L and len(record["attn_logit"][0]) == model.config.num_attention_heads
    assert record["attn_logit_max"] == [max(row) for row in record["attn_logit"]]
    assert model.config._attn_implementation == "sdpa"  # close() put the stock attention back
    assert not any(layer._forward_hooks for layer in model.model.layers)


def test_attention_logits_scale_with_the_query_projection() -> None:
    """Logits are bilinear in (q, k): scaling layer 1's W_q by 10 multiplies its logits, and only its, by 10."""
    base, _, _, _ = _measured_step(_tiny(), lr=0.0)
    model = _tiny()
    with torch.no_grad():
        model.model.layers[1].self_attn.q_proj.weight *= 10
    scaled, _, _, _ = _measured_step(model, lr=0.0)
    assert scaled["attn_logit"][0] == pytest.approx(base["attn_logit"][0], rel=1e-5)
    assert scaled["attn_logit"][1] == pytest.approx([10 * v for v in base["attn_logit"][1]], rel=1e-4)


def test_dead_units_and_collapse_in_a_real_model() -> None:
    model = _tiny()
    mlp = model.model.layers[1].mlp
    half = mlp.gate_proj.weight.shape[0] // 2
    with torch.no_grad():
        mlp.gate_proj.weight[:half] = 0.0          # silu(0) = 0: half the units of layer 1 pass nothing
    record, alerts, _, _ = _measured_step(model, lr=0.0, monitor_kw={"max_dead_fraction": 0.4})
    assert record["dead_fraction"] == [0.0, 0.5]
    assert [a["alert"] for a in alerts] == ["dead_units"] and alerts[0]["layers"] == [[1, 0.5]]
    # Every embedding row the same vector: every token is the same vector in every layer.
    model = _tiny()
    with torch.no_grad():
        model.model.embed_tokens.weight[:] = model.model.embed_tokens.weight[5]
    record, alerts, _, _ = _measured_step(model, lr=0.0)
    assert record["erank"] == [0.0, 0.0]
    assert [a["alert"] for a in alerts] == ["collapse"] and [i for i, _ in alerts[0]["layers"]] == [0, 1]


def test_only_the_measuring_forward_records() -> None:
    model = _tiny()
    monitor = HealthMonitor(model, HealthConfig(interval=2), SpikeGuard(3.0, 5))
    try:
        assert monitor.probe(1) is None and monitor.probe(3) is None
        model.train()
        model(**_batch(1)).loss.backward()          # a training forward: no attention recorded, no hooks
        assert torch.isinf(monitor.qk.max_logits()).all()
        probe = monitor.probe(2)
        probe.before_update(lambda: model(**_batch(2)))
        recorded = monitor.qk.max_logits()
        assert torch.isfinite(recorded).all() and len(probe.erank) == len(probe.mlp_peak) == 2
        assert not any(layer._forward_hooks or layer.mlp.down_proj._forward_pre_hooks for layer in model.model.layers)
        model(**_batch(3))                          # training forwards after it add nothing
        model.eval()
        model(**_batch(4))                          # nor do evaluation forwards
        assert torch.equal(monitor.qk.max_logits(), recorded)
        probe.finish()
        assert torch.isinf(monitor.qk.max_logits()).all()  # reset for the next probe
    finally:
        monitor.close()


def test_eager_attention_models_are_measured_without_attention_logits() -> None:
    """Attention-map distillation runs the student with eager attention; the monitors' recorder (sdpa) must not
    replace it, so that run's records have every metric but the logits."""
    from smoledge.train.features import use_eager_attention

    model = _tiny()
    use_eager_attention(model)
    record, alerts, _, _ = _measured_step(model, lr=0.0)
    assert "attn_logit" not in record and len(record["erank"]) == 2 and alerts == []
    assert model.config._attn_implementation == "eager"


def test_bad_health_settings_name_the_key() -> None:
    for key, value, match in (("interval", -1, "pretrain.health.interval"), ("tokens", 1, "pretrain.health.tokens"),
                              ("spike_factor", 0.5, "pretrain.health.spike_factor"),
                              ("max_dead_fraction", 1.5, "pretrain.health.max_dead_fraction"),
                              ("max_attn_logit", 0, "pretrain.health.max_attn_logit")):
        with pytest.raises(ConfigError, match=match):
            Recipe.from_dict({"name": "x", "pretrain": {"health": {key: value}}})


def test_health_log_rewinds_like_metrics_and_writes_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLog(tmp_path, tensorboard=True, resume_step=None)
    for step in (2, 4, 6):
        log.health({"step": step, "grad_norm": [0.1 * step, 0.2], "attn_logit": [[1.0, 2.0], [3.0, float(step)]]})
    log.rewind(4)                                   # a rollback to the checkpoint at step 4: step 6 runs again
    log.health({"step": 6, "grad_norm": [9.0, 9.0], "attn_logit": [[0.0, 0.0], [0.0, 0.0]]})
    log.close()
    rows = read_metrics(tmp_path / "health.jsonl")
    assert [r["step"] for r in rows] == [2, 4, 6] and rows[-1]["grad_norm"] == [9.0, 9.0]
    acc = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert {"health/grad_norm/layer0", "health/grad_norm/layer1", "health/attn_logit/layer1/head1"} <= set(
        acc.Tags()["scalars"])
    MetricsLog(tmp_path, tensorboard=False, resume_step=None).close()  # a fresh start clears it
    assert not (tmp_path / "health.jsonl").exists()


# --- in the training loop -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def shards(tmp_path_factory, prose_texts, tiny_tokenizer_dir) -> Path:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    docs = []
    for i in range(0, min(len(prose_texts), 3000), 5):
        docs.append((tok("\n".join(prose_texts[i:i + 5]))["input_ids"] + [tok.eos_token_id], "xx", "prose"))
    out = tmp_path_factory.mktemp("shards")
    write_split(out, "train", [d for i, d in enumerate(docs) if i % 20], len(tok))
    write_split(out, "valid", docs[::20], len(tok))
    return out


class SpikeAt(PackedSampler):
    """The real sampler, except that the batches in `spike` get corrupt targets (one rare id everywhere)."""

    def __init__(self, *args, spike: set[int] = frozenset(), **kwargs):
        super().__init__(*args, **kwargs)
        self.spike = spike

    def batch(self, k: int):
        b = super().batch(k)
        if k in self.spike:
            b.labels[b.labels != -100] = VOCAB - 1
        return b


def _train(shards: Path, out: Path, steps: int = 12, model=None, sampler_cls=PackedSampler, sampler_kw=None,
           health: dict | None = None, **cfg_kw):
    cfg = PretrainConfig(**{"max_steps": steps, "batch_size": 4, "seq_len": 64, "warmup_steps": 2,
                            "checkpoint_every": 4, "eval_every": steps, "eval_batches": 1, "threads": 1,
                            "tensorboard": False, "health": HealthConfig(**{"interval": 2, **(health or {})}),
                            **cfg_kw})
    sampler = sampler_cls(Shard.open(shards, "train"), 4, 64, seed=1, **(sampler_kw or {}))
    valid = validation_batches(Shard.open(shards, "valid"), 4, 64, 1)
    outcome = train(model if model is not None else _tiny(), cfg, sampler, valid, out, Progress("t"), {"t": 1})
    return outcome, read_metrics(out / "health.jsonl"), [e for e in read_metrics(out / "events.jsonl")
                                                          if e["event"] == "alert"]


def test_pretrain_stage_writes_health_jsonl_and_tensorboard(tmp_path: Path, shards: Path, tiny_tokenizer_dir) -> None:
    import shutil

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from smoledge.train import pretrain

    recipe = Recipe.from_dict({"name": "t", "teacher": {"preset": "tiny", "max_position_embeddings": 256},
                               "pretrain": {"max_steps": 8, "batch_size": 4, "seq_len": 64, "warmup_steps": 2,
                                            "checkpoint_every": 4, "eval_every": 8, "eval_batches": 1, "threads": 1,
                                            "health": {"interval": 3}}})
    run_dir = tmp_path / "t"
    shutil.copytree(tiny_tokenizer_dir, run_dir / "tokenizer" / "tokenizer")
    shutil.copytree(shards, run_dir / "tokenizer" / "shards")
    (run_dir / "pretrain").mkdir()
    result = pretrain.run(StageContext(recipe=recipe, run_dir=run_dir, dir=run_dir / "pretrain", progress=Progress("p")))
    stage = run_dir / "pretrain"
    assert stage / "health.jsonl" in result.outputs
    rows = read_metrics(stage / "health.jsonl")
    assert [r["step"] for r in rows] == [3, 6]
    for r in rows:
        for key in ("grad_norm", "update_ratio", "act_rms", "erank", "dead_fraction", "attn_logit_max"):
            assert len(r[key]) == 2 and all(math.isfinite(v) for v in r[key]), key
        assert all(v > 0 for v in r["grad_norm"] + r["update_ratio"] + r["act_rms"] + r["erank"])
    tags = set(EventAccumulator(str(stage / "tensorboard")).Reload().Tags()["scalars"])
    for key in ("grad_norm", "update_ratio", "act_rms", "erank", "dead_fraction", "attn_logit_max"):
        assert f"health/{key}/layer0" in tags and f"health/{key}/layer1" in tags
    assert "health/attn_logit/layer1/head3" in tags
    # The saved model has the stock attention: the monitor's recorder is gone.
    assert json.loads((stage / "model" / "config.json").read_text()).get("_attn_implementation") in (None, "sdpa")


def test_monitors_do_not_change_training(tmp_path: Path, shards: Path) -> None:
    on, rows_on, _ = _train(shards, tmp_path / "on", steps=6, health={"interval": 1})
    off, rows_off, _ = _train(shards, tmp_path / "off", steps=6, health={"interval": 0})
    assert len(rows_on) == 6 and rows_off == [] and not (tmp_path / "off" / "health.jsonl").exists()
    a, b = on.model.state_dict(), off.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert on.val_loss == off.val_loss


def test_planted_lr_blows_up_attention_logits(tmp_path: Path, shards: Path) -> None:
    """An lr far too high grows q and k until softmaxes saturate; the sane lr stays far below the threshold."""
    health = {"interval": 4, "max_attn_logit": 100.0}
    _, sane, sane_alerts = _train(shards, tmp_path / "sane", steps=16, lr=3e-3, health=health)
    _, hot, hot_alerts = _train(shards, tmp_path / "hot" / "pretrain", steps=16, lr=0.3, spike_factor=0.0,
                                max_rollbacks=100, health=health)
    assert max(max(r["attn_logit_max"]) for r in sane) < 20
    assert not [a for a in sane_alerts if a["alert"] == "attention_logits"]
    logit_alerts = [a for a in hot_alerts if a["alert"] == "attention_logits"]
    assert logit_alerts, hot_alerts
    first = logit_alerts[0]
    assert first["value"] > 100 and first["step"] % 4 == 0 and "lower the lr or set qk_clip" in first["message"]
    assert max(max(r["attn_logit_max"]) for r in hot) > 100
    # ... and the evaluation report shows it: the alert, and the per-layer table of the last measured step.
    health = read_health(tmp_path / "hot")
    assert health["pretrain"]["alert_counts"]["attention_logits"] == len(logit_alerts)
    page = render({"name": "hot"}, {}, [], health)
    assert "Training health" in page and html.escape(first["message"]) in page
    assert f"{hot[-1]['attn_logit_max'][0]:.3g}" in page


def test_planted_collapsed_layer(tmp_path: Path, shards: Path) -> None:
    """Layer 1's MLP down-projection forced to rank one at 1000x its norm: its output, one direction, drowns
    the residual stream, so from layer 1 on the tokens' hidden states differ along one direction only.
    Layer 0 stays healthy, and so does an unplanted run."""
    model = _tiny()
    down = model.model.layers[1].mlp.down_proj.weight                      # (C, I)
    with torch.no_grad():
        u, v = torch.randn(down.shape[0], 1), torch.randn(1, down.shape[1])
        down.copy_(1000 * u @ v / (u.norm() * v.norm()) * down.norm())   # rank one
    _, rows, alerts = _train(shards, tmp_path / "planted", steps=3, model=model, health={"interval": 1})
    _, healthy_rows, healthy_alerts = _train(shards, tmp_path / "healthy", steps=3, health={"interval": 1})
    collapse = [a for a in alerts if a["alert"] == "collapse"]
    assert collapse and collapse[0]["step"] == 1 and [i for i, _ in collapse[0]["layers"]] == [1]
    assert rows[0]["erank"][1] < 2.0 < rows[0]["erank"][0]
    assert not [a for a in healthy_alerts if a["alert"] == "collapse"]
    assert min(min(r["erank"]) for r in healthy_rows) > 10


def test_planted_loss_spike(tmp_path: Path, shards: Path) -> None:
    """Batch 11's targets are corrupt (one rare id everywhere): its loss jumps ~1.4x above the running median
    (this early in training the model is too unsure of anything for more). At health.spike_factor 1.3 the
    alert names the step; the rollback guard (3x) lets it through, an alert is only an alert. The same run
    without the corrupt batch raises no alert at all."""
    kw = {"steps": 14, "lr": 1e-2, "spike_window": 5, "health": {"spike_factor": 1.3}}
    _, _, alerts = _train(shards, tmp_path / "planted", sampler_cls=SpikeAt, sampler_kw={"spike": {11}}, **kw)
    _, _, clean = _train(shards, tmp_path / "clean", **kw)
    spikes = [a for a in alerts if a["alert"] == "loss_spike"]
    assert [a["step"] for a in spikes] == [12] and spikes[0]["loss"] > 1.3 * spikes[0]["median"]
    assert "loss spike" in spikes[0]["message"]
    events = read_metrics(tmp_path / "planted" / "events.jsonl")
    assert [e["event"] for e in events if e["step"] == 12] == ["alert"]
    assert clean == []


def test_report_section_reads_the_current_attempt(tmp_path: Path) -> None:
    stage = tmp_path / "pretrain"
    stage.mkdir()
    records = [{"step": 50, "grad_norm": [0.5, 0.25], "update_ratio": [1e-3, 2e-3], "act_rms": [0.9, 1.4],
                "erank": [40.0, 1.5], "dead_fraction": [0.0, 0.125], "attn_logit": [[3.0, 4.0], [5.0, 6.0]],
                "attn_logit_max": [4.0, 6.0]}]
    (stage / "health.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 10')  # torn
    events = [{"event": "start", "step": 0}, {"event": "alert", "step": 5, "alert": "loss_spike", "message": "old run"},
              {"event": "start", "step": 0}, {"event": "resume", "step": 20},
              {"event": "alert", "step": 50, "alert": "collapse", "message": "effective rank below 2 in layers [1]"},
              {"event": "rollback", "step": 60}]
    (stage / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    health = read_health(tmp_path)
    assert list(health) == ["pretrain"] and health["pretrain"]["measured_steps"] == 1
    assert health["pretrain"]["alerts"] == [{"step": 50, "alert": "collapse",
                                             "message": "effective rank below 2 in layers [1]"}]
    assert health["pretrain"]["alert_counts"] == {"collapse": 1}
    assert "records" not in health_summary(health)["pretrain"]
    page = render({"name": "x"}, {}, [], health)
    assert "effective rank below 2 in layers [1]" in page and "old run" not in page
    for cell in ("<td class=\"num\">1.5</td>", "<td class=\"num\">12%</td>", "<td class=\"num\">2.00e-03</td>"):
        assert cell in page, cell
    assert page.count("<svg") == 1
    # report.json's summary alone (a re-render of an older report) still lists the alerts, without the plot.
    page = render({"name": "x", "training_health": health_summary(health)}, {}, [])
    assert "effective rank below 2 in layers [1]" in page and "per-layer health over the measured steps: no data" in page
    assert "No health records" in render({"name": "x"}, {}, [], {})


@pytest.mark.slow
def test_compiled_layers_measure_what_eager_does_without_a_graph_per_layer(tmp_path: Path, shards: Path) -> None:
    """The CUDA default (torch.compile per decoder layer), exercised on the CPU, with QK-clip on (tau 50, never
    reached here) so its recorder runs inside the compiled layers every step: the measuring forward runs
    eagerly (its hooks never reach a compiled graph: adding one would recompile the layer), the recorder
    takes its layer index as a buffer (an int would be a graph constant: a recompile per layer, past
    dynamo's limit at 8 layers), so no layer falls back to eager, and every layer's numbers match."""
    from torch._dynamo.utils import counters

    def model() -> torch.nn.Module:
        shape = ModelConfig(preset="custom", num_layers=8, hidden_size=64, intermediate_size=128, num_heads=4,
                            num_kv_heads=2, max_position_embeddings=256)
        return init_model(hf_config(shape, vocab_size=VOCAB), seed=0)

    _, eager, _ = _train(shards, tmp_path / "eager", steps=4, model=model(), qk_clip=50.0)
    torch._dynamo.reset()
    counters.clear()
    _, compiled, _ = _train(shards, tmp_path / "compiled", steps=4, model=model(), compile="on", qk_clip=50.0)
    assert counters["stats"]["unique_graphs"] > 0
    assert not [k for k in counters["unimplemented"] if "recompile limit" in k.lower()]
    assert [r["step"] for r in compiled] == [r["step"] for r in eager] == [2, 4]
    for e, c in zip(eager, compiled):
        for key in ("grad_norm", "update_ratio", "act_rms", "erank", "dead_fraction", "attn_logit_max"):
            assert c[key] == pytest.approx(e[key], rel=1e-3, abs=1e-6), key


@pytest.mark.slow
def test_two_fsdp_processes_measure_what_one_process_does(shards: Path, tmp_path: Path) -> None:
    """Under torchrun (2 CPU processes over gloo) with FSDP2 each rank sees half the batch and holds half of
    every parameter and gradient: the reduced per-layer numbers equal one process's on the whole batch. (The
    effective rank is each rank's own subsample, averaged: close to, not equal to, one process's.) DDP takes
    the same reductions minus the parameter sums (its replicas hold whole, identical gradients)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    script = [str(repo / "tests" / "dist_train.py"), str(shards)]
    flags = ["--parallel", "fsdp", "--health", "3"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, cmd in (("single", [sys.executable]), ("multi", torchrun)):
        done = subprocess.run([*cmd, script[0], script[1], str(tmp_path / name), *flags], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    # The measuring forward left training alone (FSDP2 keeps the root gathered after a forward: unless the
    # loop reshards, the next step would run on the weights from before the update).
    losses = [[r["loss"] for r in read_metrics(tmp_path / name / "metrics.jsonl")] for name in ("single", "multi")]
    assert losses[1] == pytest.approx(losses[0], abs=1e-5)
    one, two = (read_metrics(tmp_path / name / "health.jsonl") for name in ("single", "multi"))
    assert [r["step"] for r in one] == [r["step"] for r in two] == [3, 6]
    for a, b in zip(one, two):
        for key in ("grad_norm", "update_ratio", "act_rms", "dead_fraction", "attn_logit_max"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), key
        assert b["erank"] == pytest.approx(a["erank"], rel=0.2)
