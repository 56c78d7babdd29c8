"""Where training runs: device, precision, compile, and the torch.distributed process group.

    # one process, CPU or one GPU
    smoledge pretrain build/quickstart.yaml
    # data-parallel over 2 processes (gloo on CPU, nccl on GPUs), DDP or FSDP2 per `pretrain.parallel`
    torchrun --nproc_per_node 2 -m smoledge.cli pretrain build/quickstart.yaml

torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; `Runtime.from_config` joins the process
group they describe. Each step the global batch (`batch_size` rows, drawn
identically on every rank) is cut into world_size contiguous slices, one per rank,
so a 2-process run sees exactly the rows a single process sees.

`wrap` puts the model under DDP (replicas, gradients all-reduced) or FSDP2
(`fully_shard` per decoder layer and at the root: parameters, gradients and
optimizer state sharded). Shapes stay the same for the code above: FSDP2 keeps the
module class and parameter names, so checkpoints and export see one model either way.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Iterator

import torch
import torch.distributed as dist

from smoledge.config import ConfigError
from smoledge.train.config import TrainConfig

if TYPE_CHECKING:
    from smoledge.train.data import Batch


# Ranks other than 0 wait at a barrier while rank 0 runs a single-process stage (curation can
# take hours at scale), so collectives get far more than torch's 30-minute default.
WAIT = timedelta(hours=12)


def world_from_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) as torchrun exports them; (0, 1, 0) outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def ensure_process_group() -> None:
    """Join the torchrun process group once: gloo for CPU tensors, plus nccl for CUDA ones when
    there are GPUs (so CPU-side bookkeeping and GPU collectives share one group)."""
    _, world, local_rank = world_from_env()
    if world > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
            dist.init_process_group("cpu:gloo,cuda:nccl", timeout=WAIT)
        else:
            dist.init_process_group("gloo", timeout=WAIT)


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def agree(flag: bool) -> bool:
    """Rank 0's `flag`, on every rank (a one-int broadcast: no pickled objects between processes)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    t = torch.tensor([int(flag)])
    dist.broadcast(t, src=0)
    return bool(t.item())


@dataclass
class Runtime:
    device: torch.device
    """Where the model and batches live."""
    rank: int
    """This process's rank (0 outside torchrun)."""
    world: int
    """Processes in the job (1 outside torchrun)."""
    autocast_dtype: torch.dtype | None
    """bf16 under autocast, or None for plain fp32."""
    compile: bool
    """Whether decoder layers are torch.compile'd."""
    parallel: str
    """"single", "ddp" or "fsdp"."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_config(cls, cfg: TrainConfig, num_params: int) -> "Runtime":
        rank, world, local_rank = world_from_env()
        want = cfg.device
        if want == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device: 'cuda' but torch sees no CUDA device; use device: auto or cpu")
        use_cuda = want == "cuda" or (want == "auto" and torch.cuda.is_available())
        if use_cuda:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        ensure_process_group()
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
        compile_ = cfg.compile == "on" or (cfg.compile == "auto" and device.type == "cuda")
        parallel = "single"
        if world > 1:
            parallel = cfg.parallel
            if parallel == "auto":
                parallel = "fsdp" if num_params >= cfg.fsdp_min_params else "ddp"
            if cfg.batch_size % world:
                raise ConfigError(
                    f"batch_size: {cfg.batch_size} rows do not split over {world} processes; use a multiple "
                    f"of {world} (the global batch is cut into equal per-rank slices)"
                )
            if parallel == "fsdp" and cfg.qk_clip > 0:
                raise ConfigError("qk_clip: rescaling head rows of sharded weights is not supported under "
                                  "FSDP; use parallel: ddp or set qk_clip: 0")
        return cls(device=device, rank=rank, world=world, autocast_dtype=torch.bfloat16 if bf16 else None,
                   compile=compile_, parallel=parallel)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def local_rows(self, batch: "Batch") -> "Batch":
        """This rank's contiguous slice of the global batch, moved to the device."""
        rows = batch.input_ids.shape[0] // self.world
        lo = self.rank * rows
        fields = {k: t[lo:lo + rows].to(self.device, non_blocking=True) for k, t in batch.tensors().items()}
        return replace(batch, **fields)

    def all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """In place across ranks ("sum", "avg" or "max"); a no-op in a single process."""
        if self.world > 1:
            if op == "avg":
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
                t /= self.world
            else:
                dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return t

    def wrap(self, module: torch.nn.Module, layers: list[torch.nn.Module]) -> torch.nn.Module:
        """Move to the device, compile `layers` if asked, then DDP or FSDP2 across ranks."""
        module.to(self.device)
        if self.compile:
            # Per-layer compile keeps parameter names (no `_orig_mod.`) and composes with FSDP2.
            for layer in layers:
                layer.compile()
        if self.parallel == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            return DistributedDataParallel(module, device_ids=ids)
        if self.parallel == "fsdp":
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            mesh = init_device_mesh(self.device.type, (self.world,))
            for layer in layers:
                fully_shard(layer, mesh=mesh)
            fully_shard(module, mesh=mesh)
        return module


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module under DDP (FSDP2 shards in place, so there is nothing to unwrap)."""
    return getattr(module, "module", module)


@contextlib.contextmanager
def distributed_guard() -> Iterator[None]:
    """Tear the process group down on the way out, so torchrun workers exit cleanly."""
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
