"""Sessions outlive connections: their settings, seq counter and text offset, the registry, resume tokens."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from itsdangerous import BadSignature, URLSafeSerializer

from ..engines.catalog import ResolvedVoice
from ..errors import InvalidToken, SessionNotFound, TooManySessions
from ..protocol.events import ServerEvent
from ..text import Chunker

log = structlog.get_logger(__name__)

# What a client refused by the session cap is told to wait: expiry runs every second, and a session
# closed or left idle frees its place within a few.
CAP_RETRY_AFTER_S = 5


class Attachment(Protocol):
    """What a session, the REST API and shutdown need of the connection a session is attached to."""

    close_code: int | None  # set once the connection closes (or is told to)

    @property
    def chunks_queued(self) -> int: ...

    @property
    def idle(self) -> bool:
        """No turn open or being spoken: a draining server may close it now."""
        ...

    def interrupt(self) -> None: ...

    def supersede(self) -> None:
        """Another connection resumed the session: stop acting on it, then close."""
        ...

    def close_soon(self, code: int, reason: str = "", event: ServerEvent | None = None) -> None:
        """Send ``event`` (if any) ahead of everything else, then close."""
        ...


@dataclass(eq=False)
class Session:
    id: str
    voice: ResolvedVoice
    speed: float
    format: str
    sample_rate: int  # what the client asked for; the encoder may round it up (Opus, MP3)
    chunker: Chunker
    generation: int = 0
    last_seq: int | None = None  # the last audio seq sent in this session
    created_at: float = field(default_factory=time.time)
    last_active: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.time)  # wall clock, for display
    ever_attached: bool = False
    connection: Attachment | None = None
    audio_ms_sent: float = 0.0
    pending_audio: tuple[str, int] | None = None  # format, sample rate from the next turn on
    chunks_done: int = 0

    @property
    def connected(self) -> bool:
        return self.connection is not None

    @property
    def next_seq(self) -> int:
        return 0 if self.last_seq is None else self.last_seq + 1

    def apply_pending_audio(self) -> None:
        """A format or rate change announced mid-turn takes effect (a new turn starts)."""
        if self.pending_audio is not None:
            self.format, self.sample_rate = self.pending_audio
            self.pending_audio = None

    def touch(self) -> None:
        self.last_active = time.monotonic()
        self.last_activity = time.time()

    def describe(self) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "engine": self.voice.engine,
            "voice": self.voice.voice,
            "language": self.voice.language,
            "speed": self.speed,
            "format": self.format,
            "sample_rate": self.sample_rate,
            "generation": self.generation,
            "last_seq": self.last_seq,
            "text_offset": self.chunker.offset,
            "connected": self.connected,
            "created_at": self.created_at,
            "audio_seconds_sent": round(self.audio_ms_sent / 1000, 3),
        }


class SessionRegistry:
    """Every live or resumable session of this process; detached ones expire."""

    def __init__(self, secret_key: str | None, resume_window_s: float, idle_timeout_s: float) -> None:
        self._serializer = URLSafeSerializer(secret_key or secrets.token_urlsafe(32), salt="streamer.resume")
        self.resume_window_s = resume_window_s
        self.idle_timeout_s = idle_timeout_s
        self.sessions: dict[str, Session] = {}

    def make_room(self, max_sessions: int) -> None:
        """TooManySessions while ``max_sessions`` are held (a cap on the whole server: sessions carry no
        client identity to count them by)."""
        if len(self.sessions) >= max_sessions:
            raise TooManySessions(
                f"the server holds {len(self.sessions)} sessions, its limit (sessions.max_sessions); "
                "close one (DELETE /api/v1/sessions/{id}) or try again later",
                retry_after=CAP_RETRY_AFTER_S,
            )

    def add(self, session: Session) -> Session:
        self.sessions[session.id] = session
        return session

    def page(self, offset: int, limit: int) -> list[Session]:
        """Sessions in the order they were created, ``limit`` of them from ``offset``."""
        return list(itertools.islice(self.sessions.values(), offset, offset + limit))

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def token(self, session: Session) -> str:
        return self._serializer.dumps(session.id)

    def get(self, session_id: str) -> Session:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise SessionNotFound(f"session '{session_id}' not found", session_id=session_id) from None

    def verify(self, session_id: str, token: str) -> Session:
        try:
            signed_id = self._serializer.loads(token)
        except BadSignature:
            raise InvalidToken("resume token is invalid") from None
        if signed_id != session_id:
            raise InvalidToken("resume token does not belong to this session")
        return self.get(session_id)

    def remove(self, session_id: str) -> Session | None:
        return self.sessions.pop(session_id, None)

    def expired(self, now: float | None = None) -> list[Session]:
        now = time.monotonic() if now is None else now
        gone = []
        for session in list(self.sessions.values()):
            if session.connected:
                continue
            limit = self.resume_window_s if session.ever_attached else self.idle_timeout_s
            if now - session.last_active > limit:
                gone.append(session)
        return gone

    async def expire_forever(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            for session in self.expired():
                self.sessions.pop(session.id, None)
                log.info("session_expired", session_id=session.id)
