"""What one server process shares: settings, the voice catalog, the worker pool and the sessions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import structlog

from .audio import FORMATS
from .config import Settings
from .engines.catalog import Catalog, ResolvedVoice
from .errors import UnsupportedFormat
from .observability.looplag import LoopLagMonitor
from .pool import WorkerPool
from .protocol import SessionConfig
from .session.state import Session, SessionRegistry
from .text import Chunker

if TYPE_CHECKING:
    from .session.connection import Connection

log = structlog.get_logger(__name__)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_at = time.time()
        engines = settings.engines.model_dump()
        self.catalog = Catalog(engines, settings.tts.engine)
        self.pool = WorkerPool(
            workers=settings.pool.workers,
            engines_settings=engines,
            preload=[self.catalog.default_engine],
            max_queue=settings.pool.max_queue,
        )
        self.sessions = SessionRegistry(
            settings.security.secret_key,
            resume_window_s=settings.sessions.resume_window_s,
            idle_timeout_s=settings.sessions.idle_timeout_s,
        )
        self.connections: set[Connection] = set()
        self.draining = False
        self.loop_lag = LoopLagMonitor()
        self._background: list[asyncio.Task[None]] = []
        self.counters: dict[str, int] = {"sessions_opened": 0, "interrupts": 0, "audio_bytes": 0, "turns": 0}
        self.ttfa_ms: deque[float] = deque(maxlen=1000)  # recent turns' time to first audio

    async def start(self) -> None:
        await self.pool.start()
        self._background = [
            asyncio.create_task(self.sessions.expire_forever(), name="session-expiry"),
            asyncio.create_task(self.loop_lag.run(), name="loop-lag"),
        ]
        log.info(
            "runtime_started",
            engine=self.catalog.default_engine,
            engines=sorted(self.catalog.engines),
            workers=self.pool.size,
        )

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pool.close()

    # ---- sessions ------------------------------------------------------------------------------

    def resolve_voice(self, config: SessionConfig, current: Session | None = None) -> ResolvedVoice:
        tts = self.settings.tts
        engine = config.engine or (current.voice.engine if current else None)
        voice = config.voice
        language = config.language
        if current is not None and voice is None and language is None and engine == current.voice.engine:
            return current.voice
        if current is not None and voice is None and language is None:
            language = current.voice.language  # a new engine keeps the session's language
        return self.catalog.resolve(
            engine,
            voice,
            language,
            default_voice=tts.default_voice,
            default_language=tts.default_language,
            default_voice_id=tts.default_voice_id,
        )

    def check_format(self, fmt: str) -> str:
        supported = self.settings.audio.supported_formats
        if fmt not in FORMATS or fmt not in supported:
            raise UnsupportedFormat(f"format '{fmt}' is not supported; use one of {', '.join(supported)}")
        return fmt

    def new_session(self, config: SessionConfig) -> Session:
        voice = self.resolve_voice(config)
        fmt = self.check_format(config.format or self.settings.audio.default_format)
        chunker_settings = self.settings.chunker
        session = Session(
            id=self.sessions.new_id(),
            voice=voice,
            speed=config.speed or self.settings.tts.default_speed,
            format=fmt,
            sample_rate=config.sample_rate or self.settings.audio.default_sample_rate,
            chunker=Chunker(
                first_chunk_chars=chunker_settings.first_chunk_chars,
                max_chunk_chars=chunker_settings.max_chunk_chars,
            ),
        )
        self.counters["sessions_opened"] += 1
        return self.sessions.add(session)

    def record_ttfa(self, ms: float) -> None:
        self.counters["turns"] += 1
        self.ttfa_ms.append(ms)

    def status(self) -> dict[str, Any]:
        return {
            "engine": self.catalog.default_engine,
            "engines": sorted(self.catalog.engines),
            "pool": self.pool.status(),
            "active_connections": len(self.connections),
            "sessions": len(self.sessions.sessions),
            "loop_lag": self.loop_lag.summary(),
            "counters": dict(self.counters),
        }
