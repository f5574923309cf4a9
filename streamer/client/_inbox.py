"""The bounded inbox between the client's reader task and its one consumer."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .messages import Message


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The socket closed: what every read answers from then on."""

    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class SenderFailed:
    """The text source of a running `stream()` raised: its collector re-raises ``error``."""

    error: BaseException


class Inbox:
    """A bounded FIFO the reader fills and one consumer empties; stale items can be taken out.

    Data messages wait for room; control messages always go in (they are few, and a waiting consumer
    must see them). Once closed, ``get()`` answers the close marker for ever.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[Message | SenderFailed] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed: StreamClosed | None = None

    def _changed(self) -> None:
        if self._items or self.closed:
            self._readable.set()
        else:
            self._readable.clear()
        if len(self._items) < self.maxsize:
            self._writable.set()
        else:
            self._writable.clear()

    async def wait_for_room(self) -> None:
        while len(self._items) >= self.maxsize:
            await self._writable.wait()

    def append(self, item: Message | SenderFailed) -> None:
        self._items.append(item)
        self._changed()

    def close(self, marker: StreamClosed) -> None:
        self.closed = marker
        self._changed()

    async def get(self) -> Message | SenderFailed | StreamClosed:
        while not self._items:
            if self.closed is not None:
                return self.closed
            await self._readable.wait()
        item = self._items.popleft()
        self._changed()
        return item

    def remove(self, stale: Callable[[Message | SenderFailed], bool]) -> int:
        kept = [item for item in self._items if not stale(item)]
        removed = len(self._items) - len(kept)
        self._items = deque(kept)
        self._changed()
        return removed
