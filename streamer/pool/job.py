"""One chunk of text in the pool: its request, its place in the schedule, the queue its audio comes on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..engines.base import SynthesisRequest
from ..errors import StreamerError
from .messages import Timings

# What a job's results queue carries, in order: its blocks, then one "done" or one "error".
JobResult = (
    tuple[Literal["block"], int, np.ndarray]  # sample rate, float32 samples
    | tuple[Literal["done"], Timings]
    | tuple[Literal["error"], StreamerError]
)


@dataclass(eq=False)
class Job:
    """One chunk of text to synthesize; its PCM blocks arrive on ``results`` in order."""

    id: int
    session: str
    engine: str
    request: SynthesisRequest
    first: bool
    batch_key: str | None = None  # jobs with the same key may be synthesized together (engine, language)
    submitted_at: float = field(default_factory=time.perf_counter)
    started_at: float | None = None
    results: asyncio.Queue[JobResult] = field(default_factory=asyncio.Queue)
    worker: int | None = None  # index of the worker it was handed to; None while it waits
    cancelled: bool = False
    finished: bool = False
    timings: Timings = field(default_factory=Timings)

    async def blocks(self) -> AsyncGenerator[tuple[int, np.ndarray], None]:
        """(sample_rate, float32 block) pairs until the job ends; raises the job's error."""
        while True:
            item = await self.results.get()
            if item[0] == "block":
                yield item[1], item[2]
            elif item[0] == "done":
                return
            else:
                raise item[1]
