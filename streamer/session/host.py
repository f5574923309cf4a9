"""What a session needs of the server it runs in: a narrow interface the runtime satisfies.

Sessions and connections are written against this ``Protocol``, not the ``Runtime`` class, so the
session package never imports the runtime (which imports the session registry): no import cycle, and
tests can host a session on anything that has these few members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..config import Settings
    from ..engines.catalog import ResolvedVoice
    from ..observability.metrics import Metrics
    from ..pool import WorkerPool
    from ..protocol import SessionConfig
    from .state import Attachment, Session, SessionRegistry


class SessionHost(Protocol):
    settings: Settings  # the live configuration: read it when needed, never keep a copy
    pool: WorkerPool
    sessions: SessionRegistry
    connections: set[Attachment]  # open connections (the server drains them on shutdown)
    metrics: Metrics
    draining: bool  # shutting down: new work is refused

    def resolve_voice(self, config: SessionConfig, current: Session | None = None) -> ResolvedVoice:
        """The voice ``config`` names (keeping ``current``'s where it names none), or UnknownVoice & co."""
        ...

    def check_format(self, fmt: str) -> str:
        """``fmt`` if this server encodes it, else UnsupportedFormat."""
        ...

    def new_session(self, config: SessionConfig) -> Session: ...

    def batch_key(self, voice: ResolvedVoice) -> str | None:
        """Chunks with the same key may share a batched pass in the pool."""
        ...
