"""Requests waiting for their replies (`ready`, `interrupted`, `configured`, `pong`) or for an `error`."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from .errors import ConnectionClosed, ServerError
from .messages import Event


@dataclass(eq=False, slots=True)
class Waiter:
    kind: str  # the event type that answers
    message_id: str | None  # the request's id: an `error` naming it answers too
    future: asyncio.Future[Event]
    sent_at: float


class Replies:
    """The requests of one client still waiting; the reader hands every event to ``answer``."""

    def __init__(self) -> None:
        self._waiters: list[Waiter] = []

    def expect(self, kind: str, message_id: str | None = None) -> Waiter:
        """Wait for the next ``kind`` event, or the `error` answering ``message_id``."""
        waiter = Waiter(kind, message_id, asyncio.get_running_loop().create_future(), time.perf_counter())
        self._waiters.append(waiter)
        return waiter

    def answer(self, event: Event, started: bool) -> Event:
        """Wake whoever waits for ``event``; returns it with its latency when it is a reply.

        ``started``: the session is ready; before that an `error` answers the start, whatever it names.
        """
        message_id = event.get("id")
        if event.type == "error":
            answered = [w for w in self._waiters if message_id is not None and w.message_id == message_id]
            if not answered and (event.get("fatal") or not started):
                answered = list(self._waiters)
            for waiter in answered:
                self._waiters.remove(waiter)
                if not waiter.future.done():
                    waiter.future.set_exception(ServerError(event))
            return event
        candidates = [w for w in self._waiters if w.kind == event.type and not w.future.done()]
        # A reply naming its request (`pong`) goes to that request; others to the oldest waiting.
        waiter = next((w for w in candidates if w.message_id == message_id), None) if message_id else None
        waiter = waiter or (candidates[0] if candidates else None)
        if waiter is None:
            return event
        self._waiters.remove(waiter)
        replied = Event(
            event.type, event.data, event.received_at, (event.received_at - waiter.sent_at) * 1000
        )
        waiter.future.set_result(replied)
        return replied

    async def wait(self, waiter: Waiter, timeout: float | None) -> Event:
        try:
            return await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            raise TimeoutError(f"no `{waiter.kind}` from the server within {timeout} s") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def close(self, code: int | None, reason: str) -> None:
        """The connection closed: every request still waiting fails with ``ConnectionClosed``."""
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(ConnectionClosed(code, reason))
        self._waiters.clear()
