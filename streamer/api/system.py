"""Health, readiness, status and JSON metrics: what an operator or a load balancer asks first."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import psutil
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .. import __version__
from ..runtime import Runtime


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def components(runtime: Runtime) -> dict[str, str]:
    pool = runtime.pool.status()
    if not runtime.started:
        queue = engine = "not_initialized"
    else:
        queue = "healthy" if pool["ready_workers"] else "starting"
        engine = runtime.engine_state()
    return {
        "config_manager": "healthy",
        "session_manager": "healthy" if runtime.started else "not_initialized",
        "queue_manager": queue,
        "tts_engine": engine,
    }


async def health(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    parts = components(runtime)
    healthy = all(state in ("healthy", "loading", "starting") for state in parts.values())
    return JSONResponse(
        {
            "status": "healthy" if healthy else "degraded",
            "timestamp": now_iso(),
            "version": __version__,
            "uptime_seconds": round(runtime.uptime_s, 3),
            "components": parts,
            "engine": runtime.catalog.default_engine,
            "workers_ready": runtime.pool.status()["ready_workers"],
        }
    )


async def ready(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    pool = runtime.pool.status()
    checks = {
        "pool": pool["ready_workers"] > 0,
        "engine_loaded": runtime.engine_state() == "healthy",
        "accepting": not runtime.draining,
    }
    failing = [name for name, ok in checks.items() if not ok]
    body = {"status": "ready" if not failing else "not_ready", "checks": checks, "failing": failing}
    return JSONResponse(body, status_code=200 if not failing else 503)


async def status(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    if request.query_params.get("reset_loop_lag"):
        runtime.loop_lag.reset()
    settings = runtime.settings
    pool = runtime.pool.status()
    engine = runtime.catalog.default_engine
    frame_samples = settings.audio.default_sample_rate * settings.audio.frame_ms // 1000
    body: dict[str, Any] = {
        "status": "draining" if runtime.draining else "running",
        "timestamp": now_iso(),
        "server": {
            "uptime_seconds": round(runtime.uptime_s, 3),
            "host": settings.server.host,
            "http_port": settings.server.http_port,
            "websocket_port": settings.server.websocket_port,
            "max_connections": settings.server.max_connections,
            "version": __version__,
        },
        "tts_engine": {
            "engine": engine,
            "device": settings.tts.device,
            "default_language": settings.tts.default_language,
            "supported_languages": sorted({lang for lang in runtime.catalog.languages_of(engine)}),
            "preload_languages": settings.tts.preload_languages,
            "state": runtime.engine_state(),
            "engines": sorted(runtime.catalog.engines),
        },
        "audio_processor": {
            "default_format": settings.audio.default_format,
            "supported_formats": settings.audio.supported_formats,
            "buffer_size": frame_samples,
            "default_sample_rate": settings.audio.default_sample_rate,
            "frame_ms": settings.audio.frame_ms,
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
        "counters": runtime.counters(),
        "pending_restart": runtime.config.pending_restart,
    }
    return JSONResponse(body)


async def metrics(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    memory = runtime.process.memory_info().rss
    workers_memory = 0
    for pid in runtime.pool.worker_pids():
        with contextlib.suppress(psutil.Error):  # a worker that just exited
            workers_memory += psutil.Process(pid).memory_info().rss
    figures = runtime.metrics.summary()
    return JSONResponse(
        {
            "timestamp": now_iso(),
            "uptime_seconds": round(runtime.uptime_s, 3),
            "active_sessions": sum(1 for s in runtime.sessions.sessions.values() if s.connected),
            "total_requests": figures["total_requests"],
            "average_latency_ms": figures["average_latency_ms"],
            "queue_size": runtime.pool.queue_depth,
            "memory_usage_mb": round(memory / 2**20, 2),
            "cpu_usage_percent": runtime.process.cpu_percent(None),
            "workers_memory_mb": round(workers_memory / 2**20, 2),
            "sessions_total": len(runtime.sessions.sessions),
            "turns": figures["turns"],
            "interrupts": figures["interrupts"],
            "ttfa_ms_p50": figures["ttfa_ms_p50"],
            "ttfa_ms_p95": figures["ttfa_ms_p95"],
        }
    )


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    Route("/api/v1/health", health, methods=["GET"]),
    Route("/api/v1/status", status, methods=["GET"]),
    Route("/api/v1/metrics", metrics, methods=["GET"]),
]
