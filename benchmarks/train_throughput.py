"""Training throughput (tokens/s): smoledge's loop against the Hugging Face Trainer and litgpt.

    .venv/bin/python benchmarks/train_throughput.py [--steps 20 --warmup 4 --threads 2 \
        --batch-size 8 --seq-len 256 --rounds 2 --peers smoledge,hf-trainer,hf-trainer-docmask,litgpt]
    .venv/bin/python benchmarks/train_throughput.py --breakdown   # where smoledge's step time goes

One shape for every peer: a SmolLM3 built by smoledge.model.build.hf_config from
ModelConfig(preset="custom", 4 layers, 256 hidden, 768 MLP, 4 heads, 2 KV heads), vocab 4096
(tied embeddings; litgpt gets the same dimensions in its own GPT), global batch B x T tokens,
AdamW (betas 0.9/0.95, weight decay 0.1, lr 1e-3 after a linear warm-up, grad-norm clip 1.0),
fp32 (--precision bf16: bf16 autocast for all), no torch.compile (--compile on: smoledge and the
Trainer compile; litgpt's pretrain always does), the same torch thread count and number of steps.

Data: real text, not random tokens. A byte-level BPE (vocab 4096, smoledge.tokenizer.bpe.train_bpe)
is trained on ../shared/data/prose, the prose is tokenized into 5-line documents and written
as token shards (smoledge.tokenizer.shards.write_split); smoledge.train.data.PackedSampler packs
batch k for every peer, so all of them train on the same rows.

Peers, each in its own fresh process (so one's compile workers, allocator or thread state
cannot help or hurt the next), in a rotating order over --rounds; the table keeps each
peer's best round:
  smoledge            smoledge.train.loop.train(model, cfg, sampler, valid, stage_dir, progress,
                      identity): packed rows with the explicit (B, 1, T, T) per-document mask,
                      position ids restarting per document, metrics.jsonl, checkpoints (made rare).
  hf-trainer          transformers.Trainer on the same rows as plain causal sequences (what
                      packing with the default collator gives: no document mask, so sdpa takes
                      its is_causal path and tokens attend across document boundaries).
  hf-trainer-docmask  transformers.Trainer on the same rows with the same 4-D mask and position
                      ids as smoledge: identical model work, so the ratio is loop overhead only.
  litgpt              litgpt.pretrain.setup (litgpt 0.5.13's real pretraining entry, as
                      `litgpt pretrain` runs it): Fabric on CPU, precision 32-true (bf16-mixed
                      with --precision bf16), 1 device, its
                      GPT with the same dimensions (LLaMAMLP, RMSNorm, no bias, GQA, tied
                      embeddings), data from a DataModule over the same packed rows, CSV logger.
                      It torch.compile()s the model (CPU inductor, C++ codegen): the compile lands
                      in the warm-up steps and the wall column.

Timing: the timed steps are those after --warmup (allocation, first-call and compile costs).
tokens/s = B x T / the median timed step (the table's main column: on a shared machine a burst of
someone else's load inflates a few steps, and the median ignores them); "mean" = B x T x timed
steps / their summed duration. Each peer's step is timed by itself: smoledge by the loop's own
per-step tokens_per_s in metrics.jsonl (batch packing + forward + backward + clip + optimizer
step; the eval and checkpoint that follow a step are outside it); the Trainer by a TrainerCallback from on_step_begin to on_step_end (forward,
backward, clip, optimizer, scheduler; the collated batch is already fetched); litgpt by the
`iter_time` it logs itself (forward, backward, clip, optimizer, loss .item(); the batch is
already fetched). So smoledge alone pays for building its batch inside the timed step.
"wall" is the whole training call: model build, compile, warm-up, evaluation, final checkpoint.
"probe" is a 1024^2 fp32 matmul timed just before the peer started (~250 GFLOP/s on the idle 2-core
dev machine): a low probe marks a round run under someone else's load. Under such load a 2-thread
training step slows far more than the probe (each of its many OpenMP regions waits for a thread
the kernel has parked), so compare rounds with similar probes only.

--breakdown times smoledge's step in parts on the same shape, round-robin in one process (batch
packing; forward+backward with the 4-D mask, plain causal, position ids only, bf16 autocast,
torch.compile, both; clip + AdamW step) to show where the time goes and what would shorten it.

Results: BENCHMARKS.md, "Training throughput (issue 4)".
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEERS = ("smoledge", "hf-trainer", "hf-trainer-docmask", "litgpt")
PROSE = REPO.parent / "shared" / "data" / "prose"
LR, BETAS, WEIGHT_DECAY, CLIP, SEED = 1e-3, (0.9, 0.95), 0.1, 1.0, 1234


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per peer (warm-up included)")
    p.add_argument("--warmup", type=int, default=4, help="first steps left out of the timing")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads for every peer")
    p.add_argument("--batch-size", type=int, default=8, help="packed rows per step (global batch)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per row")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--mlp", type=int, default=768)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="every peer: fp32, or bf16 autocast with fp32 weights (smoledge precision: bf16, "
                        "Trainer bf16=True, litgpt bf16-mixed)")
    p.add_argument("--compile", choices=("off", "on"), default="off",
                   help="torch.compile for smoledge (compile: on) and the Trainer (torch_compile=True); "
                        "litgpt's pretrain always compiles")
    p.add_argument("--rounds", type=int, default=2, help="runs per peer, rotating the order; best kept")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    p.add_argument("--prose", type=Path, default=PROSE, help="directory of *.txt prose for the tokenizer and shards")
    p.add_argument("--breakdown", action="store_true", help="time the parts of smoledge's step instead")
    # Internal: run one peer in this process and print its result as one JSON line.
    p.add_argument("--peer", choices=PEERS, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.warmup >= args.steps - 1:
        p.error(f"--warmup {args.warmup} leaves no timed steps out of --steps {args.steps}")
    unknown = set(args.peers.split(",")) - set(PEERS)
    if unknown:
        p.error(f"unknown peers {sorted(unknown)}; choose from {', '.join(PEERS)}")
    return args


# ----------------------------------------------------------------------------- shared setup

def build_shards(prose: Path, vocab: int, out: Path) -> Path:
    """Tokenizer + train/valid shards from real prose; returns the shards dir."""
    from smoledge.tokenizer.bpe import train_bpe
    from smoledge.tokenizer.shards import write_split

    files = sorted(prose.glob("*.txt"))
    if not files:
        sys.exit(f"no *.txt prose under {prose}; pass --prose DIR")
    texts = {f: [ln.strip() for ln in f.open(encoding="utf-8", errors="replace") if len(ln.strip()) > 40]
             for f in files}
    tok = train_bpe((ln for lines in texts.values() for ln in lines), vocab_size=vocab)
    docs = []
    for f, lines in texts.items():
        source, lang = f.stem.rsplit(".", 1)
        for i in range(0, len(lines), 5):
            docs.append((tok("\n".join(lines[i:i + 5]))["input_ids"] + [tok.eos_token_id], lang, source))
    shards = out / "shards"
    write_split(shards, "train", [d for i, d in enumerate(docs) if i % 20], vocab)
    write_split(shards, "valid", docs[::20], vocab)
    return shards


def model_config(args: argparse.Namespace):
    from smoledge.model.build import hf_config
    from smoledge.model.config import ModelConfig

    shape = ModelConfig(preset="custom", num_layers=args.layers, hidden_size=args.hidden,
                        intermediate_size=args.mlp, num_heads=args.heads, num_kv_heads=args.kv_heads,
                        max_position_embeddings=max(2048, args.seq_len))
    return hf_config(shape, vocab_size=args.vocab)


def sampler(args: argparse.Namespace):
    from smoledge.tokenizer.shards import Shard
    from smoledge.train.data import PackedSampler

    return PackedSampler(Shard.open(args.data, "train"), args.batch_size, args.seq_len, seed=SEED)


def timed(args: argparse.Namespace, step_seconds: list[float], wall: float, final_loss: float) -> dict:
    """A peer's result: tokens/s over the timed steps, by their median and by their mean duration."""
    tokens = args.batch_size * args.seq_len
    return {"tokens_per_s": tokens / statistics.median(step_seconds),
            "mean_tokens_per_s": tokens * len(step_seconds) / sum(step_seconds),
            "timed_steps": len(step_seconds), "wall_s": wall, "final_loss": final_loss}


# ----------------------------------------------------------------------------- peers

def run_smoledge(args: argparse.Namespace, work: Path, source=None, objective=None, **overrides) -> dict:
    """smoledge's loop on the sampler's batches (or `source`'s), with `objective` (default next-token) and
    PretrainConfig `overrides`."""
    from smoledge.model.build import init_model
    from smoledge.progress import Progress
    from smoledge.train.config import PretrainConfig
    from smoledge.train.data import validation_batches
    from smoledge.tokenizer.shards import Shard
    from smoledge.train.loop import train
    from smoledge.train.metrics import METRICS, read_metrics

    cfg = PretrainConfig(max_steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len, lr=LR,
                         beta1=BETAS[0], beta2=BETAS[1], weight_decay=WEIGHT_DECAY, grad_clip=CLIP,
                         warmup_steps=args.warmup, checkpoint_every=10 * args.steps, eval_every=10 * args.steps,
                         eval_batches=1, threads=args.threads, seed=SEED, tensorboard=False, device="cpu",
                         precision=args.precision, compile=args.compile, **overrides)
    model = init_model(model_config(args), seed=SEED)
    valid = validation_batches(Shard.open(args.data, "valid"), args.batch_size, args.seq_len, 1)
    stage = work / "smoledge"
    t0 = time.perf_counter()
    outcome = train(model, cfg, source or sampler(args), valid, stage, Progress("bench", log_every_s=1e9),
                    {"bench": "train_throughput"}, objective=objective)
    wall = time.perf_counter() - t0
    rows = [r for r in read_metrics(stage / METRICS) if "tokens_per_s" in r and r["step"] > args.warmup]
    tokens = args.batch_size * args.seq_len
    return timed(args, [tokens / r["tokens_per_s"] for r in rows], wall, outcome.final_train_loss)


class RowDataset:
    """The sampler's batches, flattened to rows, in the Trainer's dict format."""

    def __init__(self, args: argparse.Namespace, doc_mask: bool):
        import torch

        s = sampler(args)
        self.rows = []
        for k in range(args.steps):
            b = s.batch(k)
            # The model shifts labels itself: HF label t is the target of input t-1.
            labels = torch.full_like(b.labels, -100)
            labels[:, 1:] = b.labels[:, :-1]
            for i in range(args.batch_size):
                row = {"input_ids": b.input_ids[i], "labels": labels[i]}
                if doc_mask:
                    row["position_ids"] = b.position_ids[i]
                    row["attention_mask"] = b.attention_mask[i]  # (1, T, T)
                self.rows.append(row)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def run_hf(args: argparse.Namespace, work: Path, doc_mask: bool) -> dict:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from smoledge.model.build import init_model

    torch.set_num_threads(args.threads)
    data = RowDataset(args, doc_mask)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.t0, self.seconds = 0.0, []

        def on_step_begin(self, *a, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **kw):
            self.seconds.append(time.perf_counter() - self.t0)

    timer = StepTimer()
    targs = TrainingArguments(
        output_dir=str(work / "hf"), per_device_train_batch_size=args.batch_size, max_steps=args.steps,
        learning_rate=LR, adam_beta1=BETAS[0], adam_beta2=BETAS[1], weight_decay=WEIGHT_DECAY,
        max_grad_norm=CLIP, lr_scheduler_type="constant_with_warmup", warmup_steps=args.warmup,
        optim="adamw_torch", use_cpu=True, report_to=[], logging_strategy="no", save_strategy="no",
        eval_strategy="no", dataloader_num_workers=0, dataloader_pin_memory=False, disable_tqdm=True,
        seed=SEED, remove_unused_columns=False, bf16=args.precision == "bf16", torch_compile=args.compile == "on",
    )
    model = init_model(model_config(args), seed=SEED)
    t0 = time.perf_counter()
    trainer = Trainer(model=model, args=targs, train_dataset=data, callbacks=[timer])
    out = trainer.train()
    wall = time.perf_counter() - t0
    if torch.get_num_threads() != args.threads:
        raise RuntimeError(f"the Trainer changed the thread count to {torch.get_num_threads()}")
    return timed(args, timer.seconds[args.warmup:], wall, out.training_loss)


def run_litgpt(args: argparse.Namespace, work: Path) -> dict:
    import torch
    from litgpt.args import EvalArgs, TrainArgs
    from litgpt.data import DataModule
    from litgpt.model import Config
    from litgpt.pretrain import setup
    from torch.utils.data import DataLoader

    torch.set_num_threads(args.threads)
    s = sampler(args)
    rows = []
    for k in range(args.steps):
        b = s.batch(k)
        last = b.labels[:, -1:].clamp(min=0)  # the row's T+1-th token (-100 at a document end -> EOS id 0)
        rows.append(torch.cat([b.input_ids, last], dim=1))  # (B, T+1)
    rows = torch.cat(rows)  # (steps * B, T+1)

    class PackedRows(DataModule):
        """The same packed rows as the other peers, in order; litgpt cuts input/target itself."""

        def connect(self, tokenizer=None, batch_size=1, max_seq_length=None, **kw):
            self.batch_size = batch_size

        def train_dataloader(self):
            return DataLoader(rows, batch_size=self.batch_size, shuffle=False, num_workers=0)

        def val_dataloader(self):
            return DataLoader(rows[: 2 * self.batch_size], batch_size=self.batch_size, num_workers=0)

    config = Config(
        name="smoledge-bench", block_size=args.seq_len, vocab_size=args.vocab, padded_vocab_size=args.vocab,
        n_layer=args.layers, n_embd=args.hidden, n_head=args.heads, n_query_groups=args.kv_heads,
        head_size=args.hidden // args.heads, intermediate_size=args.mlp, mlp_class_name="LLaMAMLP",
        norm_class_name="RMSNorm", norm_eps=1e-6, bias=False, rotary_percentage=1.0, rope_base=10000,
        parallel_residual=False,
    )
    out_dir = work / "litgpt"
    # litgpt's final checkpoint re-parses sys.argv as its own CLI (parser_config.save_hyperparameters):
    # give it the command line `litgpt pretrain` would have had.
    sys.argv = ["litgpt", config.name]
    t0 = time.perf_counter()
    setup(
        model_name="smoledge-bench", model_config=config, out_dir=out_dir,
        precision="bf16-mixed" if args.precision == "bf16" else "32-true",
        data=PackedRows(),
        train=TrainArgs(save_interval=None, log_interval=1, global_batch_size=args.batch_size,
                        micro_batch_size=args.batch_size, max_tokens=args.steps * args.batch_size * args.seq_len,
                        lr_warmup_steps=args.warmup, max_norm=CLIP, min_lr=LR, tie_embeddings=True),
        eval=EvalArgs(interval=10 * args.steps, max_iters=1, initial_validation=False, final_validation=False),
        optimizer={"class_path": "torch.optim.AdamW",
                   "init_args": {"lr": LR, "betas": BETAS, "weight_decay": WEIGHT_DECAY}},
        devices=1, logger_name="csv", seed=SEED,
    )
    wall = time.perf_counter() - t0
    if torch.get_num_threads() != args.threads:
        raise RuntimeError(f"litgpt changed the thread count to {torch.get_num_threads()}")
    [log] = sorted(out_dir.glob("logs/csv/*/metrics.csv"))
    with open(log) as f:
        iters = [r for r in csv.DictReader(f) if r.get("iter_time")]
    steps = [float(r["iter_time"]) for r in iters if int(r["iter"]) > args.warmup]
    return timed(args, steps, wall, float(iters[-1]["loss"]))


def run_peer(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix=f"bench-{args.peer}-") as tmp:
        work = Path(tmp)
        if args.peer == "smoledge":
            return run_smoledge(args, work)
        if args.peer == "litgpt":
            return run_litgpt(args, work)
        return run_hf(args, work, doc_mask=args.peer == "hf-trainer-docmask")


# ----------------------------------------------------------------------------- breakdown

def breakdown(args: argparse.Namespace, reps: int = 10) -> None:
    """Time the parts of one smoledge step on this shape, round-robin (so a burst of someone else's
    load hits every part alike), median of `reps` each."""
    import torch

    from smoledge.model.build import init_model
    from smoledge.train.config import PretrainConfig
    from smoledge.train.losses import causal_lm_loss
    from smoledge.train.optim import build_optimizer

    torch.set_num_threads(args.threads)
    s = sampler(args)
    model = init_model(model_config(args), seed=SEED)
    compiled = torch.compile(model)
    optim = build_optimizer(model, PretrainConfig(lr=LR, beta1=BETAS[0], beta2=BETAS[1], max_steps=10, warmup_steps=1))
    params = [p for p in model.parameters() if p.requires_grad]
    b = s.batch(0)
    step = {"k": 0}

    def pack():
        step["k"] += 1
        s.batch(step["k"])

    def fwd_bwd(m=model, dtype=None, **inputs):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                logits = m(**inputs, use_cache=False).logits  # (B, T, V)
                causal_lm_loss(logits, b.labels).backward()
            model.zero_grad(set_to_none=True)
        return run

    def clip_and_step():
        for p in params:
            p.grad = torch.zeros_like(p)
        float(torch.nn.utils.clip_grad_norm_(params, CLIP))
        optim.step()
        optim.zero_grad()

    masked = b.model_inputs()
    parts = {
        "pack batch (sampler.batch: numpy + 4-D mask)": pack,
        "fwd+bwd, 4-D doc mask + position ids (smoledge)": fwd_bwd(**masked),
        "fwd+bwd, plain causal (is_causal sdpa)": fwd_bwd(input_ids=b.input_ids),
        "fwd+bwd, position ids only (HF packed detection)": fwd_bwd(input_ids=b.input_ids, position_ids=b.position_ids),
        "fwd+bwd, 4-D doc mask, bf16 autocast": fwd_bwd(dtype=torch.bfloat16, **masked),
        "fwd+bwd, 4-D doc mask, torch.compile": fwd_bwd(compiled, **masked),
        "fwd+bwd, 4-D doc mask, bf16 + torch.compile": fwd_bwd(compiled, dtype=torch.bfloat16, **masked),
        "clip + AdamW step": clip_and_step,
    }
    first = {}
    for name, fn in parts.items():  # first calls: allocation, kernel choice, compilation
        t0 = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(reps):
        for name, fn in parts.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    tokens = args.batch_size * args.seq_len
    base = statistics.median(times["fwd+bwd, 4-D doc mask + position ids (smoledge)"])
    print(f"smoledge step parts, B={args.batch_size} T={args.seq_len} threads={args.threads}, "
          f"round-robin median of {reps}:")
    for name, ts in times.items():
        sec = statistics.median(ts)
        print(f"  {name:50s} {sec * 1e3:8.1f} ms  {tokens / sec:8.0f} tok/s  {base / sec:5.2f}x  "
              f"(first call {first[name]:.1f} s)")


# ----------------------------------------------------------------------------- driver

def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.peer:
        result = run_peer(args)
        print("RESULT " + json.dumps({"peer": args.peer, **result}), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        t0 = time.perf_counter()
        args.data = build_shards(args.prose, args.vocab, Path(tmp))
        print(f"tokenizer + shards from {args.prose}: {time.perf_counter() - t0:.1f} s", flush=True)
        if args.breakdown:
            breakdown(args)
            return
        import torch

        from smoledge.train.metrics import measure_matmul_flops

        torch.set_num_threads(args.threads)
        peers = args.peers.split(",")
        results: dict[str, list[dict]] = {p: [] for p in peers}
        for rnd in range(args.rounds):
            order = peers[rnd % len(peers):] + peers[: rnd % len(peers)]
            for peer in order:
                # How much of the machine is ours right now: a 1024^2 fp32 matmul on --threads threads
                # (~250 GFLOP/s on the idle 2-core dev box; far less means someone else's load).
                probe = measure_matmul_flops(torch.device("cpu"), torch.float32, seconds=0.5) / 1e9
                cmd = [sys.executable, __file__, "--peer", peer, "--data", str(args.data)] + forwarded(args)
                proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode or not lines:
                    print(f"round {rnd + 1} {peer}: FAILED (exit {proc.returncode})\n{proc.stderr[-3000:]}", flush=True)
                    continue
                r = {**json.loads(lines[-1][len("RESULT "):]), "probe_gflops": probe}
                results[peer].append(r)
                print(f"round {rnd + 1} {peer:20s} {r['tokens_per_s']:7.0f} tok/s median step, "
                      f"{r['mean_tokens_per_s']:7.0f} mean, {r['timed_steps']} steps, wall {r['wall_s']:.1f} s, "
                      f"final loss {r['final_loss']:.3f}; probe {probe:.0f} GFLOP/s", flush=True)
    report(args, results)


def forwarded(args: argparse.Namespace) -> list[str]:
    keys = ("steps", "warmup", "threads", "batch_size", "seq_len", "layers", "hidden", "mlp", "heads", "kv_heads",
            "vocab", "precision", "compile")
    return [x for k in keys for x in (f"--{k.replace('_', '-')}", str(getattr(args, k)))]


def report(args: argparse.Namespace, results: dict[str, list[dict]]) -> None:
    best = {p: max(rs, key=lambda r: r["tokens_per_s"]) for p, rs in results.items() if rs}
    print(f"\nshape: {args.layers} layers x {args.hidden} hidden, MLP {args.mlp}, {args.heads} heads / "
          f"{args.kv_heads} KV, vocab {args.vocab}; B={args.batch_size} T={args.seq_len}; threads={args.threads}; "
          f"{args.steps} steps, first {args.warmup} untimed; {args.precision}, compile {args.compile} "
          f"(litgpt: always); best of {args.rounds} rounds by median step")
    ours = best.get("smoledge", {}).get("tokens_per_s", math.nan)
    ours_mean = best.get("smoledge", {}).get("mean_tokens_per_s", math.nan)
    print(f"| {'peer':20s} | {'tokens/s':>9s} | {'smoledge / peer':>15s} | {'mean tok/s':>10s} | {'ratio (mean)':>12s} "
          f"| {'wall s':>7s} | {'final loss':>10s} | {'probe GFLOP/s':>13s} |")
    print(f"|{'-' * 22}|{'-' * 10}:|{'-' * 16}:|{'-' * 11}:|{'-' * 13}:|{'-' * 8}:|{'-' * 11}:|{'-' * 14}:|")
    for peer, r in best.items():
        print(f"| {peer:20s} | {r['tokens_per_s']:9.0f} | {ours / r['tokens_per_s']:14.2f}x | "
              f"{r['mean_tokens_per_s']:10.0f} | {ours_mean / r['mean_tokens_per_s']:11.2f}x | {r['wall_s']:7.1f} | "
              f"{r['final_loss']:10.3f} | {r['probe_gflops']:13.0f} |")
    if "hf-trainer" in best and not math.isnan(ours):
        ratio = ours / best["hf-trainer"]["tokens_per_s"]
        print(f"target smoledge >= 1.2x the HF Trainer: {'met' if ratio >= 1.2 else 'missed'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
