"""Prometheus metrics: one registry per runtime, request metrics by route template, ``GET /metrics``.

Event figures (requests, time to first audio, synthesis time per chunk, real-time factor, turns,
interrupts, audio bytes, sessions opened) are observed as they happen. State (queue depth, busy
workers, sessions, connections) is read at scrape time by a collector, from a ``ServerState`` the
server hands over as a callable: this module knows nothing of the runtime or the sessions.

These instruments are the one source of the figures: ``GET /metrics`` exposes them, and ``summary()``
reads them back for ``GET /api/v1/metrics`` and ``/api/v1/status`` (percentiles estimated from the
histogram's buckets, as Prometheus's ``histogram_quantile`` does).

The registry is the runtime's, never prometheus_client's global one: two servers (or two tests)
in one process do not collide, and a scrape shows only this server's figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__

if TYPE_CHECKING:
    from ..pool import Job, WorkerPool

# Seconds. Time to first audio is the number this server exists for: fine steps below 300 ms.
TTFA_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
SYNTH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
QUEUE_WAIT_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Synthesis seconds per second of audio: below 1 is faster than real time.
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)

UNMATCHED_ROUTE = "unmatched"  # one label for every path no route matched: scanners can't add series

# No `*_created` series: they would double every counter and histogram for a start time that
# Prometheus tracks itself. (A process-wide switch of prometheus_client's.)
disable_created_metrics()


@dataclass(frozen=True, slots=True)
class ServerState:
    """What the server is holding now, read at scrape time."""

    sessions: int  # held, detached (resumable) ones included
    active_sessions: int  # with a connection attached
    connections: int  # open WebSocket connections
    draining: bool


class Metrics:
    """The server's metrics; ``registry`` is what ``GET /metrics`` exposes."""

    def __init__(self, pool: WorkerPool, state: Callable[[], ServerState]) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "streamer_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "streamer_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response body.",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.ttfa_seconds = Histogram(
            "streamer_time_to_first_audio_seconds",
            "Per turn: from the turn's first chunk being cut from the text to its first audio frame.",
            buckets=TTFA_BUCKETS,
            registry=registry,
        )
        self.synth_seconds = Histogram(
            "streamer_chunk_synthesis_seconds",
            "Per chunk: time a worker spent synthesizing it (cancelled chunks are not observed).",
            ["engine"],
            buckets=SYNTH_BUCKETS,
            registry=registry,
        )
        self.queue_wait_seconds = Histogram(
            "streamer_chunk_queue_wait_seconds",
            "Per chunk: time from submission to a worker taking it.",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=registry,
        )
        self.rtf = Histogram(
            "streamer_real_time_factor",
            "Per turn: synthesis seconds per second of audio produced (below 1 is faster than real time).",
            buckets=RTF_BUCKETS,
            registry=registry,
        )
        self.turns = Counter(
            "streamer_turns",
            "Turns finished, by outcome (done, interrupted, rejected).",
            ["outcome"],
            registry=registry,
        )
        self.oneshots = Counter(
            "streamer_oneshot_requests",
            "One-shot syntheses finished (/api/v1/synth, /v1/audio/speech, Wyoming), by path and outcome "
            "(done, failed, cancelled).",
            ["path", "outcome"],
            registry=registry,
        )
        self.oneshot_ttfa_seconds = Histogram(
            "streamer_oneshot_time_to_first_audio_seconds",
            "Per one-shot synthesis: from its start to its first encoded bytes.",
            ["path"],
            buckets=TTFA_BUCKETS,
            registry=registry,
        )
        self.sessions_opened = Counter(
            "streamer_sessions_opened", "Sessions opened (resumes not counted).", registry=registry
        )
        self.interrupts = Counter("streamer_interrupts", "Interrupts (barge-ins) handled.", registry=registry)
        self.audio_bytes = Counter(
            "streamer_audio_bytes", "Encoded audio bytes sent to clients.", registry=registry
        )
        registry.register(_StateCollector(pool, state))
        ProcessCollector(namespace="streamer", registry=registry)
        pool.job_observers.append(self.observe_job)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    def observe_job(self, job: Job) -> None:
        """A chunk the pool finished (called by the pool, on the event loop)."""
        if job.started_at is not None:
            self.queue_wait_seconds.observe(max(0.0, job.started_at - job.submitted_at))
        synth_ms = job.timings.get("synth_ms")
        if synth_ms is not None and not (job.cancelled or job.timings.get("cancelled")):
            self.synth_seconds.labels(job.engine).observe(synth_ms / 1000)

    def observe_turn(self, outcome: str, ttfa_ms: float | None, audio_ms: float, synth_ms: float) -> None:
        """One finished turn, the figures of its summary log line."""
        self.turns.labels(outcome).inc()
        if ttfa_ms is not None:
            self.ttfa_seconds.observe(ttfa_ms / 1000)
        if audio_ms > 0 and outcome == "done":  # an interrupted turn's ratio says little
            self.rtf.observe(synth_ms / audio_ms)

    def observe_oneshot(self, path: str, outcome: str, ttfa_ms: float | None) -> None:
        """One finished one-shot synthesis (``path``: synth, speech or wyoming)."""
        self.oneshots.labels(path, outcome).inc()
        if ttfa_ms is not None:
            self.oneshot_ttfa_seconds.labels(path).observe(ttfa_ms / 1000)

    def counters(self) -> dict[str, int]:
        """The running totals ``/api/v1/status`` reports."""
        return {
            "sessions_opened": int(_total(self.sessions_opened, "_total")),
            "interrupts": int(_total(self.interrupts, "_total")),
            "audio_bytes": int(_total(self.audio_bytes, "_total")),
            "turns": int(_total(self.ttfa_seconds, "_count")),  # turns that reached their first audio
        }

    def summary(self) -> dict[str, Any]:
        """The instruments' figures as ``GET /api/v1/metrics`` reports them (the counters included)."""
        requests = _total(self.request_seconds, "_count")
        return {
            **self.counters(),
            "total_requests": int(_total(self.requests, "_total")),
            "average_latency_ms": round(_total(self.request_seconds, "_sum") * 1000 / requests, 3)
            if requests
            else 0.0,
            "ttfa_ms_p50": _quantile_ms(self.ttfa_seconds, 0.5),
            "ttfa_ms_p95": _quantile_ms(self.ttfa_seconds, 0.95),
        }

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format the scraper asked for (text 0.0.4 unless it asks otherwise)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def _total(instrument: Counter | Histogram, suffix: str) -> float:
    """The sum over every label set of the instrument's samples named ``*suffix``."""
    return sum(
        sample.value
        for metric in instrument.collect()
        for sample in metric.samples
        if sample.name.endswith(suffix)
    )


def _quantile_ms(histogram: Histogram, q: float) -> float | None:
    """Prometheus's ``histogram_quantile``: linear inside the bucket the rank falls in; None when empty."""
    buckets: dict[float, float] = {}
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    bounds = sorted(buckets)
    count = buckets.get(math.inf, 0.0)
    if not count:
        return None
    rank = q * count
    lower, below = 0.0, 0.0
    for bound in bounds:
        cumulative = buckets[bound]
        if cumulative >= rank:
            if math.isinf(bound):
                return round(lower * 1000, 3)  # past the last finite bucket: its bound is all we know
            share = (rank - below) / (cumulative - below) if cumulative > below else 0.0
            return round((lower + (bound - lower) * share) * 1000, 3)
        lower, below = bound, cumulative
    return None


class _StateCollector:
    """State read at scrape time: what is true now, not what was last set."""

    def __init__(self, pool: WorkerPool, state: Callable[[], ServerState]) -> None:
        self.pool = pool
        self.state = state

    def collect(self) -> Iterator[Metric]:
        pool = self.pool
        state = self.state()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        info = GaugeMetricFamily("streamer_build_info", "The server's version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield gauge("streamer_queue_depth", "Chunks waiting for a worker.", pool.queue_depth)
        yield gauge("streamer_queue_max", "Queue depth at which new turns are refused.", pool.max_queue)
        yield gauge("streamer_workers", "Worker processes configured.", pool.size)
        yield gauge(
            "streamer_workers_ready", "Worker processes alive and ready.", pool.status()["ready_workers"]
        )
        yield gauge("streamer_workers_busy", "Worker processes synthesizing a chunk now.", pool.busy_workers)
        yield gauge("streamer_active_sessions", "Sessions with a connection attached.", state.active_sessions)
        yield gauge("streamer_sessions", "Sessions held, detached ones (resumable) included.", state.sessions)
        yield gauge("streamer_active_connections", "Open WebSocket connections.", state.connections)
        yield gauge("streamer_draining", "1 while the server is shutting down.", int(state.draining))
        yield counter("streamer_worker_restarts", "Worker processes respawned after exiting.", pool.restarts)
        yield counter(
            "streamer_worker_recycles",
            "Idle workers replaced for holding more than pool.max_worker_rss_mb.",
            pool.recycles,
        )
        yield counter("streamer_chunks_synthesized", "Chunks the pool finished.", pool.jobs_done)


def route_template(scope: Scope, routes: Sequence[BaseRoute] = ()) -> str:
    """The template of the route a request is for (``/api/v1/sessions/{session_id}``), never the raw path.

    The router leaves the route it picked in the scope; a request answered before routing (a 401,
    a 413) is matched against ``routes`` here.
    """
    route = scope.get("route")
    if route is not None:
        # Inside a Mount the router leaves the inner route: the mount's matched prefix goes in front.
        prefix = scope.get("root_path", "")[len(scope.get("app_root_path", "")) :]
    else:
        route, prefix = _match(routes, scope), ""
    path = getattr(route, "path", None)
    if route is None or path is None:
        return UNMATCHED_ROUTE
    if isinstance(route, Mount):
        return f"{prefix or path}/{{path}}"
    return f"{prefix}{path}"


def _match(routes: Sequence[BaseRoute], scope: Scope) -> BaseRoute | None:
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


class RequestMetricsMiddleware:
    """Outermost: counts and times every HTTP request, 413s and 500s of the context middleware included."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe_request(
                scope.get("method", ""),
                route_template(scope, self.routes),
                status,
                time.perf_counter() - started,
            )


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: the Prometheus exposition of the runtime's registry."""
    metrics: Metrics = request.app.state.runtime.metrics
    body, content_type = metrics.exposition(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})
