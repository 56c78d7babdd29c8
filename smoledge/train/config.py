"""Config sections for pretraining (teacher) and distillation (student)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from smoledge.config import Section


@dataclass
class HealthConfig(Section):
    """Training-health monitors (smoledge.train.health): measured during training, alerts to events.jsonl."""

    interval: int = 50
    """Measure per-layer health (gradient norm, update/weight RMS, activation RMS, attention logits,
    effective rank, dead MLP units) every `interval` optimizer steps, into health.jsonl and TensorBoard.
    0 turns the monitors and their alerts off. At 50 they cost ~1% of throughput (BENCHMARKS.md, issue 10)."""
    tokens: int = 512
    """Tokens subsampled (evenly over the batch) for the effective rank: one SVD of (tokens, hidden) per layer."""
    spike_factor: float = 2.0
    """Alert (event `alert`, `loss_spike`) on a step whose loss exceeds spike_factor x the running median of
    the spike guard's window (train.spike_window). Only an alert: rollback is train.spike_factor's. 0 disables."""
    divergence_factor: float = 1.5
    """Alert (`divergence`) when the running median loss rises above divergence_factor x the lowest running
    median seen at a measured step (also, always, on a NaN/Inf loss or gradient). 0 disables the trend test."""
    max_attn_logit: float = 100.0
    """Alert (`attention_logits`) when any head's largest pre-softmax attention logit exceeds this (Kimi K2
    clips at 100; saturated softmaxes stop learning and precede loss spikes). With train.qk_clip on, keep it
    above qk_clip: logits are measured before each step's clip."""
    min_rank: float = 2.0
    """Alert (`collapse`) when a layer's hidden states have an effective rank below this (their tokens no
    longer point in distinguishable directions). 0 disables."""
    max_dead_fraction: float = 0.5
    """Alert (`dead_units`) when more than this fraction of a layer's MLP units are dead on the measured batch
    (see smoledge.train.health for the SwiGLU definition). 1 disables."""

    def __post_init__(self) -> None:
        if self.interval < 0:
            self.fail("interval", f"must be >= 0 (0 turns the monitors off), got {self.interval}")
        if self.tokens < 2:
            self.fail("tokens", f"an effective rank needs at least 2 tokens, got {self.tokens}")
        for key in ("spike_factor", "divergence_factor"):
            value = getattr(self, key)
            if value < 0 or 0 < value <= 1:
                self.fail(key, f"must be > 1 (or 0 to disable), got {value}")
        if not self.max_attn_logit > 0:
            self.fail("max_attn_logit", f"must be > 0, got {self.max_attn_logit}")
        if self.min_rank < 0:
            self.fail("min_rank", f"must be >= 0, got {self.min_rank}")
        if not 0.0 <= self.max_dead_fraction <= 1.0:
            self.fail("max_dead_fraction", f"must be in [0, 1], got {self.max_dead_fraction}")


@dataclass
class TrainConfig(Section):
    max_steps: int = 300
    """Optimizer steps."""
    batch_size: int = 8
    """Packed sequences per step (global batch)."""
    seq_len: int = 256
    """Tokens per packed sequence."""
    optimizer: Literal["adamw", "muon"] = "adamw"
    """AdamW everywhere, or Muon on 2-D hidden matrices with AdamW on the rest."""
    lr: float = 3e-3
    """Peak learning rate (AdamW's; Muon's is RMS-matched to it)."""
    min_lr_ratio: float = 0.0
    """Final lr as a fraction of the peak."""
    weight_decay: float = 0.1
    """Decoupled weight decay (never on embeddings or norms)."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    schedule: Literal["wsd", "cosine"] = "wsd"
    """Warmup-stable-decay, or warmup then cosine."""
    warmup_steps: int = 20
    """Linear warmup steps."""
    decay_fraction: float = 0.1
    """WSD: fraction of steps spent in the final linear decay."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (0 disables)."""
    checkpoint_every: int = 50
    """Steps between resumable checkpoints."""
    eval_every: int = 100
    """Steps between validation-loss evaluations."""
    eval_batches: int = 4
    """Validation batches per evaluation."""
    threads: int = 0
    """torch intra-op threads (0: all local cores)."""
    seed: int = 1234
    """Seed for init and data order."""
    z_loss: float = 0.0
    """Weight of the z-loss (mean squared log-partition, PaLM uses 1e-4); 0 disables. Keeps
    logits from drifting to large magnitudes, which bf16 and quantized exports punish."""
    qk_clip: float = 0.0
    """QK-clip threshold tau (MuonClip, Kimi K2 uses 100): after each step, any head whose largest
    attention logit exceeded tau has its query/key projections scaled back to tau. 0 disables."""
    mtp_heads: int = 0
    """Extra multi-token-prediction depths k: depth d predicts the token d+1 positions ahead.
    0 disables. The heads are an auxiliary loss only and never reach the exported model."""
    mtp_kind: Literal["parallel", "sequential"] = "parallel"
    """`parallel`: k independent transformer-block heads on the trunk (Gloeckle et al. 2024).
    `sequential`: DeepSeek-V3 modules, each fed the previous depth and the next token's embedding."""
    mtp_weight: float = 0.3
    """lambda: the MTP loss (mean over depths) is added with this weight."""
    spike_factor: float = 3.0
    """A loss above spike_factor x the running median of the last spike_window steps counts as a
    spike: roll back to the last checkpoint and skip the batch. 0 disables (NaN/Inf still roll back)."""
    spike_window: int = 50
    """Steps in the running median the spike test compares against (it waits for a full window)."""
    max_rollbacks: int = 5
    """Rollbacks allowed in one run before it stops with an error (something beyond one bad batch)."""
    parallel: Literal["auto", "ddp", "fsdp"] = "auto"
    """Under torchrun: `ddp` replicates the model, `fsdp` shards it (FSDP2 fully_shard); `auto`
    picks fsdp above fsdp_min_params parameters. Ignored in a single process."""
    fsdp_min_params: int = 1_000_000_000
    """`parallel: auto` shards models with at least this many parameters."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto`: CUDA when available (each torchrun rank takes its LOCAL_RANK GPU), else CPU."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """`bf16` runs forward/backward under bf16 autocast with fp32 weights and optimizer state;
    `auto` is bf16 on CUDA and fp32 on CPU."""
    compile: Literal["auto", "on", "off"] = "auto"
    """torch.compile the model; `auto` compiles on CUDA only (on CPU the compile time outweighs
    the gain for small runs)."""
    loss_chunk: int = 512
    """Positions per chunk of the LM head and its loss (smoledge.train.fused_head): logits, loss and their
    gradients are made a chunk at a time, so the (batch_size x seq_len, vocab) logits never exist whole,
    for the same loss. At 8 x 256 positions, 512 wide, a 49,152 vocabulary, fp32 on 2 CPU cores: 1.0 GB
    less peak memory and 13% more tokens/s than the whole logits (benchmarks/train_vs_hf_trainer.py,
    BENCHMARKS.md). 0 makes the whole logits and takes the loss from them: the reference path the chunked
    one is tested against."""
    lean_activations: bool = True
    """Train with smoledge.train.lean_ops' RMSNorm, SwiGLU and GQA attention: the same function and
    gradients, with fewer activations kept for backward (per layer 2 x (hidden + intermediate) + 2 x
    (heads - kv_heads) x head_dim floats a token; 1408 -> 855 MiB for the SmolLM2 student's 8 x 256
    batch). false trains the stock transformers modules: the reference the lean ones are tested against."""
    tensorboard: bool = True
    """Also write metrics as TensorBoard events under <stage>/tensorboard."""
    health: HealthConfig = field(default_factory=HealthConfig)
    """Training-health monitors and their alerts (`pretrain.health.interval: 0` turns them off)."""

    def __post_init__(self) -> None:
        for key in ("max_steps", "batch_size", "seq_len", "checkpoint_every", "eval_every", "eval_batches"):
            if getattr(self, key) <= 0:
                self.fail(key, f"must be > 0, got {getattr(self, key)}")
        if self.lr <= 0:
            self.fail("lr", f"must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            self.fail("min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 <= self.warmup_steps < self.max_steps:
            self.fail("warmup_steps", f"must be in [0, max_steps={self.max_steps}), got {self.warmup_steps}")
        if not 0.0 <= self.decay_fraction <= 1.0:
            self.fail("decay_fraction", f"must be in [0, 1], got {self.decay_fraction}")
        for key in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                self.fail(key, f"must be in [0, 1), got {getattr(self, key)}")
        for key in ("weight_decay", "grad_clip", "threads", "z_loss", "qk_clip", "mtp_heads", "mtp_weight",
                    "spike_factor", "max_rollbacks", "fsdp_min_params", "loss_chunk"):
            if getattr(self, key) < 0:
                self.fail(key, f"must be >= 0, got {getattr(self, key)}")
        if 0 < self.qk_clip <= 1:
            self.fail("qk_clip", f"tau is a logit bound (Kimi K2 uses 100); {self.qk_clip} would crush attention")
        if 0 < self.spike_factor <= 1:
            self.fail("spike_factor", f"must be > 1 (or 0 to disable), got {self.spike_factor}")
        if self.spike_window < 3:
            self.fail("spike_window", f"must be >= 3 for a median to mean anything, got {self.spike_window}")


@dataclass
class PretrainConfig(TrainConfig):
    """Teacher pretraining on the tokenized shards."""


@dataclass
class DistillConfig(TrainConfig):
    teacher: str = ""
    """The teacher: empty for the one this recipe pretrains (runs/<name>/pretrain/model), else any HF
    causal-LM directory or hub id (e.g. HuggingFaceTB/SmolLM3-3B). An external teacher skips pretraining;
    its tokenizer must be the one the shards were made with (tokenizer.pretrained)."""
    alpha: float = 0.5
    """Weight of the hard-label cross-entropy; (1 - alpha) goes to the soft (teacher) term."""
    temperature: float = 1.0
    """Softmax temperature of the soft term (scaled by T^2). On the quickstart, T = 2 made the student worse
    than training from scratch and T = 1 better (BENCHMARKS.md, "Distillation")."""
    divergence: Literal["forward", "reverse", "js"] = "forward"
    """Soft term: `forward` KL(teacher || student) (mass-covering, Hinton), `reverse` KL(student ||
    teacher) (mode-seeking, MiniLLM), `js` Jensen-Shannon (bounded, symmetric)."""
    top_k: int = 64
    """Sparse distillation: keep the teacher's k most likely tokens per position and lump the rest of its
    mass (and the student's) into one tail bin, so the divergence is over k + 1 outcomes. 0: the full
    vocabulary (online mode only: a dense cache would hold V values per token)."""
    mode: Literal["cache", "online"] = "cache"
    """`cache`: the teacher-cache stage writes the teacher's top-k log-probs for every batch once, and
    distillation reads them memory-mapped with no teacher in memory; `online`: the teacher runs in the
    loop (needed for top_k 0 and for feature distillation)."""
    cache_dir: str | None = None
    """mode cache: use a teacher cache another run built (its teacher-cache directory) instead of building
    one; refused unless it was made from the same teacher, tokenizer, data and batches."""
    init: Literal["random", "prune"] = "random"
    """Student initialisation: `random`, or `prune` from the teacher (Minitron): keep the most important
    layers (block influence), then the most important hidden channels, heads and MLP neurons (activation
    magnitude on calibration batches) down to the student shape."""
    hidden_weight: float = 0.0
    """Feature distillation (online only): weight of matching student hidden states, through a learned
    linear projection, to the teacher's at evenly mapped layers (MSE). 0 disables."""
    attention_weight: float = 0.0
    """Feature distillation (online only): weight of attention-map transfer, KL between the teacher's and
    the student's head-averaged attention rows at mapped layers. 0 disables."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            self.fail("alpha", f"must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            self.fail("temperature", f"must be > 0, got {self.temperature}")
        if self.top_k < 0:
            self.fail("top_k", f"must be >= 0 (0: the full vocabulary), got {self.top_k}")
        if self.mode == "cache" and self.top_k == 0:
            self.fail("top_k", "a cache holds the teacher's top-k only; set top_k (e.g. 64) or mode: online")
        for key in ("hidden_weight", "attention_weight"):
            if getattr(self, key) < 0:
                self.fail(key, f"must be >= 0, got {getattr(self, key)}")
            if getattr(self, key) > 0 and self.mode != "online":
                self.fail(key, "feature distillation needs the teacher's hidden states in the loop; "
                               "set distill.mode: online")
        if self.attention_weight > 0 and self.qk_clip > 0:
            self.fail("attention_weight", "attention maps need eager attention, and qk_clip installs its own; "
                                          "set one of distill.attention_weight / distill.qk_clip to 0")
        if self.cache_dir is not None and self.mode != "cache":
            self.fail("cache_dir", "is only read with mode: cache; remove it or set distill.mode: cache")
