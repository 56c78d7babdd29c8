"""Prometheus metrics for the server, in the text exposition format (version 0.0.4). Torch-free.

    curl -s localhost:8000/metrics
    # TYPE smoledge_requests_total counter
    smoledge_requests_total{route="/v1/completions",status="200"} 12
    ...

The format is written out here rather than taken from prometheus_client, which the
serve path does not otherwise need. Every update happens on the server's event loop
(the middleware and the request handlers), so no lock is needed.

Label values come from a closed set (the app's route templates, "other" for any
path it does not serve), so a scan of random URLs cannot grow the series without bound.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable

from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Seconds. Requests range from a /health call (< 1 ms) to a long generation on a board (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Generated tokens per second of one request (a 135M model: ~10 on a Pi 4, ~100 on a laptop).
RATE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _value(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    text = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + text + "}" if text else ""


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Family:
    kind = ""

    def __init__(self, name: str, help: str, labelnames: tuple[str, ...] = ()):
        self.name, self.help, self.labelnames = name, help, labelnames

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Family):
    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: tuple[str, ...] = ()):
        super().__init__(name, help, labelnames)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def lines(self) -> list[str]:
        return self.header() + [f"{self.name}{_labels(zip(self.labelnames, k))} {_value(v)}"
                                for k, v in sorted(self.values.items())]


class Gauge(_Family):
    """A value read when /metrics is scraped."""

    kind = "gauge"

    def __init__(self, name: str, help: str, read: Callable[[], float]):
        super().__init__(name, help)
        self.read = read

    def lines(self) -> list[str]:
        return self.header() + [f"{self.name} {_value(self.read())}"]


class Histogram(_Family):
    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: tuple[float, ...], labelnames: tuple[str, ...] = ()):
        super().__init__(name, help, labelnames)
        self.bounds = (*buckets, math.inf)
        self.series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}  # key -> (bucket counts, [sum])

    def observe(self, value: float, **labels: str) -> None:
        counts, total = self.series.setdefault(self._key(labels), ([0] * len(self.bounds), [0.0]))
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                counts[i] += 1  # cumulative: every bucket at or above the value
        total[0] += value

    def lines(self) -> list[str]:
        out = self.header()
        for key, (counts, total) in sorted(self.series.items()):
            pairs = list(zip(self.labelnames, key))
            for bound, n in zip(self.bounds, counts):
                out.append(f"{self.name}_bucket{_labels([*pairs, ('le', _value(bound))])} {n}")
            out.append(f"{self.name}_sum{_labels(pairs)} {_value(total[0])}")
            out.append(f"{self.name}_count{_labels(pairs)} {counts[-1]}")
        return out


class ServerMetrics:
    """Everything /metrics shows. `slots`, `busy` and `waiting` are read at scrape time."""

    def __init__(self, slots: Callable[[], int], busy: Callable[[], int], waiting: Callable[[], int]):
        self.requests = Counter("smoledge_requests_total", "HTTP requests answered, by route and status.",
                                ("route", "status"))
        self.latency = Histogram("smoledge_request_duration_seconds",
                                 "Time from request to the end of the response (a stream's last byte), by route.",
                                 LATENCY_BUCKETS, ("route",))
        self.ttft = Histogram("smoledge_time_to_first_token_seconds",
                              "Time from request (queueing included) to the first generated text.", TTFT_BUCKETS)
        self.rate = Histogram("smoledge_generation_tokens_per_second",
                              "Generated tokens per second of one request, after its first token.", RATE_BUCKETS)
        self.prompt_tokens = Counter("smoledge_prompt_tokens_total", "Prompt tokens of the requests run.")
        self.generated = Counter("smoledge_generated_tokens_total", "Tokens generated.")
        self.cancelled = Counter("smoledge_generations_cancelled_total",
                                 "Generations stopped before their end, by reason (disconnect, timeout, shutdown).",
                                 ("reason",))
        self.rejected = Counter("smoledge_requests_rejected_total",
                                "Requests turned away before running, by reason (queue_full, not_ready, draining, "
                                "queue_timeout).", ("reason",))
        self.gauges = [
            Gauge("smoledge_slots", "Generation slots (requests that can run at once).", slots),
            Gauge("smoledge_slots_busy", "Slots running a request now.", busy),
            Gauge("smoledge_queue_depth", "Requests waiting for a free slot now.", waiting),
        ]

    def generation(self, prompt_tokens: int, completion_tokens: int, first: float | None, end: float,
                   start: float) -> None:
        """One finished (or stopped) generation; `start`, `first`, `end` are time.monotonic() values."""
        self.prompt_tokens.inc(prompt_tokens)
        self.generated.inc(completion_tokens)
        if first is not None:
            self.ttft.observe(first - start)
            if completion_tokens >= 2 and end > first:
                self.rate.observe((completion_tokens - 1) / (end - first))

    def render(self) -> str:
        families: list[Any] = [self.requests, self.latency, self.ttft, self.rate, self.prompt_tokens,
                               self.generated, self.cancelled, self.rejected, *self.gauges]
        return "\n".join(line for f in families for line in f.lines()) + "\n"


class MetricsMiddleware:
    """Counts every HTTP request by route template and status and times it to its last byte.

    Outermost middleware: it also sees what the auth and body-size guards turn away. A request
    whose handler raised (nothing sent) counts as a 500, which is what the client gets."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, router: Router):
        self.app, self.metrics, self.router = app, metrics, router

    def route(self, scope: Scope) -> str:
        for r in self.router.routes:
            match, _ = r.matches(scope)
            if match != Match.NONE:  # PARTIAL: the path matches, the method does not (a 405)
                return getattr(r, "path", "other")
        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        # Handlers read the arrival time from here (time to first token counts from it).
        scope.setdefault("state", {})["arrived"] = start
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = self.route(scope)
            self.metrics.requests.inc(route=route, status=str(status))
            self.metrics.latency.observe(time.monotonic() - start, route=route)
