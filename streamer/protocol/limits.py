"""Per-connection message rate limit: a token bucket that also notices sustained abuse. No I/O."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """Allows ``rate`` messages per second with bursts of ``burst``.

    ``allow()`` returns False for a message over the limit. ``abusive`` turns True once more than
    ``abuse_after`` messages in a row were refused: the connection is then closed (a client that
    ignores ``rate_limited`` would otherwise keep the server busy answering it).
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        abuse_after: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, 2 * rate)
        self.abuse_after = abuse_after
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self.refused_in_a_row = 0

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.refused_in_a_row = 0
            return True
        self.refused_in_a_row += 1
        return False

    @property
    def abusive(self) -> bool:
        return self.refused_in_a_row > self.abuse_after
