"""Executors of smoledge.data.distributed: order, per-worker setup, laziness, errors; curate on Ray."""

from __future__ import annotations

import os

import pytest

from smoledge.data import distributed
from smoledge.data.distributed import InProcess, ProcessPool, RayActors, make_executor

# Module-level, so worker processes and Ray actors can import them.
_STATE: dict[str, object] = {}


def _setup(tag: str) -> None:
    _STATE["tag"] = tag
    _STATE["setups"] = int(_STATE.get("setups", 0)) + 1  # type: ignore[call-overload]


def _task(x: int) -> tuple[str, int, int, int]:
    if x < 0:
        raise KeyError(f"bad item {x}")
    return str(_STATE["tag"]), x * x, os.getpid(), int(_STATE["setups"])  # type: ignore[call-overload]


def test_make_executor_picks_by_kind_and_workers():
    assert isinstance(make_executor("local", 1), InProcess)
    assert isinstance(make_executor("local", 3), ProcessPool) and make_executor("local", 3).workers == 3
    assert isinstance(make_executor("local", 0), InProcess if (os.cpu_count() or 1) == 1 else ProcessPool)
    assert isinstance(make_executor("ray", 2, "auto"), RayActors)
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        make_executor("dask")


def test_in_process_runs_setup_once_and_keeps_order():
    out = list(InProcess().map(_task, range(10), setup=_setup, setup_args=("here",)))
    assert [(tag, sq, pid) for tag, sq, pid, _ in out] == [("here", x * x, os.getpid()) for x in range(10)]


def test_process_pool_keeps_order_and_pulls_lazily():
    pulled = 0

    def items():
        nonlocal pulled
        for x in range(40):
            pulled += 1
            yield x

    results = ProcessPool(2).map(_task, items(), setup=_setup, setup_args=("pool",))
    first = next(results)
    # Only a bounded window is out while results are consumed in order.
    assert pulled <= distributed.IN_FLIGHT_PER_WORKER * 2
    out = [first, *results]
    assert [sq for _, sq, _, _ in out] == [x * x for x in range(40)]
    pids = {pid for _, _, pid, _ in out}
    assert len(pids) <= 2 and os.getpid() not in pids
    assert {tag for tag, _, _, _ in out} == {"pool"} and {n for *_, n in out} == {1}  # setup once per worker


@pytest.mark.slow  # starts a local Ray instance (~5 s)
def test_ray_actors_keep_order_and_leave_a_running_ray_alone():
    import ray

    # The workers import this test module, so they need its folder on their path.
    ray.init(num_cpus=2, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.path.dirname(os.path.abspath(__file__))}})
    try:
        ex = RayActors(workers=0, address=None)  # 0: one actor per cluster CPU
        out = list(ex.map(_task, range(30), setup=_setup, setup_args=("ray",)))
        assert ex.workers == 2
        assert [sq for _, sq, _, _ in out] == [x * x for x in range(30)]
        assert len({pid for _, _, pid, _ in out}) == 2 and {n for *_, n in out} == {1}  # setup once per actor
        # A task that raises surfaces as its own exception type.
        with pytest.raises(KeyError, match="bad item -1"):
            list(RayActors(workers=2, address=None).map(_task, [1, 2, -1, 4], setup=_setup, setup_args=("ray",)))
        assert ray.is_initialized()  # started by the caller: the caller shuts it down
    finally:
        ray.shutdown()
