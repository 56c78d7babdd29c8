"""Resumable training checkpoints and the final HF model directory. No pickle anywhere.

    from smoledge.train.checkpoint import save_checkpoint, latest_checkpoint, load_checkpoint
    save_checkpoint(stage_dir, step, module, optim, identity, extra={"data": cursor.state()})
    path = latest_checkpoint(stage_dir)            # None when there is none
    state = load_checkpoint(path, module, optim, identity)   # restores everything, returns state.json

Layout of stage_dir/checkpoints/step-000050/ (written whole by atomic_dir, so a
directory that exists is complete):
  model.safetensors      weights of everything trained (tied embeddings stored once,
                         MTP heads included)
  tensors.safetensors    optimizer tensors and the torch RNG state
  state.json             step (the lr-schedule position: a pure function of it),
                         optimizer structure and scalars, numpy/python RNG, the run
                         identity (config) and its fingerprint, and `extra`: the data
                         position (next batch index, skipped batches) and the spike
                         guard's window
Only the last KEEP checkpoints are kept.

Under torch.distributed every rank calls save/load (gathering FSDP2 shards is a
collective), rank 0 alone writes, and tensors are stored whole: a checkpoint does
not depend on the world size or on DDP vs FSDP2, so a run may resume on another
number of processes.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.distributed.tensor import DTensor, distribute_tensor

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_dir
from smoledge.layout import CHECKPOINTS
from smoledge.train.optim import Optimizers
from smoledge.train.runtime import barrier

KEEP = 2
PREFIX = "step-"


def fingerprint(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _flatten_optimizer(states: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Split optimizer state dicts into named tensors and a JSON-able skeleton pointing at them."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = []
    for i, sd in enumerate(states):
        state_json: dict[str, dict[str, Any]] = {}
        for pid, per_param in sd["state"].items():
            entry = {}
            for key, value in per_param.items():
                if isinstance(value, torch.Tensor):
                    name = f"opt{i}.{pid}.{key}"
                    tensors[name] = _whole(value)
                    entry[key] = {"tensor": name}
                else:
                    entry[key] = {"value": value}
            state_json[str(pid)] = entry
        skeleton.append({"state": state_json, "param_groups": sd["param_groups"]})
    return tensors, skeleton


def _whole(t: torch.Tensor) -> torch.Tensor:
    """A full, contiguous CPU copy (gathers an FSDP2 shard: every rank must call this in the same order)."""
    if isinstance(t, DTensor):
        t = t.full_tensor()
    return t.detach().to("cpu", copy=True).contiguous()


def _like(saved: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """`saved` (whole, CPU) laid out like `live`: sharded the same way if live is a DTensor."""
    if isinstance(live, DTensor):
        return distribute_tensor(saved.to(live.device), live.device_mesh, live.placements)
    return saved


def _unflatten_optimizer(skeleton: list[dict[str, Any]], tensors: dict[str, torch.Tensor],
                         optim: Optimizers) -> list[dict[str, Any]]:
    states = []
    for sk, opt, live_sd in zip(skeleton, optim.optimizers, optim.state_dicts()):
        # state_dict ids number the parameters in param_group order.
        params = [p for g in opt.param_groups for p in g["params"]]
        state = {}
        for pid, entry in sk["state"].items():
            param = params[int(pid)]
            state[int(pid)] = {
                k: (_like(tensors[v["tensor"]], param) if "tensor" in v and tensors[v["tensor"]].shape == param.shape
                    else tensors[v["tensor"]] if "tensor" in v else v["value"])
                for k, v in entry.items()
            }
        groups = []
        for saved, current in zip(sk["param_groups"], live_sd["param_groups"]):
            # JSON turns tuples (betas, ns_coefficients) into lists; give them their type back.
            groups.append({k: tuple(v) if isinstance(current.get(k), tuple) else v for k, v in saved.items()})
        states.append({"state": state, "param_groups": groups})
    return states


def _rng_state() -> tuple[torch.Tensor, dict[str, Any]]:
    np_state = np.random.get_state(legacy=False)
    np_json = {**np_state, "state": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                     for k, v in np_state["state"].items()}}
    version, internal, gauss = random.getstate()
    return torch.get_rng_state(), {"numpy": np_json, "python": [version, list(internal), gauss]}


def _set_rng_state(torch_state: torch.Tensor, saved: dict[str, Any]) -> None:
    torch.set_rng_state(torch_state)
    np_state = saved["numpy"]
    np_state["state"] = {k: (np.asarray(v, dtype=np.uint32) if isinstance(v, list) else v)
                         for k, v in np_state["state"].items()}
    np.random.set_state(np_state)
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))


def checkpoint_dirs(stage_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temp dirs of atomic_dir start with '.')."""
    root = Path(stage_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(stage_dir: Path) -> Path | None:
    dirs = checkpoint_dirs(stage_dir)
    return dirs[-1] if dirs else None


def module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Whole CPU copies of the trained parameters by name; a tied weight appears once (its first name)."""
    return {name: _whole(p) for name, p in module.named_parameters()}


def load_module_tensors(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: Path) -> None:
    live = dict(module.named_parameters())
    if set(live) != set(tensors):
        missing, unexpected = sorted(set(live) - set(tensors)), sorted(set(tensors) - set(live))
        raise SmoledgeError(
            f"{where} does not match this model (missing {missing[:3]}, unexpected {unexpected[:3]}); it was "
            f"written for another shape or MTP setting: delete {where.parent} to start over"
        )
    with torch.no_grad():
        for name, p in live.items():
            if tensors[name].shape != p.shape:
                raise SmoledgeError(f"{where}: {name} has shape {tuple(tensors[name].shape)}, the model "
                                    f"{tuple(p.shape)}; delete {where.parent} to start over")
            p.copy_(_like(tensors[name], p))


def _is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def save_checkpoint(stage_dir: Path, step: int, model: torch.nn.Module, optim: Optimizers,
                    identity: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Every rank calls this; rank 0 writes. Returns the checkpoint path."""
    path = Path(stage_dir) / CHECKPOINTS / f"{PREFIX}{step:06d}"
    weights = module_tensors(model)
    opt_tensors, skeleton = _flatten_optimizer(optim.state_dicts())
    if not _is_main():
        barrier()
        return path
    torch_rng, rng_json = _rng_state()
    with atomic_dir(path) as tmp:
        save_file(weights, str(tmp / "model.safetensors"))
        save_file({**opt_tensors, "rng.torch": torch_rng}, str(tmp / "tensors.safetensors"))
        state = {
            "step": step,
            "optimizers": skeleton,
            "rng": rng_json,
            "identity": identity,
            "fingerprint": fingerprint(identity),
            "extra": extra or {},
        }
        (tmp / "state.json").write_text(json.dumps(state, sort_keys=True, default=str))
    for old in checkpoint_dirs(stage_dir)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    barrier()
    return path


def load_checkpoint(path: Path, model: torch.nn.Module, optim: Optimizers,
                    identity: dict[str, Any]) -> dict[str, Any]:
    """Restore model, optimizer and RNG from `path`; returns its state.json."""
    state = json.loads((path / "state.json").read_text())
    if state["fingerprint"] != fingerprint(identity):
        raise SmoledgeError(
            f"checkpoint {path} was written by a run with a different config; delete "
            f"{path.parent} to start over, or restore the config it was made with"
        )
    load_module_tensors(model, load_file(str(path / "model.safetensors")), path)
    tensors = load_file(str(path / "tensors.safetensors"))
    optim.load_state_dicts(_unflatten_optimizer(state["optimizers"], tensors, optim))
    _set_rng_state(tensors["rng.torch"], state["rng"])
    return state


def save_model_dir(model: torch.nn.Module, tokenizer_dir: Path, out: Path) -> list[Path]:
    """A standard HF model directory (safetensors + tokenizer + generation config), written whole."""
    from transformers import GenerationConfig

    cfg = model.config
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for f in sorted(Path(tokenizer_dir).iterdir()):
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        GenerationConfig(
            bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id,
        ).save_pretrained(tmp)
    return sorted(p for p in Path(out).rglob("*") if p.is_file())
