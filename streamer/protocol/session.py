"""The session protocol as a state machine, sans I/O: client messages in, events and actions out.

A connection feeds each WebSocket message to ``receive()`` and carries out what comes back, in order:
``ServerEvent``s to send at once (ahead of audio), ``Close`` to close after what is queued before it,
and the actions (``StartSession``, ``TakeText``, ``EndTurn``, ``Configure``, ``Interrupt``) that only the
connection can perform, since they need the voice catalog, the chunker and the pool. An action the
connection cannot perform (an unknown voice, text over the buffer limit) is handed back with ``fail()``,
which answers with the ``error`` event and undoes the state change the action stood for; the actions
after a failed one in the same list are not performed. Nothing here awaits, reads a clock for timing
or touches a socket (as websockets' ``Protocol``): tests drive every flow of docs/protocol.md in memory.

    CONNECTING ──start (or any first message: implicit start)──> IDLE
    IDLE ──text──> TURN_OPEN ──flush / text+flush / interrupt──> IDLE
    IDLE, TURN_OPEN ──end──> ENDING ──(the turn spoken: the connection closes)
    ENDING ──interrupt──> close after `interrupted`
    any ──supersede (the session resumed on another connection) or a fatal error──> CLOSED
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InvalidMessage, StreamerError
from .codec import decode
from .events import CLOSE_NORMAL, CLOSE_POLICY, Error, Pong, ServerEvent, error_event
from .limits import RateLimiter
from .messages import ClientMessage, Config, End, Flush, Interrupt, Ping, SessionConfig, Start, Text, parse

MessageId = str | int | None


class State(enum.Enum):
    CONNECTING = "connecting"  # no session yet
    IDLE = "idle"  # a session, no turn open
    TURN_OPEN = "turn_open"  # text taken since the last flush, end or interrupt
    ENDING = "ending"  # `end` taken: the last turn is being spoken, then the connection closes
    CLOSED = "closed"  # closing: superseded or a fatal error; every message is ignored


@dataclass(frozen=True, slots=True)
class Limits:
    """The wire limits, read from the live configuration for each message."""

    max_message_bytes: int
    max_text_chars: int
    max_messages_per_s: float


# ---- what the connection is asked to do ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartSession:
    """Open a new session, or resume ``start.session_id``; the connection answers ``ready``."""

    start: Start


@dataclass(frozen=True, slots=True)
class TakeText:
    text: str


@dataclass(frozen=True, slots=True)
class EndTurn:
    """Cut the buffered text into chunks and close the turn; ``done`` follows its audio."""

    kind: Literal["flush", "end"]
    id: MessageId = None


@dataclass(frozen=True, slots=True)
class Configure:
    config: SessionConfig


@dataclass(frozen=True, slots=True)
class BargeIn:
    """Barge-in: a new generation; the connection queues ``interrupted``."""


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with ``code`` once what was queued before it has gone out."""

    code: int
    reason: str = ""


Action = StartSession | TakeText | EndTurn | Configure | BargeIn
Output = ServerEvent | Close | Action


class SessionProtocol:
    """One connection's protocol state. Single-threaded: the connection calls it from one task."""

    def __init__(self) -> None:
        self.state = State.CONNECTING
        self.binary = False  # answer in the encoding of the client's most recent message
        self._limiter: RateLimiter | None = None
        self._message_id: MessageId = None  # the id of the message being handled, for its errors
        # Messages refused before they meant anything (unreadable, unknown, over a limit, over the rate):
        # the connection logs them once, when it ends, instead of once each.
        self.malformed = 0
        self.malformed_code: str | None = None
        self._state_before: State = State.CONNECTING  # to undo a failed action's transition

    # ---- input ------------------------------------------------------------------------------------

    def receive(self, data: str | bytes, limits: Limits) -> list[Output]:
        """One WebSocket message (a text frame as str, a binary frame as bytes)."""
        if self.state is State.CLOSED:
            return []
        self.binary = isinstance(data, bytes)
        self._message_id = None
        limiter = self._limiter
        if limiter is None:
            limiter = self._limiter = RateLimiter(limits.max_messages_per_s)
        limiter.rate = limits.max_messages_per_s  # live config applies at once
        if not limiter.allow():
            self._count_malformed("rate_limited")
            if limiter.abusive:
                return self._fatal("rate_limited", "too many messages past the rate limit", CLOSE_POLICY)
            return [error_event("rate_limited", f"over {limits.max_messages_per_s:g} messages/s", False)]
        try:
            obj = decode(data, limits.max_message_bytes)
            message_id = obj.get("id")
            self._message_id = message_id if isinstance(message_id, str | int) else None
            return self.handle(parse(obj, limits.max_text_chars))
        except StreamerError as exc:
            self._count_malformed(exc.code)
            return self.error(exc)

    def handle(self, message: ClientMessage) -> list[Output]:
        """A parsed client message: what to do about it."""
        state = self._state_before = self.state
        if state is State.CLOSED:
            return []
        out: list[Output] = []
        if isinstance(message, Start):
            if state is not State.CONNECTING:
                return self.error(InvalidMessage("the session has already started"))
            self.state = State.IDLE
            return [StartSession(message)]
        if state is State.CONNECTING:
            out.append(StartSession(Start()))  # any first message starts a session with the defaults
            self.state = state = State.IDLE
        if isinstance(message, Ping):
            out.append(Pong(message.id))
        elif isinstance(message, Interrupt):
            out.extend(self.interrupt())
        elif state is State.ENDING:
            out.extend(
                self.error(
                    InvalidMessage("the session is ending after `end`; only `interrupt` and `ping` are taken")
                )
            )
        elif isinstance(message, Text):
            out.append(TakeText(message.text))
            self.state = State.TURN_OPEN
            if message.flush:
                out.append(EndTurn("flush", message.id))
                self.state = State.IDLE
        elif isinstance(message, Flush):
            out.append(EndTurn("flush", message.id))
            self.state = State.IDLE
        elif isinstance(message, End):
            out.append(EndTurn("end", message.id))
            self.state = State.ENDING
        elif isinstance(message, Config):
            out.append(Configure(message.config))
        return out

    def interrupt(self) -> list[Output]:
        """Barge-in, from the client or the REST API: nothing to do before a session or while closing."""
        if self.state in (State.CONNECTING, State.CLOSED):
            return []
        out: list[Output] = [BargeIn()]
        if self.state is State.ENDING:
            out.append(Close(CLOSE_NORMAL, "interrupted after end"))
        else:
            self.state = State.IDLE
        return out

    def supersede(self) -> list[Output]:
        """Another connection resumed the session: say so, close, and ignore everything after."""
        self.state = State.CLOSED
        return [
            error_event("session_closed", "this session was resumed by another connection", True),
            Close(CLOSE_NORMAL, "session resumed elsewhere"),
        ]

    # ---- failures ---------------------------------------------------------------------------------

    def fail(self, action: Action, exc: StreamerError) -> list[Output]:
        """``action`` could not be performed: undo what it stood for and answer with the error."""
        if self.state is not State.CLOSED:
            if isinstance(action, StartSession):
                self.state = State.CONNECTING
            elif isinstance(action, TakeText):
                # The text was not taken: the turn is as open as it was before this message.
                self.state = State.TURN_OPEN if self._state_before is State.TURN_OPEN else State.IDLE
        return self.error(exc)

    def error(self, exc: StreamerError) -> list[Output]:
        """A client mistake as an ``error`` event; a fatal one closes the connection after it."""
        if exc.fatal:
            return self._fatal(exc.code, exc.message, CLOSE_POLICY, id=self._message_id)
        details = {k: v for k, v in exc.details.items() if isinstance(v, str | int | float | None)}
        return [error_event(exc.code, exc.message, False, id=self._message_id, **details)]

    def _count_malformed(self, code: str) -> None:
        self.malformed += 1
        self.malformed_code = code

    def _fatal(self, code: str, message: str, close_code: int, **details: Any) -> list[Output]:
        self.state = State.CLOSED
        return [error_event(code, message, True, **details), Close(close_code, code)]


__all__ = [
    "Action",
    "BargeIn",
    "Close",
    "Configure",
    "EndTurn",
    "Error",
    "Limits",
    "Output",
    "SessionProtocol",
    "StartSession",
    "State",
    "TakeText",
]
