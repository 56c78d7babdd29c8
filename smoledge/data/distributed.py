"""Run one function over a stream of work items, in order, here, on local cores or on a Ray cluster.

    from smoledge.data.distributed import make_executor
    ex = make_executor("ray", workers=0, address="auto")     # or ("local", workers=0)
    for result in ex.map(task, shards, setup=init_worker, setup_args=(cfg,)):
        ...                                                  # results in the order of `shards`
    print(ex.workers)                                        # how many ran

`setup(*setup_args)` runs once per worker process (build pipelines, load
models), then `task(item)` once per item. Results come back in the order of
the items, so the output never depends on how many workers ran or which of
them finished first: curate writes the same bytes from 1 process, 2 local
processes or a Ray cluster. Items are pulled lazily and at most
IN_FLIGHT_PER_WORKER per worker are out at a time, so a big input is never
held in memory at once. `task`, `setup` and their arguments must be
picklable (module-level functions, dataclasses).

Executors:
  local, workers=1   in this process.
  local, workers>1   a ProcessPoolExecutor of spawn-started processes.
  ray                one Ray actor per worker (setup runs in its constructor);
                     a local Ray instance, or the cluster at `address`.

Why Ray (tasks/actors), not datatrove's executors, past one machine:
datatrove's Local/Slurm/Ray executors run *datatrove pipelines*: every rank
reads its own slice of input files through a datatrove reader and writes its
output files through a datatrove writer, with logs and completion markers in
a shared folder. Using them would mean re-expressing our sources (the sample
generator, HF streaming, WARC/PDF readers) as datatrove readers, staging
per-rank intermediate files on storage every node can reach (S3/NFS), and
merging them back in order for the global dedup; datatrove's own Ray executor
needs Ray underneath anyway, and its Slurm one needs Slurm. What curate needs
is an ordered map of a Python function over shards with per-worker setup:
Ray actors are exactly that, send shards and results through Ray's object
store (no shared file system), run on a laptop (`ray.init(num_cpus=2)`, as
the tests do) and on any cluster Ray runs on (`ray start`, KubeRay, `ray up`,
Slurm) through one address. Ray Data was the other option; it would re-type
documents as Arrow blocks and needs order-preservation settings to stay
deterministic, for what is a plain ordered map.
"""

from __future__ import annotations

import abc
import logging
import multiprocessing as mp
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from smoledge.errors import SmoledgeError

# Items out at once per worker: enough to keep every worker busy while the
# caller consumes results in order, few enough to bound memory.
IN_FLIGHT_PER_WORKER = 2


class Executor(abc.ABC):
    """Maps `task` over items in order; `workers` says how many ran (known once `map` started)."""

    workers: int = 1

    @abc.abstractmethod
    def map(self, task: Callable[[Any], Any], items: Iterable[Any], setup: Callable[..., None],
            setup_args: tuple = ()) -> Iterator[Any]:
        """Results of `task(item)` in the order of `items`, after `setup(*setup_args)` on each worker."""


class InProcess(Executor):
    def map(self, task, items, setup, setup_args=()):
        setup(*setup_args)
        for item in items:
            yield task(item)


class ProcessPool(Executor):
    def __init__(self, workers: int):
        self.workers = workers

    def map(self, task, items, setup, setup_args=()):
        # spawn, not fork: the parent may hold torch/OpenMP threads, which fork can deadlock.
        # An executor (unlike multiprocessing.Pool, which respawns dead workers forever)
        # fails fast when workers cannot start.
        try:
            with ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=setup,
                                     initargs=setup_args) as pool:
                pending: deque[Future] = deque()
                for item in items:
                    pending.append(pool.submit(task, item))
                    if len(pending) >= IN_FLIGHT_PER_WORKER * self.workers:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
        except BrokenProcessPool as exc:
            raise SmoledgeError(
                f"curate worker processes died ({exc}); if you call smoledge from your own script, put the "
                f"call under `if __name__ == '__main__':` (workers re-import the main module), or set "
                f"curate.workers: 1"
            ) from exc


class _RayWorker:
    """One Ray actor: runs `setup` once, then `task` per item."""

    def __init__(self, setup: Callable[..., None], setup_args: tuple, task: Callable[[Any], Any]):
        setup(*setup_args)
        self.task = task

    def run(self, item: Any) -> Any:
        return self.task(item)


class RayActors(Executor):
    def __init__(self, workers: int, address: str | None):
        self.requested = workers
        self.address = address
        self.workers = 0

    def _connect(self) -> bool:
        """Join or start Ray; True when this call started it (and must shut it down)."""
        import ray

        if ray.is_initialized():
            return False
        common = {"include_dashboard": False, "logging_level": logging.WARNING}
        if self.address is None:
            ray.init(num_cpus=self.requested or os.cpu_count() or 1, **common)
            return True
        import smoledge

        try:
            # Ship this smoledge to the workers, so the cluster runs the driver's code.
            ray.init(address=self.address, runtime_env={"py_modules": [str(Path(smoledge.__file__).parent)]},
                     **common)
        except Exception as exc:  # ray raises ConnectionError, RuntimeError or its own types
            raise SmoledgeError(
                f"could not join the Ray cluster at curate.ray_address={self.address!r} ({exc}); start one "
                f"(`ray start --head`, then use 'auto'), fix the address, or set curate.executor: local"
            ) from exc
        return True

    def map(self, task, items, setup, setup_args=()):
        try:
            import ray
            from ray.exceptions import RayError, RayTaskError
        except ImportError as exc:
            raise SmoledgeError(
                "curate.executor: ray needs the `ray` package: `pip install ray` (or set curate.executor: local)"
            ) from exc
        started = self._connect()
        actors: list[Any] = []
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            self.workers = max(1, min(self.requested or cpus, cpus))
            worker_cls = ray.remote(num_cpus=1)(_RayWorker)
            actors = [worker_cls.remote(setup, setup_args, task) for _ in range(self.workers)]
            pending: deque[Any] = deque()
            # Round robin: an actor runs its calls in submission order; `pending` restores the global order.
            for k, item in enumerate(items):
                pending.append(actors[k % self.workers].run.remote(item))
                if len(pending) >= IN_FLIGHT_PER_WORKER * self.workers:
                    yield ray.get(pending.popleft())
            while pending:
                yield ray.get(pending.popleft())
        except RayTaskError as exc:
            # The task itself raised: surface the original exception type and message.
            raise exc.as_instanceof_cause() from None
        except RayError as exc:
            raise SmoledgeError(
                f"a Ray worker failed ({type(exc).__name__}: {exc}); check the cluster's logs "
                f"(`ray logs`) or set curate.executor: local"
            ) from exc
        finally:
            for actor in actors:
                ray.kill(actor)
            if started:
                ray.shutdown()


def make_executor(kind: str, workers: int = 0, address: str | None = None) -> Executor:
    """`kind` "local" (workers 0: all cores; 1: this process) or "ray" (workers 0: all cluster CPUs)."""
    if kind == "ray":
        return RayActors(workers, address)
    if kind != "local":
        raise ValueError(f"unknown executor {kind!r}; choose local or ray")
    workers = workers or os.cpu_count() or 1
    return InProcess() if workers == 1 else ProcessPool(workers)
