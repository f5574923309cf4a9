"""What one server process shares: settings, the voice catalog, the worker pool and the sessions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import psutil
import structlog

from .config import Settings
from .config_manager import ConfigManager
from .engines.base import BatchEngine, usable_cores
from .engines.catalog import Catalog, ResolvedVoice
from .errors import ConfigError, UnknownEngine, UnknownVoice, UnsupportedFormat
from .observability.logging import set_level
from .observability.looplag import LoopLagMonitor
from .observability.metrics import Metrics, ServerState
from .pool import WorkerPool
from .protocol import SessionConfig
from .protocol.fields import FORMATS
from .session.state import Attachment, Session, SessionRegistry
from .text import Chunker

log = structlog.get_logger(__name__)


def _engine_error(exc: UnknownEngine) -> ConfigError:
    """tts.engine names an engine this installation cannot run: a config error, field and all."""
    return ConfigError(f"tts.engine: {exc.message}", [{"loc": ["tts", "engine"], "msg": exc.message}])


def default_voice_problem(catalog: Catalog, settings: Settings, engine: str | None = None) -> str | None:
    """Why ``tts.default_voice`` names no voice of the default engine (sessions would silently get
    another voice), with the command that lists the right ones; None when it is unset or found."""
    voice = settings.tts.default_voice
    engine = engine or catalog.default_engine
    if voice is None or catalog.find(engine, voice) is not None:
        return None
    command = f"`streamer voices --engine {engine}`"
    hint = f"{command} lists them"
    owners = [name for name in sorted(catalog.engines) if name != engine and catalog.find(name, voice)]
    if owners:
        hint = f"it is a {owners[0]} voice: set tts.engine: {owners[0]}, or pick one that {command} lists"
    requested = settings.tts.engine
    return f"tts.default_voice: no voice {voice!r} in engine {engine} (tts.engine: {requested}); {hint}"


class Runtime:
    def __init__(
        self,
        settings: Settings,
        config_path: str | Path | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.config = ConfigManager(
            settings, config_path, apply=self._apply_settings, check=self._check_settings, overrides=overrides
        )
        self.started_at = time.time()
        self.started_monotonic = time.monotonic()
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first reading only sets the baseline
        engines = settings.engines.model_dump()
        melo = engines["melo"]  # the tts section speaks for the engine that loads per language and device
        melo["languages"] = melo["languages"] or list(settings.tts.preload_languages)
        if melo["device"] == "auto":
            melo["device"] = settings.tts.device
        if not melo["threads"]:
            cores = usable_cores()
            melo["threads"] = max(1, cores // (settings.pool.workers or cores))
        try:
            self.catalog = Catalog(engines, settings.tts.engine)
        except UnknownEngine as exc:
            raise _engine_error(exc) from None
        if problem := default_voice_problem(self.catalog, settings):
            raise ConfigError(problem)  # one line: the command line prints it as it is
        self.pool = WorkerPool(
            workers=settings.pool.workers,
            engines_settings=engines,
            preload=[self.catalog.default_engine],
            max_queue=settings.pool.max_queue,
            max_batch=settings.pool.max_batch,
            nice=settings.pool.nice,
            max_audio_s_per_char=settings.pool.max_audio_s_per_char,
            max_audio_floor_s=settings.pool.max_audio_floor_s,
            max_worker_rss_mb=settings.pool.max_worker_rss_mb,
        )
        self.pool.chunk_threads = {
            name: engine.capabilities.threads
            for name, engine in self.catalog.engines.items()
            if engine.capabilities.threads > 1
        }
        self.sessions = SessionRegistry(
            settings.security.secret_key,
            resume_window_s=settings.sessions.resume_window_s,
            idle_timeout_s=settings.sessions.idle_timeout_s,
        )
        self.connections: set[Attachment] = set()
        self.draining = False
        self.started = False
        self.ws_port = settings.server.websocket_port  # the bound port, set by the server
        self.loop_lag = LoopLagMonitor()
        self._background: list[asyncio.Task[None]] = []
        self.metrics = Metrics(self.pool, self._state)

    async def start(self) -> None:
        await self.pool.start()
        self.started = True
        self._background = [
            asyncio.create_task(self.sessions.expire_forever(), name="session-expiry"),
            asyncio.create_task(self.loop_lag.run(), name="loop-lag"),
            asyncio.create_task(self._watch_config_file(), name="config-watch"),
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

    def reload_config(self, reason: str) -> None:
        """Re-read the config file (SIGHUP, file change); an invalid file is logged and changes nothing."""
        try:
            outcome = self.config.reload()
        except ConfigError as exc:
            log.error("config_reload_failed", reason=reason, error=exc.message)
            return
        log.info("config_reloaded", reason=reason, **outcome)

    async def _watch_config_file(self, interval_s: float = 1.0) -> None:
        def stamp() -> float | None:
            path = self.config.path
            try:
                return path.stat().st_mtime if path else None
            except OSError:
                return None

        last = stamp()
        while True:
            await asyncio.sleep(interval_s)
            current = stamp()
            if current is not None and current != last:
                last = current
                self.reload_config("file_changed")

    def engine_state(self) -> str:
        return self.pool.engine_state(self.catalog.default_engine)

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic

    def _state(self) -> ServerState:
        sessions = self.sessions.sessions.values()
        return ServerState(
            sessions=len(sessions),
            active_sessions=sum(1 for s in sessions if s.connected),
            connections=len(self.connections),
            draining=self.draining,
        )

    def _check_settings(self, new: Settings) -> None:
        """Refuse a live config whose engine this server cannot run, or whose default voice it does not
        have (the schema cannot know either)."""
        engine = self.catalog.default_engine
        if new.tts.engine != self.settings.tts.engine:
            try:
                engine = self.catalog.pick_default(new.tts.engine)
            except UnknownEngine as exc:
                raise _engine_error(exc) from None
        if problem := default_voice_problem(self.catalog, new, engine):
            reason = problem.removeprefix("tts.default_voice: ")
            raise ConfigError(problem, [{"loc": ["tts", "default_voice"], "msg": reason}])

    def _apply_settings(self, old: Settings, new: Settings) -> None:
        """Apply a live config change: new sessions get new defaults; workers load a new engine."""
        self.settings = new
        if new.logging.level != old.logging.level:
            set_level(new.logging.level)
        self.sessions.resume_window_s = new.sessions.resume_window_s
        self.sessions.idle_timeout_s = new.sessions.idle_timeout_s
        self.pool.max_queue = new.pool.max_queue
        self.pool.max_audio_s_per_char = new.pool.max_audio_s_per_char
        self.pool.max_audio_floor_s = new.pool.max_audio_floor_s
        self.pool.max_worker_rss_mb = new.pool.max_worker_rss_mb
        if new.tts.engine != old.tts.engine:
            self.catalog.default_engine = self.catalog.pick_default(new.tts.engine)
            self.pool.load_engine(self.catalog.default_engine)
        log.info("config_applied", engine=self.catalog.default_engine, level=new.logging.level)

    # ---- sessions ------------------------------------------------------------------------------

    def resolve_voice(self, config: SessionConfig, current: Session | None = None) -> ResolvedVoice:
        tts = self.settings.tts
        # An empty string is a value the client sent, not "unset": it is refused as the name it is
        # (the catalog would otherwise take "" for its default engine or language).
        if config.engine is not None:
            self.catalog.engine(config.engine)
        if config.language is not None and not config.language.strip():
            raise UnknownVoice(
                f"language '{config.language}' is not a language; GET /api/v1/languages lists them",
                language=config.language,
            )
        engine = config.engine if config.engine is not None else (current.voice.engine if current else None)
        voice = config.voice
        language = config.language
        unchanged = voice is None and language is None and config.voice_id is None
        if current is not None and unchanged and engine == current.voice.engine:
            return current.voice
        if current is not None and voice is None and language is None:
            language = current.voice.language  # a new engine keeps the session's language
        if config.engine is None and isinstance(voice, str):
            # A voice name alone: the session's (or default) engine if it has it, else the engine that does.
            engine = self.catalog.engine_with_voice(voice, prefer=engine)
        return self.catalog.resolve(
            engine,
            voice,
            language,
            default_voice=tts.default_voice if config.voice_id is None else None,
            default_language=tts.default_language,
            default_voice_id=tts.default_voice_id if config.voice_id is None else config.voice_id,
            strict_voice_id=config.voice_id is not None,
        )

    def batch_key(self, voice: ResolvedVoice) -> str | None:
        """Chunks with the same key may share a batched pass (engines that batch, when batching is on)."""
        engine = self.catalog.engines.get(voice.engine)
        if self.pool.max_batch > 1 and isinstance(engine, BatchEngine):
            return f"{voice.engine}:{voice.language}"
        return None

    def check_format(self, fmt: str) -> str:
        supported = self.settings.audio.supported_formats
        if fmt not in FORMATS or fmt not in supported:
            raise UnsupportedFormat(f"format '{fmt}' is not supported; use one of {', '.join(supported)}")
        return fmt

    def new_session(self, config: SessionConfig) -> Session:
        """A new session in the registry; its settings are checked first, then the session cap."""
        voice = self.resolve_voice(config)
        audio, tts = self.settings.audio, self.settings.tts
        fmt = self.check_format(config.format if config.format is not None else audio.default_format)
        self.sessions.make_room(self.settings.sessions.max_sessions)
        chunker_settings = self.settings.chunker
        session = Session(
            id=self.sessions.new_id(),
            voice=voice,
            speed=config.speed if config.speed is not None else tts.default_speed,
            format=fmt,
            sample_rate=config.sample_rate if config.sample_rate is not None else audio.default_sample_rate,
            chunker=Chunker(
                first_chunk_chars=chunker_settings.first_chunk_chars,
                max_chunk_chars=chunker_settings.max_chunk_chars,
            ),
        )
        self.metrics.sessions_opened.inc()
        return self.sessions.add(session)
