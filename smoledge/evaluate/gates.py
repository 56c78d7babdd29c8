"""Quality gates: the recipe's limits (evaluate.gates), checked on the artifact each device runs.

    from smoledge.evaluate.gates import check_gates, failures_message
    results = check_gates(cfg.gates, report["devices"])
    if (msg := failures_message(results)): raise GateFailed(msg)

The perplexity gate also steers artifact selection (smoledge.bench.select): an artifact over it is never
chosen. Here it is checked once more on the chosen one, so every gate appears in the report with its
measured value, its limit and its verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from smoledge.errors import SmoledgeError
from smoledge.evaluate.config import GatesConfig


class GateFailed(SmoledgeError):
    """A quality gate failed: the build stops, the report stays written."""


@dataclass
class GateResult:
    gate: str
    """evaluate.gates key, with the task name or context where it has one."""
    device: str
    artifact: str
    measured: float
    limit: float
    passed: bool

    def message(self) -> str:
        return (f"gate evaluate.gates.{self.gate} failed on device '{self.device}' ({self.artifact}): "
                f"measured {self.measured:.4g}, limit {self.limit:.4g}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def passkey_gate_context(gates: GatesConfig, lengths: list[int], trained: int) -> int | None:
    """The context the passkey gate applies at: the configured one, else the longest run length within the
    trained context (None if the device runs none)."""
    if gates.passkey_context:
        return gates.passkey_context
    within = [n for n in lengths if n <= trained]
    return max(within) if within else None


def check_gates(gates: GatesConfig, devices: dict[str, dict[str, Any]], trained: int) -> list[GateResult]:
    """Every configured gate on every device's artifact. `devices[name]` holds artifact, ppl_delta_pct,
    passkey (a grid with by_length: {str(length): accuracy}), passkey_drop ({drop, length} against the
    PyTorch model) and tasks ({task: {acc}})."""
    out: list[GateResult] = []
    for name, d in devices.items():
        art = d["artifact"]
        if gates.max_ppl_delta_pct is not None:
            delta = d.get("ppl_delta_pct")
            measured = float("nan") if delta is None else float(delta)
            out.append(GateResult("max_ppl_delta_pct", name, art, measured, gates.max_ppl_delta_pct,
                                  measured <= gates.max_ppl_delta_pct))
        if gates.min_passkey_accuracy is not None:
            grid = d.get("passkey") or {}
            by_length = {int(k): v for k, v in grid.get("by_length", {}).items()}
            at = passkey_gate_context(gates, sorted(by_length), trained)
            if at is None or at not in by_length:
                raise GateFailed(
                    f"gate evaluate.gates.min_passkey_accuracy cannot be checked on device '{name}': the passkey "
                    f"grid ran no context of {at if at is not None else 'at most ' + str(trained)} tokens "
                    f"(ran {sorted(by_length)}); add it to evaluate.passkey.lengths or set gates.passkey_context")
            acc = float(by_length[at])
            out.append(GateResult(f"min_passkey_accuracy@{at}", name, art, acc, gates.min_passkey_accuracy,
                                  acc >= gates.min_passkey_accuracy))
        if gates.max_passkey_drop is not None:
            drop = d.get("passkey_drop")
            measured = float("nan") if drop is None else float(drop["drop"])
            out.append(GateResult("max_passkey_drop", name, art, measured, gates.max_passkey_drop,
                                  measured <= gates.max_passkey_drop))
        for task, limit in gates.min_task_accuracy.items():
            acc = float(d.get("tasks", {}).get(task, {}).get("acc", float("nan")))
            out.append(GateResult(f"min_task_accuracy.{task}", name, art, acc, limit, acc >= limit))
    return out


def failures_message(results: list[GateResult]) -> str | None:
    failed = [r for r in results if not r.passed]
    if not failed:
        return None
    return ("; ".join(r.message() for r in failed)
            + ". The report (evaluate/report.json, report.html) is written; fix the model or relax evaluate.gates")
