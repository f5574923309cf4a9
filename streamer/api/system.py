"""Health, readiness, status and JSON metrics: what an operator or a load balancer asks first."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import psutil
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from ..runtime import Runtime
from .http import answer
from .models.answers import Components, Health, Metrics, Readiness, ServerStatus


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def components(runtime: Runtime) -> Components:
    config = "unhealthy" if runtime.config.reload_error else "healthy"  # the file on disk does not load
    if not runtime.started:
        return Components(
            config_manager=config,
            session_manager="not_initialized",
            queue_manager="not_initialized",
            tts_engine="not_initialized",
        )
    return Components(
        config_manager=config,
        session_manager="healthy",
        queue_manager="healthy" if runtime.pool.status()["ready_workers"] else "starting",
        tts_engine=runtime.engine_state(),  # type: ignore[arg-type]  # one of the pool's states
    )


async def health(request: Request) -> Response:
    runtime = runtime_of(request)
    parts = components(runtime)
    healthy = all(state in ("healthy", "loading", "starting") for state in dict(parts).values())
    return answer(
        Health(
            status="healthy" if healthy else "degraded",
            timestamp=now_iso(),
            version=__version__,
            uptime_seconds=round(runtime.uptime_s, 3),
            components=parts,
            engine=runtime.catalog.default_engine,
            workers_ready=runtime.pool.status()["ready_workers"],
        )
    )


async def ready(request: Request) -> Response:
    runtime = runtime_of(request)
    checks = {
        "pool": runtime.pool.status()["ready_workers"] > 0,
        "engine_loaded": runtime.engine_state() == "healthy",
        "accepting": not runtime.draining,
    }
    failing = [name for name, ok in checks.items() if not ok]
    body = Readiness.model_validate(
        {"status": "not_ready" if failing else "ready", "checks": checks, "failing": failing}
    )
    return answer(body, 503 if failing else 200)


async def status(request: Request) -> Response:
    runtime = runtime_of(request)
    if request.query_params.get("reset_loop_lag"):
        runtime.loop_lag.reset()
    settings = runtime.settings
    pool = runtime.pool.status()
    engine = runtime.catalog.default_engine
    body = {
        "status": "draining" if runtime.draining else "running",
        "timestamp": now_iso(),
        "server": {
            **settings.server.model_dump(include={"host", "http_port", "websocket_port", "max_connections"}),
            "uptime_seconds": round(runtime.uptime_s, 3),
            "version": __version__,
        },
        "tts_engine": {
            **settings.tts.model_dump(include={"device", "default_language", "preload_languages"}),
            "engine": engine,
            "supported_languages": sorted(set(runtime.catalog.languages_of(engine))),
            "state": runtime.engine_state(),
            "engines": sorted(runtime.catalog.engines),
        },
        "audio_processor": {
            **settings.audio.model_dump(
                include={"default_format", "supported_formats", "default_sample_rate", "frame_ms"}
            ),
            "buffer_size": settings.audio.default_sample_rate * settings.audio.frame_ms // 1000,
        },
        "active_connections": len(runtime.connections),
        "queue_status": {
            "max_size": pool["max_queue"],
            "current_size": pool["queue_depth"],
            "worker_processes": pool["workers"],
            "busy_workers": pool["busy_workers"],
        },
        "sessions": len(runtime.sessions.sessions),
        "pool": pool,
        "loop_lag": runtime.loop_lag.summary(),
        "counters": runtime.metrics.counters(),
        "pending_restart": runtime.config.pending_restart,
    }
    return answer(ServerStatus.model_validate(body))


async def metrics(request: Request) -> Response:
    runtime = runtime_of(request)
    workers_memory = 0
    for pid in runtime.pool.worker_pids():
        with contextlib.suppress(psutil.Error):  # a worker that just exited
            workers_memory += psutil.Process(pid).memory_info().rss
    figures = runtime.metrics.summary()
    return answer(
        Metrics(
            timestamp=now_iso(),
            uptime_seconds=round(runtime.uptime_s, 3),
            active_sessions=sum(1 for s in runtime.sessions.sessions.values() if s.connected),
            total_requests=figures["total_requests"],
            average_latency_ms=figures["average_latency_ms"],
            queue_size=runtime.pool.queue_depth,
            memory_usage_mb=round(runtime.process.memory_info().rss / 2**20, 2),
            cpu_usage_percent=runtime.process.cpu_percent(None),
            workers_memory_mb=round(workers_memory / 2**20, 2),
            sessions_total=len(runtime.sessions.sessions),
            turns=figures["turns"],
            interrupts=figures["interrupts"],
            ttfa_ms_p50=figures["ttfa_ms_p50"],
            ttfa_ms_p95=figures["ttfa_ms_p95"],
        )
    )


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    Route("/api/v1/health", health, methods=["GET"]),
    Route("/api/v1/status", status, methods=["GET"]),
    Route("/api/v1/metrics", metrics, methods=["GET"]),
]
