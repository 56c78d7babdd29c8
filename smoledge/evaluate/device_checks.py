"""The evaluate stage's long-context and task checks: the passkey grid and the tasks, on the PyTorch reference
and on the artifact each device runs, and the passkey gate that steers which artifact that is.

    checks = DeviceChecks(export_dir, tok, filler, lengths, tasks, cfg, trained, make_scorer, progress)
    ref = checks.run(HF_ARTIFACT, lengths, threads=None, device=None)
    check = checks.run("model-q4_k_m.gguf", [512, 1024], threads=2, device="rpi5-8gb", reference=ref)
    problem = checks.passkey_problem(check, ref)   # None, or why the artifact is set aside

Every check reads the same prompts: they are built once for the grid's lengths, and a device that runs only
the shorter ones reads the same prompts at those lengths as the reference. Devices that run the same artifact
over the same lengths share one check, since its numbers depend on the artifact and the tokens and not on the
thread count (ggml gives each output row to one thread: logits of SmolLM2-135M Q4_1, q8_0 and q4_k_m are bit
for bit the same at 1, 2 and 4 threads). With evaluate.gates.max_passkey_drop a check reads the lengths in
order and stops at the first one that falls more than the gate below the reference: the rest cannot save the
artifact, and on SmolLM2-135M the longest length is over half the grid's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from smoledge.evaluate.config import EvaluateConfig
from smoledge.evaluate.passkey import PasskeyGrid, PasskeyPrompt, passkey_prompts, run_passkey
from smoledge.progress import Progress

PASSKEY_SEED = 1234


@dataclass
class Check:
    """One artifact's passkey grid and task results over some lengths, and the devices it was run for."""

    artifact: str
    lengths: tuple[int, ...]
    threads: int | None
    passkey: dict[str, Any] | None = None
    """PasskeyGrid.to_dict(threshold) plus trained_length, falloff_text and, when the gate stopped it early,
    stopped_after."""
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    used_by: list[str] = field(default_factory=list)
    """Devices that run this artifact."""
    set_aside_by: list[str] = field(default_factory=list)
    """Devices for which this artifact failed the passkey gate."""

    @property
    def label(self) -> str:
        """The check's name in the report."""
        if not self.used_by and not self.set_aside_by:
            return f"{self.artifact} (fp32, PyTorch)"
        parts = []
        if self.used_by:
            parts.append(f"on {', '.join(self.used_by)}")
        if self.set_aside_by:
            parts.append(f"set aside for {', '.join(self.set_aside_by)}")
        threads = f" ({self.threads} threads)" if self.threads else ""
        return f"{self.artifact} {'; '.join(parts)}{threads}"


class DeviceChecks:
    def __init__(self, tok: Any, filler: list[str], lengths: list[int], tasks: dict[str, list[Any]],
                 cfg: EvaluateConfig, trained: int, make_scorer: Callable[[str, int, int | None], Any],
                 progress: Progress):
        """`make_scorer(artifact, n_ctx, threads)` builds the artifact's scorer able to take n_ctx tokens."""
        self.tok, self.tasks, self.cfg, self.trained = tok, tasks, cfg, trained
        self.make_scorer, self.progress = make_scorer, progress
        p = cfg.passkey
        self.prompts: list[PasskeyPrompt] = (passkey_prompts(tok, lengths, p.depths, p.trials, PASSKEY_SEED, filler)
                                             if p.enabled and lengths else [])
        self.checks: dict[tuple[str, tuple[int, ...]], Check] = {}

    def run(self, artifact: str, lengths: list[int], threads: int | None, device: str | None,
            reference: Check | None = None) -> Check:
        """The check of `artifact` over `lengths`, run once; `device` (None for the reference) is noted as
        using it. With the passkey gate and a reference, the grid stops at the first length over the gate."""
        key = (artifact, tuple(lengths))
        check = self.checks.get(key)
        if check is None:
            check = self.checks[key] = Check(artifact, tuple(lengths), threads)
            self._measure(check, reference)
        if device is not None:
            check.used_by.append(device)
        return check

    def set_aside(self, check: Check, device: str) -> None:
        check.used_by.remove(device)
        check.set_aside_by.append(device)

    def passkey_problem(self, check: Check, reference: Check | None) -> str | None:
        """Why `check`'s artifact fails evaluate.gates.max_passkey_drop, or None (also when the gate is off)."""
        limit = self.cfg.gates.max_passkey_drop
        drop = passkey_drop(check, reference)
        if limit is None or drop is None or drop["drop"] <= limit:
            return None
        return (f"passkey accuracy {drop['accuracy']:.2f} at {drop['length']} tokens against the PyTorch model's "
                f"{drop['reference']:.2f}: a drop of {drop['drop']:.2f}, gate max_passkey_drop is {limit:.2f}")

    def used(self) -> list[Check]:
        """Every check run, the reference first, in the order they ran."""
        return list(self.checks.values())

    def _measure(self, check: Check, reference: Check | None) -> None:
        cfg = self.cfg
        prompts = [p for p in self.prompts if p.length in check.lengths]
        if not prompts and not self.tasks:
            return  # nothing to run: no model to load
        need = max([cfg.seq_len, *(p.length for p in prompts)])
        scorer = self.make_scorer(check.artifact, need, check.threads)
        if prompts:
            self.progress.update(f"passkey {check.artifact}")
            gate = cfg.gates.max_passkey_drop if reference is not None else None
            grid = PasskeyGrid()
            for length in check.lengths:
                grid.trials += run_passkey(scorer, [p for p in prompts if p.length == length]).trials
                check.passkey = self._grid_dict(grid)
                drop = passkey_drop(check, reference)
                if gate is not None and drop is not None and drop["drop"] > gate and length != check.lengths[-1]:
                    check.passkey["stopped_after"] = length
                    break
            assert check.passkey is not None
            check.passkey["falloff_text"] = falloff_sentence(check.passkey["falloff"], self.trained)
            if "stopped_after" in check.passkey:
                check.passkey["falloff_text"] += (f"; stopped after {check.passkey['stopped_after']} tokens, "
                                                  "past the passkey gate")
        from smoledge.evaluate.tasks import run_task

        for task, items in self.tasks.items():
            self.progress.update(f"task {task} {check.artifact}")
            check.tasks[task] = run_task(scorer, self.tok, items, cfg.seq_len).to_dict()
        del scorer

    def _grid_dict(self, grid: PasskeyGrid) -> dict[str, Any]:
        out = grid.to_dict(self.cfg.passkey.threshold)
        out["trained_length"] = self.trained
        return out


def passkey_drop(check: Check, reference: Check | None) -> dict[str, Any] | None:
    """The largest fall in passkey accuracy of `check` below `reference` over the lengths both ran:
    {drop, length, accuracy, reference}; None without both grids."""
    if reference is None or not check.passkey or not reference.passkey:
        return None
    ref = reference.passkey["by_length"]
    falls = [(ref[n] - acc, int(n), acc, ref[n]) for n, acc in check.passkey["by_length"].items() if n in ref]
    if not falls:
        return None
    drop, length, acc, was = max(falls, key=lambda f: (f[0], -f[1]))
    return {"drop": max(0.0, drop), "length": length, "accuracy": acc, "reference": was}


def falloff_sentence(f: dict[str, Any], trained: int) -> str:
    """The report's sentence for where retrieval falls off (PasskeyGrid.falloff's dict)."""
    ok, below, t = f["longest_ok"], f["first_below"], f["threshold"]
    if ok is None:
        return f"retrieval is below {t:g} at every length tried (from {below} tokens; trained at {trained})"
    if below is None:
        return f"retrieval holds at >= {t:g} up to {ok} tokens, the longest tried (trained at {trained})"
    return f"retrieval holds at >= {t:g} up to {ok} tokens and falls below it at {below} (trained at {trained})"
