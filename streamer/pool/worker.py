"""The inference worker process: loads its engines once, then synthesizes chunks sent over a pipe.

Messages in (tuples): ("synth", job_id, engine, SynthesisRequest) · ("load", engine) · ("stop",).
Messages out: ("ready", info) · ("block", job_id, sample_rate, float32 bytes) ·
("done", job_id, timings) · ("error", job_id, code, message) · ("loaded", engine, error | None).

Cancellation is a shared integer, not a message: the parent writes the id of the job to abort and
the engine polls it between PCM blocks, so an abort lands mid-synthesis without a round trip.
"""

from __future__ import annotations

import os
import signal
import time
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from ..protocol.fields import Voice


def worker_main(
    conn: Connection,
    cancel: Synchronized[int],
    engines_settings: dict[str, dict[str, Any]],
    preload: list[str],
    torch_threads: int,
    nice: int = 0,
) -> None:
    # Ctrl-C or a service manager signals the whole process group: the parent drains and then stops
    # its workers itself (a "stop" message, or end of file when it is gone), so they ignore both.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if nice:
        # Synthesis is throughput work; the event loop's sends and interrupt acks are latency work:
        # when the cores are full, the server process should win.
        os.nice(nice)
    # Imported here so the parent's import of the pool stays light.
    from ..engines import create_engine
    from ..engines.base import Engine
    from ..errors import StreamerError

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
    conn.send(("ready", {"pid": os.getpid(), "engines": sorted(engines), "errors": load_errors}))

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        kind = message[0]
        if kind == "stop":
            return
        if kind == "load":
            try:
                engine_for(message[1])
                conn.send(("loaded", message[1], None))
            except Exception as exc:
                conn.send(("loaded", message[1], str(exc)))
            continue
        if kind == "synth_batch":
            _synthesize_batch(conn, engine_for, *message[1:])
            continue
        if kind != "synth":
            continue
        _, job_id, engine_name, request = message
        started = time.perf_counter()
        first_block_ms: float | None = None
        audio_samples = 0

        def should_stop(job_id: int = job_id) -> bool:
            return cancel.value == job_id

        try:
            engine = engine_for(engine_name)
            for block in engine.synthesize(request, should_stop):
                if should_stop():
                    break
                if first_block_ms is None:
                    first_block_ms = (time.perf_counter() - started) * 1000
                sample_rate = getattr(block, "sample_rate", None) or _voice_rate(engine, request.voice)
                audio_samples += len(block)
                conn.send(("block", job_id, sample_rate, block.astype("float32", copy=False).tobytes()))
        except StreamerError as exc:
            conn.send(("error", job_id, exc.code, exc.message))
            continue
        except Exception as exc:
            conn.send(("error", job_id, "engine_error", f"{type(exc).__name__}: {exc}"))
            continue
        conn.send(
            (
                "done",
                job_id,
                {
                    "synth_ms": (time.perf_counter() - started) * 1000,
                    "first_block_ms": first_block_ms,
                    "samples": audio_samples,
                    "cancelled": should_stop(),
                },
            )
        )


def _synthesize_batch(
    conn: Connection, engine_for: Any, job_ids: list[int], engine_name: str, requests: list[Any]
) -> None:
    """Several chunks (of different sessions, one engine and language) in one batched pass."""
    from ..errors import StreamerError

    started = time.perf_counter()
    try:
        engine = engine_for(engine_name)
        outputs = engine.synthesize_batch(requests)
    except Exception as exc:
        code, text = (exc.code, exc.message) if isinstance(exc, StreamerError) else ("engine_error", str(exc))
        for job_id in job_ids:
            conn.send(("error", job_id, code, text))
        return
    synth_ms = (time.perf_counter() - started) * 1000
    for job_id, request, audio in zip(job_ids, requests, outputs, strict=True):
        if len(audio):
            rate = _voice_rate(engine, request.voice)
            conn.send(("block", job_id, rate, audio.astype("float32", copy=False).tobytes()))
        timings = {
            "synth_ms": synth_ms,
            "first_block_ms": synth_ms,
            "samples": len(audio),
            "cancelled": False,
        }
        conn.send(("done", job_id, {**timings, "batch": len(job_ids)}))


_rates: dict[tuple[str, str], int] = {}


def _voice_rate(engine: Any, voice: Voice) -> int:
    # A blend speaks at the rate of its speakers (one language, one model): any of them tells.
    key = (engine.name, voice if isinstance(voice, str) else next(iter(voice)))
    if key not in _rates:
        for v in engine.voices():
            _rates[(engine.name, v.name)] = v.sample_rate
    return _rates.get(key, 22050)
