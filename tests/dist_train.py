"""A tiny pretraining run for the multi-process tests (not a test module itself).

    python tests/dist_train.py SHARDS OUT --parallel ddp                               # one process
    torchrun --nproc_per_node 2 tests/dist_train.py SHARDS OUT --parallel ddp          # two, over gloo

Rank 0 writes OUT/final.safetensors (the trained LM's weights) next to the run's metrics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from safetensors.torch import save_file

from smoledge.tokenizer.shards import Shard
from smoledge.model.build import hf_config, init_model
from smoledge.model.config import ModelConfig
from smoledge.progress import Progress
from smoledge.train.config import HealthConfig, PretrainConfig
from smoledge.train.data import PackedSampler, validation_batches
from smoledge.train.loop import train
from smoledge.train.runtime import distributed_guard, world_from_env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("shards", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--parallel", default="ddp")
    ap.add_argument("--optimizer", default="adamw")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--mtp", type=int, default=0)
    ap.add_argument("--health", type=int, default=HealthConfig.interval, help="health.interval (0: monitors off)")
    args = ap.parse_args()
    cfg = PretrainConfig(max_steps=args.steps, batch_size=4, seq_len=64, warmup_steps=2, checkpoint_every=3,
                         eval_every=3, eval_batches=2, threads=1, optimizer=args.optimizer, parallel=args.parallel,
                         mtp_heads=args.mtp, tensorboard=False, health=HealthConfig(interval=args.health))
    model = init_model(hf_config(ModelConfig(preset="tiny"), vocab_size=1024), seed=0)
    sampler = PackedSampler(Shard.open(args.shards, "train"), 4, 64, seed=1)
    valid = validation_batches(Shard.open(args.shards, "valid"), 4, 64, 2)
    with distributed_guard():
        out = train(model, cfg, sampler, valid, args.out, Progress("dist"), {"parallel": "any"})
        if world_from_env()[0] == 0:
            save_file({n: p.detach().contiguous() for n, p in out.model.named_parameters()},
                      str(args.out / "final.safetensors"))


if __name__ == "__main__":
    main()
