"""The messages on the pipe between the pool and a worker process: small picklable dataclasses.

To a worker: ``Synth`` (one chunk), ``SynthBatch`` (several chunks in one pass), ``Load`` (an engine,
now), ``Stop``. From a worker: ``Ready`` (once, after loading the preloaded engines), ``Block`` (audio of
a job, as it comes), then ``Done`` or ``Failed`` for each job, and ``Loaded`` (the answer to ``Load``).

Cancelling a job is not a message: the pool writes the job's id into the worker's shared integer, and
the engine polls it between blocks (see worker.py), so an abort lands without a round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from ..engines.base import SynthesisRequest


class Timings(TypedDict, total=False):
    """What a worker measured of one job (``Job.timings``, the metrics and the turn's log line)."""

    synth_ms: float  # from taking the job to its last block
    first_block_ms: float | None  # to its first block; None when it yielded none
    samples: int  # audio samples sent
    cancelled: bool  # stopped by the pool's cancel flag
    batch: int  # jobs synthesized together in its pass (batches only)


# ---- to a worker -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Synth:
    job_id: int
    engine: str
    request: SynthesisRequest


@dataclass(frozen=True, slots=True)
class SynthBatch:
    """Chunks of one engine and language in one batched pass (engines with ``synthesize_batch``)."""

    job_ids: tuple[int, ...]
    engine: str
    requests: tuple[SynthesisRequest, ...]


@dataclass(frozen=True, slots=True)
class Load:
    engine: str


@dataclass(frozen=True, slots=True)
class Stop:
    pass


# ---- from a worker -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    pid: int
    engines: tuple[str, ...]  # loaded and warmed
    errors: dict[str, str]  # engine -> why it failed to load


@dataclass(frozen=True, slots=True)
class Block:
    job_id: int
    sample_rate: int
    pcm: bytes  # mono float32 samples in [-1, 1]


@dataclass(frozen=True, slots=True)
class Done:
    job_id: int
    timings: Timings


@dataclass(frozen=True, slots=True)
class Failed:
    job_id: int
    code: str  # a StreamerError code; the pool rebuilds the error with errors.error_for_code
    message: str


@dataclass(frozen=True, slots=True)
class Loaded:
    engine: str
    error: str | None  # None: loaded


ToWorker = Synth | SynthBatch | Load | Stop
FromWorker = Ready | Block | Done | Failed | Loaded
