"""Generation slots with a bounded wait queue, and the thread a generation runs in. Torch-free.

    pool = SlotPool(backends, queue=8)              # one backend object per slot
    backend = await pool.acquire(timeout=30)        # Overloaded at once if 8 already wait
    run = Run(pool, backend, deadline, is_gone)     # owns the slot until its work returns
    run.start(lambda run: ...)                      # runs in the slot's thread; run.emit(x) per result
    async for x in run.results(): ...               # back on the event loop, in order

The server never blocks its event loop on the model: a generation runs in a
worker thread (one per slot) and hands its chunks to the loop through an
asyncio queue. Between chunks the worker looks at `run.stop`, which the loop sets
when the client has gone away, the request's deadline has passed or the server is
shutting down; backends look at the same event between tokens (`Job.cancel`). The
slot goes back to the pool when the work returns, in the worker thread's `finally`,
so nothing the HTTP side does (a client that never reads its stream, a handler
cancelled by uvicorn) can keep a slot.

Any backend works behind this: the pool only hands out the objects it was given.
A backend that runs several sequences itself may be given once per slot.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Awaitable, Callable

# Retry-After bounds (seconds): at least 1 (the header takes whole seconds), at most a minute.
RETRY_AFTER_MIN, RETRY_AFTER_MAX = 1, 60


class Overloaded(Exception):
    """Every slot is busy and the queue is full (the server answers 429 with Retry-After)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class SlotPool:
    """Backends handed out one request at a time; at most `queue` requests wait for one, first come first served.

    Call everything but the worker-side methods on the event loop thread."""

    def __init__(self, backends: list[Any], queue: int):
        if not backends:
            raise ValueError("a slot pool needs at least one backend")
        self.backends = list(backends)
        self.queue = queue
        self._free = list(backends)
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self.executor = ThreadPoolExecutor(max_workers=len(backends), thread_name_prefix="smoledge-slot")
        self.runs: set[Run] = set()
        self._hold_s = 1.0  # moving average of how long a request holds a slot (for Retry-After)

    @property
    def size(self) -> int:
        return len(self.backends)

    @property
    def busy(self) -> int:
        return len(self.backends) - len(self._free)

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    def retry_after(self) -> int:
        """Seconds until a slot is likely free for one more request: the queue ahead, served by every slot."""
        wait = self._hold_s * (self.waiting + 1) / self.size
        return int(min(RETRY_AFTER_MAX, max(RETRY_AFTER_MIN, math.ceil(wait))))

    async def acquire(self, timeout: float) -> Any:
        """A free backend; waits up to `timeout` seconds in the queue (TimeoutError past it)."""
        if self._free and not self.waiting:
            return self._free.pop()
        if self.waiting >= self.queue:
            raise Overloaded(f"all {self.size} slots are busy and {self.waiting} requests are queued "
                             f"(--queue {self.queue}); retry later", self.retry_after())
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            return await asyncio.wait_for(fut, timeout)
        except BaseException:
            # Handed a slot just as we gave up (timeout or the handler was cancelled): pass it on.
            if fut.done() and not fut.cancelled():
                self.release(fut.result())
            raise
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    def release(self, backend: Any, held_s: float | None = None) -> None:
        """Give a backend back: to the longest waiting request, else to the free list."""
        if held_s is not None:
            self._hold_s = 0.8 * self._hold_s + 0.2 * held_s
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(backend)
                return
        self._free.append(backend)

    def cancel_all(self, reason: str) -> None:
        for run in list(self.runs):
            run.cancel(reason)

    async def drain(self, timeout: float) -> bool:
        """Wait for the runs in flight to end; False if some did not within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.runs and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return not self.runs

    def close(self) -> list[Any]:
        """Stop the worker threads; return the backends no run holds (safe to close), each object once."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        held = {id(r.backend) for r in self.runs}
        unique = {id(b): b for b in self.backends if id(b) not in held}
        return list(unique.values())


class _End:
    pass


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


_END = _End()


class Run:
    """One request's work on one slot, in the slot's worker thread."""

    def __init__(self, pool: SlotPool, backend: Any, deadline: float,
                 client_gone: Callable[[], Awaitable[None]] | None = None, arrived: float | None = None):
        self.pool, self.backend, self.deadline = pool, backend, deadline
        self.client_gone = client_gone
        """Returns once the client has gone; the run is then stopped. None where the response itself
        notices (a stream listens for the disconnect while it sends)."""
        self.loop = asyncio.get_running_loop()
        self.stop = threading.Event()
        """Set when the run must end early; the worker and the backend check it between tokens."""
        self.reason: str | None = None
        """Why it was stopped: "disconnect", "timeout" or "shutdown"; None while it may run to its end."""
        self.started = time.monotonic()
        """When it got its slot."""
        self.arrived = self.started if arrived is None else arrived
        """When the request arrived (time.monotonic()): time to first token counts from here."""
        # Written by the work function in the worker thread, read on the loop once it has returned.
        self.first_token: float | None = None
        self.completion_tokens = 0
        self.finished = False
        self.on_end: Callable[[], None] | None = None
        """Called on the event loop once the work has returned and the slot is back in the pool."""
        self._items: asyncio.Queue[Any] = asyncio.Queue()
        self._watcher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def cancel(self, reason: str) -> None:
        """Stop at the next token (a no-op once the run has ended or was stopped already)."""
        if not self.finished and not self.stop.is_set():
            self.reason = reason
            self.stop.set()

    # -- worker thread side ---------------------------------------------------

    def emit(self, item: Any) -> None:
        """Hand a result to the event loop (call from the work function)."""
        self._post(item)

    def _post(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:
            pass  # the event loop is gone (the process is exiting): nobody is left to read it

    def _main(self, work: Callable[[Run], None]) -> None:
        try:
            work(self)
        except BaseException as exc:  # reaches the handler, which answers 500 or reports it in the stream
            self._post(_Failed(exc))
        finally:
            held = time.monotonic() - self.started
            try:
                self.loop.call_soon_threadsafe(self._finished, held)
            except RuntimeError:
                pass
            self._post(_END)

    # -- event loop side ------------------------------------------------------

    def start(self, work: Callable[[Run], None]) -> None:
        self.pool.runs.add(self)
        # The deadline is a timer and the client's leaving an awaited event: exact, and nothing runs until
        # either happens.
        self._timer = self.loop.call_later(max(0.0, self.deadline - time.monotonic()), self.cancel, "timeout")
        if self.client_gone is not None:
            self._watcher = self.loop.create_task(self._watch(self.client_gone))
        self.pool.executor.submit(self._main, work)

    def _finished(self, held_s: float) -> None:
        self.finished = True
        self.pool.runs.discard(self)
        self.pool.release(self.backend, held_s)
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        if self.on_end is not None:
            self.on_end()

    async def _watch(self, client_gone: Callable[[], Awaitable[None]]) -> None:
        """Stop the run when its client disconnects."""
        await client_gone()
        self.cancel("disconnect")

    async def results(self) -> AsyncIterator[Any]:
        """What the work emitted, in order, until it returned; re-raises what it raised."""
        while True:
            item = await self._items.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
