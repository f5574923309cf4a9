"""Event-loop lag: how late a short sleep wakes up, kept as a rolling window of samples."""

from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np


class LoopLagMonitor:
    def __init__(self, interval_s: float = 0.01, window: int = 6000) -> None:
        self.interval_s = interval_s
        self.samples: deque[float] = deque(maxlen=window)  # ms late, one per interval

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            self.samples.append(max(0.0, (time.perf_counter() - started - self.interval_s) * 1000))

    def reset(self) -> None:
        self.samples.clear()

    def summary(self) -> dict[str, float | int]:
        if not self.samples:
            return {"samples": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        values = np.fromiter(self.samples, dtype=np.float64)
        return {
            "samples": len(values),
            "p50_ms": round(float(np.percentile(values, 50)), 3),
            "p99_ms": round(float(np.percentile(values, 99)), 3),
            "max_ms": round(float(values.max()), 3),
        }
