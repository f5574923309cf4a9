"""Which messages this client still wants: the session's generation as far as it knows, and stale data."""

from __future__ import annotations

from ._inbox import Inbox, SenderFailed
from .messages import AudioFrame, ClientStats, Event, Message

# Messages that belong to a generation's speech: dropped once that generation is interrupted.
DATA_TYPES = frozenset({"audio", "chunk_start", "chunk_end", "done"})


class Generations:
    """From the moment ``interrupting()`` is called, data of older generations is stale: dropped, those
    already waiting in the inbox included, and counted in ``stats.dropped``; one that arrives after the
    server's `interrupted` also in ``stats.stale_after_ack`` (always 0 against a correct server)."""

    def __init__(self, stats: ClientStats, inbox: Inbox) -> None:
        self.current = 0  # the session's current generation, as far as this client knows
        self._stats = stats
        self._inbox = inbox
        self._floor = 0  # data messages of a generation below this are stale
        self._acked = 0  # generation of the latest `interrupted` received

    def started(self, generation: int) -> None:
        """`ready`: the session is (again) at ``generation``."""
        self.current = self._floor = self._acked = generation

    def interrupting(self) -> None:
        """An `interrupt` is about to be sent: the current generation's speech is over for this client."""
        self._raise_floor(self.current + 1)

    def acknowledged(self, generation: int) -> None:
        """`interrupted` arrived."""
        self._stats.interrupts += 1
        self.current = max(self.current, generation)
        self._acked = max(self._acked, generation)
        self._raise_floor(generation)

    def stale(self, kind: str | None, generation: object) -> bool:
        """Whether a message of type ``kind`` is stale; a stale one is counted."""
        if kind not in DATA_TYPES or not isinstance(generation, int) or generation >= self._floor:
            return False
        self._stats.dropped += 1
        if generation < self._acked:
            self._stats.stale_after_ack += 1
        return True

    def _raise_floor(self, generation: int) -> None:
        if generation <= self._floor:
            return
        self._floor = generation

        def stale(item: Message | SenderFailed) -> bool:
            if isinstance(item, AudioFrame):
                return item.generation < generation
            if isinstance(item, Event) and item.type in DATA_TYPES:
                return (item.generation or 0) < generation
            return False

        self._stats.dropped += self._inbox.remove(stale)
