"""What a connection sends, in order: control events ahead of everything, audio in a bounded queue.

- Control (``pong``, ``error``, ``ready``, ``interrupted``, a ``Close``) goes in a deque the sender empties
  first: it is never behind audio, and it is small by nature (one item per client message at most).
- Data (audio frames and the ``chunk_*``/``done`` events around them) goes in a queue bounded in frames:
  a client that reads slowly makes the producer wait (backpressure), instead of growing memory.
- Each data item carries its generation; ``ready_to_send`` drops it unless it is the session's current
  one, so after ``interrupted`` nothing of an older generation leaves, whatever was queued.
- Sequence numbers are given in ``ready_to_send``, as frames leave, so they have no gaps.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from ..protocol.events import Audio, ChunkEnd, Done, Interrupted, ServerEvent
from ..protocol.session import Close
from .state import Session


@dataclass(frozen=True, slots=True)
class Data:
    """A data-path item of one generation: an event, or the close that follows the last turn (``end``)."""

    generation: int
    item: ServerEvent | Close


Outbound = ServerEvent | Close | Data


class Outbox:
    def __init__(self, max_frames: int) -> None:
        self._control: deque[ServerEvent | Close] = deque()
        self._data: asyncio.Queue[Data] = asyncio.Queue(maxsize=max_frames)
        self._wakeup = asyncio.Event()

    def control(self, item: ServerEvent | Close) -> None:
        """Send ``item`` before any data still queued."""
        self._control.append(item)
        self._wakeup.set()

    async def put(self, generation: int, item: ServerEvent | Close) -> None:
        """Queue a data item behind its generation's earlier ones; waits while the queue is full."""
        await self._data.put(Data(generation, item))
        self._wakeup.set()

    def drop_data(self) -> None:
        """Forget the queued data (barge-in): it belongs to a generation that is over."""
        while not self._data.empty():
            self._data.get_nowait()

    @property
    def data_empty(self) -> bool:
        return self._data.empty()

    async def next(self) -> Outbound:
        while True:
            if self._control:
                return self._control.popleft()
            if not self._data.empty():
                return self._data.get_nowait()
            self._wakeup.clear()
            await self._wakeup.wait()

    @staticmethod
    def ready_to_send(item: Outbound, session: Session | None) -> ServerEvent | Close | None:
        """The item as it goes out (numbered), or None when it belongs to an older generation."""
        if not isinstance(item, Data):
            if isinstance(item, Interrupted) and session is not None:
                item.last_seq = session.last_seq
            return item
        if session is None or item.generation != session.generation:
            return None  # a message of an older generation: never sent after `interrupted`
        event = item.item
        if isinstance(event, Audio):
            event.seq = session.next_seq
            session.last_seq = event.seq
            session.audio_ms_sent += event.samples * 1000 / event.sample_rate
        elif isinstance(event, ChunkEnd | Done):
            event.seq_last = session.last_seq
        return event
