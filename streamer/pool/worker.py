"""The inference worker process: loads its engines once, then synthesizes chunks sent over a pipe.

The messages it takes and sends are the dataclasses of messages.py. Cancellation is a shared
integer, not a message: the parent writes the id of the job to abort and the engine polls it between
PCM blocks, so an abort lands mid-synthesis without a round trip.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from ..engines import create_engine
from ..engines.base import BatchEngine, Engine, audio_bound_error
from ..errors import EngineError, StreamerError
from ..protocol.fields import Voice
from .messages import Block, Done, Failed, Load, Loaded, Ready, Stop, Synth, SynthBatch, Timings

EngineFor = Callable[[str], Engine]  # an engine by name, loaded and warmed on first use


def worker_main(
    conn: Connection,
    cancel: Synchronized[int],
    engines_settings: dict[str, dict[str, Any]],
    preload: list[str],
    torch_threads: int,
    nice: int = 0,
) -> None:
    # Ctrl-C or a service manager signals the whole process group: the parent drains and then stops
    # its workers itself (a Stop message, or end of file when it is gone), so they ignore both.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if nice:
        # Synthesis is throughput work; the event loop's sends and interrupt acks are latency work:
        # when the cores are full, the server process should win.
        os.nice(nice)
    os.environ.setdefault("OMP_NUM_THREADS", str(torch_threads))
    engines: dict[str, Engine] = {}

    def engine_for(name: str) -> Engine:
        engine = engines.get(name)
        if engine is None:
            engine = create_engine(name, engines_settings.get(name, {}))
            engine.load()
            engine.warmup()
            engines[name] = engine
        return engine

    load_errors: dict[str, str] = {}
    for name in preload:
        try:
            engine_for(name)
        except Exception as exc:
            load_errors[name] = str(exc)
    conn.send(Ready(os.getpid(), tuple(sorted(engines)), load_errors))

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        match message:
            case Stop():
                return
            case Load(engine=name):
                try:
                    engine_for(name)
                    conn.send(Loaded(name, None))
                except Exception as exc:
                    conn.send(Loaded(name, str(exc)))
            case Synth():
                _synthesize(conn, engine_for, cancel, message)
            case SynthBatch():
                _synthesize_batch(conn, engine_for, message)


def _failure(job_id: int, exc: Exception) -> Failed:
    if isinstance(exc, StreamerError):
        return Failed(job_id, exc.code, exc.message)
    return Failed(job_id, "engine_error", f"{type(exc).__name__}: {exc}")


def _synthesize(conn: Connection, engine_for: EngineFor, cancel: Synchronized[int], job: Synth) -> None:
    """One chunk, its blocks sent as they come; stops between blocks when the pool cancels it."""
    started = time.perf_counter()
    first_block_ms: float | None = None
    audio_samples = 0

    bound_s, audio_s = job.request.max_audio_s, 0.0

    def should_stop() -> bool:
        return cancel.value == job.job_id

    try:
        engine = engine_for(job.engine)
        blocks = engine.synthesize(job.request, should_stop)
        try:
            for block in blocks:
                if should_stop():
                    break
                if first_block_ms is None:
                    first_block_ms = (time.perf_counter() - started) * 1000
                sample_rate = getattr(block, "sample_rate", None) or _voice_rate(engine, job.request.voice)
                audio_samples += len(block)
                audio_s += len(block) / sample_rate
                if bound_s and audio_s > bound_s:
                    # A few bytes of odd text must not buy minutes of audio: stop the engine (closing
                    # its generator aborts the utterance) and fail the chunk.
                    raise audio_bound_error(bound_s, len(job.request.text))
                conn.send(Block(job.job_id, sample_rate, block.astype("float32", copy=False).tobytes()))
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()
    except Exception as exc:
        conn.send(_failure(job.job_id, exc))
        return
    timings = Timings(
        synth_ms=(time.perf_counter() - started) * 1000,
        first_block_ms=first_block_ms,
        samples=audio_samples,
        cancelled=should_stop(),
    )
    conn.send(Done(job.job_id, timings))


def _synthesize_batch(conn: Connection, engine_for: EngineFor, batch: SynthBatch) -> None:
    """Several chunks (of different sessions, one engine and language) in one batched pass."""
    started = time.perf_counter()
    try:
        engine = engine_for(batch.engine)
        if not isinstance(engine, BatchEngine):  # the runtime gives batch keys to these engines only
            raise EngineError(f"engine '{batch.engine}' cannot synthesize a batch")
        outputs = engine.synthesize_batch(list(batch.requests))
    except Exception as exc:
        for job_id in batch.job_ids:
            conn.send(_failure(job_id, exc))
        return
    synth_ms = (time.perf_counter() - started) * 1000
    for job_id, request, audio in zip(batch.job_ids, batch.requests, outputs, strict=True):
        if request.max_audio_s and len(audio) > request.max_audio_s * _voice_rate(engine, request.voice):
            conn.send(_failure(job_id, audio_bound_error(request.max_audio_s, len(request.text))))
            continue
        if len(audio):
            rate = _voice_rate(engine, request.voice)
            conn.send(Block(job_id, rate, audio.astype("float32", copy=False).tobytes()))
        timings = Timings(
            synth_ms=synth_ms,
            first_block_ms=synth_ms,
            samples=len(audio),
            cancelled=False,
            batch=len(batch.job_ids),
        )
        conn.send(Done(job_id, timings))


_rates: dict[tuple[str, str], int] = {}


def _voice_rate(engine: Any, voice: Voice) -> int:
    # A blend speaks at the rate of its speakers (one language, one model): any of them tells.
    key = (engine.name, voice if isinstance(voice, str) else next(iter(voice)))
    if key not in _rates:
        for v in engine.voices():
            _rates[(engine.name, v.name)] = v.sample_rate
    return _rates.get(key, 22050)
