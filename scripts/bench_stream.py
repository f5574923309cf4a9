#!/usr/bin/env python3
"""Streaming benchmark: the server's own cost on top of the engine's, measured against a real server.

For each engine (espeak, piper) the script starts `python -m streamer serve` on free loopback ports with
``pool.workers`` = 2 and format ``pcm``, and measures in one run:

- first-audio overhead: time to first audio at the client minus the engine's own time to its first
  block for that chunk (``chunk_end.first_block_ms``, measured in the worker, same turn); one session
  at a time, so no queueing is counted;
- interrupt acknowledgement: time from sending ``interrupt`` to receiving ``interrupted`` with 8
  sessions speaking continuously, and every stale message (a message of a generation older than the
  latest ``interrupted``) seen for the rest of the run;
- throughput: audio-seconds received per wall-second with 1, 4 and 8 sessions, divided by what the
  engine alone produces in the same number of worker processes on the same chunks;
- event-loop lag p99 of the server during each load phase (``GET /api/v1/status``);
- and, in-process, the encoding cost of every output format on real speech.

Only 127.0.0.1 is contacted. Every phase has a deadline; servers started here are stopped on exit,
on Ctrl-C and on errors (their whole process group, workers included).

    python scripts/bench_stream.py [--engines espeak,piper] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import orjson
import psutil
import websockets
import yaml
from benchlib import HOST, free_port, http_get_json, log_tail, machine, pct, print_table, stop_group

FORMAT = "pcm"
FRAME_MS = 40  # the server's audio.frame_ms default; the encoding cost is measured per frame of this length

# One sentence without a clause mark, shorter than the chunker's first chunk (60 characters): it is
# chunk 0 on its own, so the in-process engine speaks exactly what the worker spoke.
FIRST_AUDIO_TEXT = "Good morning and welcome to the support line."
PARAGRAPH = (
    "Thanks for waiting, I have your order in front of me now. "
    "The package left our warehouse on Monday morning and reached the local depot yesterday afternoon. "
    "It should be delivered before six o'clock today, and the driver will call you when he is close. "
    "If nobody is at home, he can leave it with a neighbour or at the post office on Station Road. "
    "You can also change the delivery address in the app until the van leaves the depot. "
    "Is there anything else I can help you with while we are on the phone?"
)
LONG_PARAGRAPH = " ".join([PARAGRAPH] * 3)

# Figure -> (target, comparison, engines it applies to; None: all).
TARGETS: dict[str, tuple[float, str, tuple[str, ...] | None]] = {
    "first_audio_overhead_median_ms": (5.0, "<=", None),
    "first_audio_overhead_p95_ms": (15.0, "<=", None),
    "interrupt_ack_p99_ms": (10.0, "<=", None),
    "stale_messages": (0, "==", None),
    "throughput_ratio_1": (0.9, ">=", ("piper",)),
    "throughput_ratio_4": (0.9, ">=", ("piper",)),
    "throughput_ratio_8": (0.9, ">=", ("piper",)),
    "loop_lag_p99_ms": (5.0, "<=", None),
}


@dataclass(frozen=True)
class Plan:
    """How much of everything one run does; --quick shrinks it to a smoke run."""

    warmup_trials: int
    first_audio_trials: int
    engine_first_block_trials: int
    throughput_sessions: tuple[int, ...]
    throughput_turns: int  # turns per phase in all, split evenly over the sessions
    interrupt_sessions: int
    interrupts_per_session: int
    encoding_seconds: float  # of speech encoded per format and repeat
    encoding_repeats: int
    engine_only_repeats: int
    phase_timeout_s: float


FULL = Plan(
    warmup_trials=3,
    first_audio_trials=40,
    engine_first_block_trials=40,
    throughput_sessions=(1, 4, 8),
    throughput_turns=24,
    interrupt_sessions=8,
    interrupts_per_session=16,
    encoding_seconds=10.0,
    encoding_repeats=5,
    engine_only_repeats=3,
    phase_timeout_s=180.0,
)
QUICK = Plan(
    warmup_trials=2,
    first_audio_trials=8,
    engine_first_block_trials=10,
    throughput_sessions=(1, 4, 8),
    throughput_turns=8,
    interrupt_sessions=8,
    interrupts_per_session=3,
    encoding_seconds=4.0,
    encoding_repeats=1,
    engine_only_repeats=1,
    phase_timeout_s=60.0,
)
OTHER_CPU_WARNING = 0.10  # share of the machine used by other processes past which figures are suspect


class BenchError(Exception):
    """A phase failed or ran out of time: the run stops, servers are stopped, partial results printed."""


# ---- statistics ---------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "median": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }


# ---- the server under test ----------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    http_port: int
    ws_port: int
    log_path: Path

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.ws_port}/api/v1/stream"

    def status(self, reset_loop_lag: bool = False) -> dict[str, Any]:
        query = "?reset_loop_lag=1" if reset_loop_lag else ""
        return http_get_json(f"http://{HOST}:{self.http_port}/api/v1/status{query}")

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def stop(self) -> None:
        """SIGTERM (the server drains and stops its workers), then SIGKILL to the whole group."""
        stop_group(self.process)


def start_server(tmp: Path, engine: str, workers: int, ready_timeout: float = 60.0) -> Server:
    config = {
        "tts": {"engine": engine},
        "pool": {"workers": workers},
        "audio": {"default_format": FORMAT},
        "logging": {"level": "WARNING", "format": "json"},
    }
    config_path = tmp / f"{engine}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    http_port, ws_port = free_port(), free_port()
    log_path = tmp / f"{engine}-server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamer",
                "serve",
                "--config",
                str(config_path),
                "--host",
                HOST,
                "--http-port",
                str(http_port),
                "--ws-port",
                str(ws_port),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the server ourselves
        )
    server = Server(process, http_port, ws_port, log_path)
    deadline = time.monotonic() + ready_timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(f"{engine} server exited with {process.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                if (
                    http_get_json(f"http://{HOST}:{http_port}/health", timeout=1).get("workers_ready", 0)
                    >= workers
                ):
                    return server
            time.sleep(0.1)
        raise BenchError(f"{engine} server not ready in {ready_timeout:g} s:\n{server.log_tail()}")
    except BaseException:
        server.stop()
        raise


@contextlib.contextmanager
def running_server(tmp: Path, engine: str, workers: int) -> Iterator[Server]:
    server = start_server(tmp, engine, workers)
    try:
        yield server
    finally:
        server.stop()


# ---- CPU accounting -----------------------------------------------------------------------------


def _tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of (the process, all its descendants) so far."""
    try:
        proc = psutil.Process(pid)
        own = proc.cpu_times()
        descendants = 0.0
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                descendants += times.user + times.system
        return own.user + own.system, descendants
    except psutil.Error:
        return 0.0, 0.0


class CpuMeter:
    """Where the machine's CPU went during a phase: server, its workers, this script, everything else.

    Other processes on the machine share its cores: their share is reported with every phase, so a
    figure taken while something else was busy can be told apart.
    """

    def __init__(self, server: Server | None) -> None:
        self.server = server
        self._start = self._snapshot()
        self._t0 = time.perf_counter()

    def _snapshot(self) -> dict[str, float]:
        times = psutil.cpu_times()
        busy = sum(getattr(times, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))
        server, workers = _tree_cpu(self.server.process.pid) if self.server else (0.0, 0.0)
        bench_own, bench_children = _tree_cpu(os.getpid())
        return {
            "machine": busy,
            "steal": getattr(times, "steal", 0.0),
            "server": server,
            "workers": workers,
            # The server is a child of this script: count it once, as the server.
            "bench": bench_own + bench_children - server - workers,
        }

    def read(self) -> dict[str, float]:
        """CPU-seconds since creation; call it while the processes to count are still alive."""
        end = self._snapshot()
        used = {k: end[k] - self._start[k] for k in end}
        wall = time.perf_counter() - self._t0
        used["other"] = max(0.0, used["machine"] - used["server"] - used["workers"] - used["bench"])
        used["available"] = wall * (os.cpu_count() or 1)
        return {k: round(v, 3) for k, v in used.items()}


# ---- a minimal protocol client ------------------------------------------------------------------


def decode(raw: str | bytes) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw, raw=False)
    return message


class Client:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ready: dict[str, Any] = {}

    @classmethod
    async def open(cls, url: str, engine: str, compression: str | None) -> Client:
        ws = await websockets.connect(
            url, max_size=None, compression=compression, proxy=None, open_timeout=10, max_queue=64
        )
        client = cls(ws)
        await client.send({"type": "start", "config": {"engine": engine, "format": FORMAT}})
        message, _ = await client.recv(10)
        if message.get("type") != "ready":
            await ws.close()
            raise BenchError(f"expected ready, got {message}")
        client.ready = message
        return client

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def recv(self, timeout: float) -> tuple[dict[str, Any], float]:
        """The next message and the perf_counter() time it was handed to us."""
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        return decode(raw), time.perf_counter()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)


class LagProbe:
    """The benchmark client's own event-loop lag: it is on the same two cores as the server."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            self.samples.append(max(0.0, (time.perf_counter() - started - 0.01) * 1000))

    def __enter__(self) -> LagProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def p99(self) -> float | None:
        return pct(self.samples, 99)


def audio_seconds(message: dict[str, Any]) -> float:
    return float(message["samples"]) / float(message["sample_rate"])


# ---- phase: first audio -------------------------------------------------------------------------


async def first_audio_phase(
    server: Server, engine: str, plan: Plan, compression: str | None
) -> dict[str, Any]:
    trials: list[dict[str, Any]] = []
    voice = None
    meter = CpuMeter(server)
    for index in range(plan.warmup_trials + plan.first_audio_trials):
        client = await Client.open(server.ws_url, engine, compression)
        voice = client.ready.get("voice")
        try:
            t0 = time.perf_counter()
            await client.send({"type": "text", "text": FIRST_AUDIO_TEXT, "flush": True})
            first_audio = None
            first_chunk_end: dict[str, Any] | None = None
            first_chunk_text = None
            chunk_start = t0
            while True:
                message, arrived = await client.recv(30)
                kind = message["type"]
                if kind == "audio" and first_audio is None:
                    first_audio = arrived
                elif kind == "chunk_start" and first_chunk_text is None:
                    first_chunk_text = message.get("text")
                    chunk_start = arrived
                elif kind == "chunk_end" and first_chunk_end is None:
                    first_chunk_end = message
                elif kind == "error":
                    raise BenchError(f"first-audio trial: server error {message}")
                elif kind == "done":
                    break
        finally:
            await client.close()
        if first_audio is None or first_chunk_end is None:
            raise BenchError("first-audio trial: no audio or no chunk_end before done")
        if index < plan.warmup_trials:
            continue
        ttfa = (first_audio - t0) * 1000
        engine_ms = float(first_chunk_end.get("first_block_ms") or 0.0)
        trials.append(
            {
                "ttfa_ms": ttfa,
                "first_block_ms": engine_ms,
                "overhead_ms": ttfa - engine_ms,
                "chunk_start_ms": (chunk_start - t0) * 1000,
                "queue_ms": first_chunk_end.get("queue_ms"),
                "chunk_text": first_chunk_text,
            }
        )
        await asyncio.sleep(0.05)  # let the session's teardown finish before the next trial
    overhead = [t["overhead_ms"] for t in trials]
    return {
        "voice": voice,
        "text": FIRST_AUDIO_TEXT,
        "chunk0_texts": sorted({str(t["chunk_text"]) for t in trials}),
        "overhead_ms": summary(overhead),
        "ttfa_ms": summary([t["ttfa_ms"] for t in trials]),
        "chunk_start_ms": summary([t["chunk_start_ms"] for t in trials]),
        "first_block_ms": summary([t["first_block_ms"] for t in trials]),
        "queue_ms": summary([float(t["queue_ms"]) for t in trials if t["queue_ms"] is not None]),
        "cpu_s": meter.read(),
        "trials": trials,
    }


def engine_first_block(engine: str, voice: str, text: str, trials: int) -> dict[str, Any]:
    """Time to the first PCM block with the engine in this process: the engine's floor."""
    from streamer.engines import create_engine
    from streamer.engines.base import SynthesisRequest

    instance = create_engine(engine, {})
    instance.load()
    instance.warmup()
    times: list[float] = []
    for index in range(trials + 2):
        started = time.perf_counter()
        first = None
        for _block in instance.synthesize(SynthesisRequest(text=text, voice=voice), lambda: False):
            if first is None:
                first = (time.perf_counter() - started) * 1000
        if index >= 2 and first is not None:  # two more warm-up runs
            times.append(first)
    return summary(times)


# ---- phase: throughput --------------------------------------------------------------------------


async def _throughput_session(client: Client, turns: int) -> dict[str, Any]:
    # Every turn is sent at once, so the server always has work queued: this measures the server,
    # not the client's round trips between turns.
    for _ in range(turns):
        await client.send({"type": "text", "text": PARAGRAPH, "flush": True})
    seconds, chunk_ms, dones, chunks, arrived = 0.0, 0.0, 0, [], 0.0
    while dones < turns:
        message, arrived = await client.recv(60)
        kind = message["type"]
        if kind == "audio":
            seconds += audio_seconds(message)
        elif kind == "chunk_start":
            chunks.append(message["text"])
        elif kind == "chunk_end":
            chunk_ms += float(message["audio_ms"])
        elif kind == "done":
            dones += 1
        elif kind == "error":
            raise BenchError(f"throughput: server error {message}")
    return {"audio_s": seconds, "chunk_audio_s": chunk_ms / 1000, "end": arrived, "chunks": chunks}


async def throughput_phase(
    server: Server, engine: str, sessions: int, plan: Plan, compression: str | None
) -> dict[str, Any]:
    turns = max(1, plan.throughput_turns // sessions)
    clients = [await Client.open(server.ws_url, engine, compression) for _ in range(sessions)]
    try:
        meter = CpuMeter(server)
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_throughput_session(c, turns) for c in clients))
        wall = max(r["end"] for r in results) - t0
        cpu = meter.read()
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    audio = sum(r["audio_s"] for r in results)
    return {
        "sessions": sessions,
        "turns_per_session": turns,
        "audio_s": audio,
        "chunk_end_audio_s": sum(r["chunk_audio_s"] for r in results),
        "wall_s": wall,
        "audio_s_per_s": audio / wall,
        "cpu_s": cpu,
        "chunks": [c for r in results for c in r["chunks"]],
    }


def _pool_init(engine: str) -> None:
    # As the server's worker does: one OpenMP thread per worker on this machine.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // 2)))
    from streamer.engines import create_engine

    global _POOL_ENGINE
    _POOL_ENGINE = create_engine(engine, {})
    _POOL_ENGINE.load()
    _POOL_ENGINE.warmup()


_POOL_ENGINE: Any = None


def _pool_synth(args: tuple[str, str]) -> float:
    from streamer.engines.base import SynthesisRequest

    text, voice = args
    rate = next(v.sample_rate for v in _POOL_ENGINE.voices() if v.name == voice)
    samples = sum(
        len(b) for b in _POOL_ENGINE.synthesize(SynthesisRequest(text=text, voice=voice), lambda: False)
    )
    return samples / rate


def engine_only_throughput(
    engine: str, voice: str, chunks: list[str], workers: int, repeats: int, wait_quiet_s: float
) -> dict[str, Any]:
    """The same chunks, spoken by the engine alone in ``workers`` processes, back to back.

    Repeated ``repeats`` times; the fastest run is the engine's capacity (the least disturbed by
    anything else on the machine), which makes the server's ratio to it conservative. With
    ``wait_quiet_s``, runs disturbed by other processes do not count, up to a few extra runs.
    """
    runs: list[dict[str, Any]] = []
    with mp.get_context("spawn").Pool(workers, initializer=_pool_init, initargs=(engine,)) as pool:
        pool.map(_pool_synth, [("Warming up.", voice)] * workers * 2, chunksize=1)
        for _ in range(repeats + (QUIET_RETRIES if wait_quiet_s else 0)):
            if wait_quiet_s:
                wait_quiet(wait_quiet_s)
            meter = CpuMeter(None)
            started = time.perf_counter()
            audio = sum(pool.imap_unordered(_pool_synth, [(c, voice) for c in chunks], chunksize=1))
            wall = time.perf_counter() - started
            runs.append(
                {"audio_s": audio, "wall_s": wall, "audio_s_per_s": audio / wall, "cpu_s": meter.read()}
            )
            if sum(other_share(r) <= OTHER_CPU_WARNING for r in runs) >= repeats:
                break
    quiet = [r for r in runs if other_share(r) <= OTHER_CPU_WARNING] or runs
    best = max(quiet, key=lambda r: r["audio_s_per_s"])
    return {"workers": workers, "chunks": len(chunks), **best, "runs": runs}


# ---- phase: interrupts --------------------------------------------------------------------------


@dataclass
class InterruptStats:
    acks_ms: list[float] = field(default_factory=list)
    # Per interrupt: audio frames of the old generation read between sending it and its ack. They
    # were on the wire (socket buffers, the client's queue) before the server saw the interrupt.
    backlog_frames: list[int] = field(default_factory=list)
    stale: list[dict[str, Any]] = field(default_factory=list)
    seq_errors: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    audio_s: float = 0.0


async def _interrupt_session(
    client: Client, count: int, stats: InterruptStats, rng: random.Random, deadline: float, grace_s: float
) -> None:
    acked = int(client.ready.get("generation", 0))  # messages below this generation are stale
    expected_seq: int | None = None
    done = 0
    pending: float | None = None  # when the interrupt now waiting for its ack was sent
    frames_before_interrupt = rng.randint(1, 40)
    frames = backlog = 0
    await client.send({"type": "text", "text": LONG_PARAGRAPH, "flush": True})
    stop_at: float | None = None
    while True:
        now = time.perf_counter()
        if stop_at is None and (done >= count or now > deadline) and pending is None:
            stop_at = now + grace_s  # keep listening: a stale message may still come
        if stop_at is not None and now >= stop_at:
            return
        timeout = 30.0 if stop_at is None else max(0.01, stop_at - now)
        try:
            message, arrived = await client.recv(timeout)
        except TimeoutError:
            if stop_at is not None:
                return
            raise BenchError(f"interrupt phase: no message for {timeout:g} s") from None
        kind = message["type"]
        generation = message.get("generation")
        if pending is None and generation is not None and generation < acked and kind != "interrupted":
            stats.stale.append({"message": {k: v for k, v in message.items() if k != "data"}, "acked": acked})
        if kind == "audio":
            stats.audio_s += audio_seconds(message)
            seq = int(message["seq"])
            if expected_seq is not None and seq != expected_seq:
                stats.seq_errors.append(f"seq {seq} after {expected_seq - 1}")
            expected_seq = seq + 1
            if generation == acked and pending is None:
                frames += 1
            elif pending is not None:
                backlog += 1
        elif kind == "interrupted":
            if pending is None:
                stats.errors.append({"unexpected": message})
                continue
            stats.acks_ms.append((arrived - pending) * 1000)
            stats.backlog_frames.append(backlog)
            pending, backlog = None, 0
            acked = int(message["generation"])
            last_seq = message.get("last_seq")
            if last_seq is not None and expected_seq is not None and last_seq != expected_seq - 1:
                stats.seq_errors.append(f"interrupted.last_seq {last_seq}, last audio seq {expected_seq - 1}")
            done += 1
            frames, frames_before_interrupt = 0, rng.randint(1, 40)
            if done < count and time.perf_counter() < deadline:
                await client.send({"type": "text", "text": LONG_PARAGRAPH, "flush": True})
            continue
        elif kind == "done" and generation == acked and pending is None and stop_at is None:
            # The paragraph ended before this session's interrupt point: speak it again.
            await client.send({"type": "text", "text": LONG_PARAGRAPH, "flush": True})
        elif kind == "error":
            stats.errors.append(message)
        if stop_at is None and pending is None and frames >= frames_before_interrupt and done < count:
            pending = time.perf_counter()
            await client.send({"type": "interrupt"})


async def interrupt_phase(server: Server, engine: str, plan: Plan, compression: str | None) -> dict[str, Any]:
    stats = InterruptStats()
    clients = [await Client.open(server.ws_url, engine, compression) for _ in range(plan.interrupt_sessions)]
    deadline = time.perf_counter() + plan.phase_timeout_s * 0.6
    try:
        with LagProbe() as probe:
            meter = CpuMeter(server)
            t0 = time.perf_counter()
            await asyncio.gather(
                *(
                    _interrupt_session(c, plan.interrupts_per_session, stats, random.Random(i), deadline, 1.0)
                    for i, c in enumerate(clients)
                )
            )
            wall = time.perf_counter() - t0
            cpu = meter.read()
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    return {
        "sessions": plan.interrupt_sessions,
        "interrupts": len(stats.acks_ms),
        "ack_ms": summary(stats.acks_ms),
        "backlog_frames": summary([float(b) for b in stats.backlog_frames]),
        "ack_ms_no_backlog": summary(
            [a for a, b in zip(stats.acks_ms, stats.backlog_frames, strict=True) if b == 0]
        ),
        "ack_ms_with_backlog": summary(
            [a for a, b in zip(stats.acks_ms, stats.backlog_frames, strict=True) if b]
        ),
        "stale_messages": len(stats.stale),
        "stale_examples": stats.stale[:10],
        "seq_errors": stats.seq_errors[:20],
        "seq_error_count": len(stats.seq_errors),
        "errors": stats.errors[:10],
        "error_count": len(stats.errors),
        "audio_s": stats.audio_s,
        "wall_s": wall,
        "client_loop_lag_p99_ms": probe.p99(),
        "cpu_s": cpu,
    }


# ---- one engine ---------------------------------------------------------------------------------


def loop_lag(server: Server, reset: bool = False) -> dict[str, Any] | None:
    try:
        lag = server.status(reset_loop_lag=reset).get("loop_lag")
    except (OSError, ValueError):
        return None
    return lag if isinstance(lag, dict) else None


async def _with_deadline(coro: Any, seconds: float, what: str) -> Any:
    try:
        return await asyncio.wait_for(coro, seconds)
    except TimeoutError:
        raise BenchError(f"{what} did not finish in {seconds:g} s") from None


@dataclass(frozen=True)
class Setup:
    """How the server and the client are set up, the same for every engine."""

    workers: int
    compression: str | None  # permessage-deflate offered by the client, or None
    worker_nice: int  # diagnostic: renice the server's worker processes by this much (0: leave them)
    wait_quiet_s: float  # before a phase, wait up to this long for the machine to be idle (0: don't)


QUIET_SHARE = 0.10  # the machine counts as idle below this share of its CPU in use
QUIET_RETRIES = 2  # a phase disturbed by other processes is measured again at most this many times


def wait_quiet(max_wait_s: float) -> float:
    """Wait until the machine is idle over one second, at most ``max_wait_s``; the busy share last seen."""
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = psutil.cpu_percent(interval=1.0) / 100
        if busy < QUIET_SHARE or time.monotonic() >= deadline:
            return busy


def other_share(result: dict[str, Any]) -> float:
    cpu = result["cpu_s"]
    return float(cpu["other"] / cpu["available"]) if cpu["available"] else 0.0


async def measured_phase(
    server: Server, setup: Setup, name: str, make: Any, timeout: float
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One phase and the server's loop lag during it; again when others disturbed it (with --wait-quiet)."""
    retries = QUIET_RETRIES if setup.wait_quiet_s else 0
    for attempt in range(retries + 1):
        if setup.wait_quiet_s:
            await asyncio.to_thread(wait_quiet, setup.wait_quiet_s)
        loop_lag(server, reset=True)
        result: dict[str, Any] = await _with_deadline(make(), timeout, name)
        lag = loop_lag(server)
        result["attempts"] = attempt + 1
        if other_share(result) <= OTHER_CPU_WARNING:
            break
        if attempt < retries:
            say(f"  {name}: other processes used {other_share(result):.0%} of the machine; measuring again")
    return result, lag


async def server_phases(server: Server, engine: str, plan: Plan, setup: Setup, out: dict[str, Any]) -> None:
    t, compression = plan.phase_timeout_s, setup.compression
    say(f"  first audio: {plan.first_audio_trials} sequential trials after {plan.warmup_trials} warm-up")
    out["first_audio"], _ = await measured_phase(
        server, setup, "first audio", lambda: first_audio_phase(server, engine, plan, compression), t
    )
    # The server's own view (chunk cut -> first frame queued for the socket), warm-up turns included.
    with contextlib.suppress(OSError, ValueError):
        metrics = http_get_json(f"http://{HOST}:{server.http_port}/api/v1/metrics")
        out["first_audio"]["server_ttfa_ms"] = {k: metrics.get(k) for k in ("ttfa_ms_p50", "ttfa_ms_p95")}
    out["throughput"] = {}
    out["loop_lag"] = {}
    for sessions in plan.throughput_sessions:
        say(f"  throughput: {sessions} session(s)")
        result, lag = await measured_phase(
            server,
            setup,
            f"throughput with {sessions}",
            lambda n=sessions: throughput_phase(server, engine, n, plan, compression),
            t,
        )
        out["throughput"][str(sessions)] = result
        out["loop_lag"][f"throughput_{sessions}"] = lag
    say(f"  interrupts: {plan.interrupt_sessions} busy sessions")
    out["interrupt"], out["loop_lag"]["interrupt"] = await measured_phase(
        server, setup, "interrupts", lambda: interrupt_phase(server, engine, plan, compression), t
    )
    with contextlib.suppress(OSError, ValueError):
        out["server_status_after"] = {k: v for k, v in server.status().items() if k in ("pool", "counters")}


def renice_workers(server: Server, increment: int) -> list[int]:
    """Lower the priority of the server's worker processes (descendants of a server we started)."""
    pids = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.nice(child.nice() + increment)
            pids.append(child.pid)
    return pids


def bench_engine(engine: str, plan: Plan, setup: Setup, tmp: Path, out: dict[str, Any]) -> None:
    """Every figure of one engine, written into ``out`` as it is measured (partial on failure)."""
    workers = setup.workers
    out.update({"engine": engine, "pool_workers": workers, "format": FORMAT})
    say(f"[{engine}] starting the server (pool.workers={workers}, format {FORMAT})")
    with running_server(tmp, engine, workers) as server:
        if setup.worker_nice:
            out["reniced_workers"] = renice_workers(server, setup.worker_nice)
        asyncio.run(server_phases(server, engine, plan, setup, out))
        voice = out["first_audio"]["voice"]
        say(f"  engine alone, in process: time to first block ({plan.engine_first_block_trials} runs)")
        out["engine_first_block_ms"] = engine_first_block(
            engine, voice, FIRST_AUDIO_TEXT, plan.engine_first_block_trials
        )
    # The engine-only throughput runs with the server stopped: its processes get the machine to themselves.
    first = plan.throughput_sessions[0]
    chunks = out["throughput"][str(first)].pop("chunks")
    for result in out["throughput"].values():
        result.pop("chunks", None)
    say(f"  engine alone, {workers} processes: the same {len(chunks)} chunks")
    out["engine_only_throughput"] = engine_only_throughput(
        engine, voice, chunks, workers, plan.engine_only_repeats, setup.wait_quiet_s
    )
    derive(out)


def derive(out: dict[str, Any]) -> None:
    """The headline figures, each comparable with its target."""
    fig: dict[str, Any] = {}
    first = out["first_audio"]
    fig["first_audio_overhead_median_ms"] = first["overhead_ms"]["median"]
    fig["first_audio_overhead_p95_ms"] = first["overhead_ms"]["p95"]
    fig["ttfa_median_ms"] = first["ttfa_ms"]["median"]
    fig["worker_first_block_median_ms"] = first["first_block_ms"]["median"]
    fig["engine_first_block_median_ms"] = out["engine_first_block_ms"]["median"]
    if fig["engine_first_block_median_ms"]:
        fig["ttfa_over_engine"] = fig["ttfa_median_ms"] / fig["engine_first_block_median_ms"]
    fig["chunk_start_median_ms"] = first["chunk_start_ms"]["median"]
    fig["server_ttfa_p50_ms"] = first.get("server_ttfa_ms", {}).get("ttfa_ms_p50")
    fig["interrupt_ack_p50_ms"] = out["interrupt"]["ack_ms"]["median"]
    fig["interrupt_ack_no_backlog_p99_ms"] = out["interrupt"]["ack_ms_no_backlog"]["p99"]
    fig["interrupt_no_backlog"] = out["interrupt"]["ack_ms_no_backlog"]["n"]
    fig["interrupt_backlog_frames_median"] = out["interrupt"]["backlog_frames"]["median"]
    fig["interrupt_ack_p99_ms"] = out["interrupt"]["ack_ms"]["p99"]
    fig["interrupts"] = out["interrupt"]["interrupts"]
    fig["stale_messages"] = out["interrupt"]["stale_messages"]
    engine_rate = out["engine_only_throughput"]["audio_s_per_s"]
    fig["engine_only_audio_s_per_s"] = engine_rate
    for sessions, result in out["throughput"].items():
        fig[f"throughput_audio_s_per_s_{sessions}"] = result["audio_s_per_s"]
        fig[f"throughput_ratio_{sessions}"] = result["audio_s_per_s"] / engine_rate
        fig[f"server_cpu_ms_per_audio_s_{sessions}"] = result["cpu_s"]["server"] * 1000 / result["audio_s"]
    p99s = [lag["p99_ms"] for lag in out["loop_lag"].values() if lag and lag.get("samples")]
    fig["loop_lag_p99_ms"] = max(p99s) if p99s else None
    phases = [out["first_audio"], *out["throughput"].values(), out["interrupt"]]
    phases.append(out["engine_only_throughput"])
    fig["other_cpu_share_max"] = max(p["cpu_s"]["other"] / p["cpu_s"]["available"] for p in phases)
    out["figures"] = fig


# ---- encoding cost ------------------------------------------------------------------------------


def encoding_cost(plan: Plan) -> dict[str, Any]:
    """Each format's encoder fed real espeak speech in 40 ms frames, as the server feeds it."""
    from streamer.audio import FORMATS, StreamingEncoder
    from streamer.engines import create_engine
    from streamer.engines.base import SynthesisRequest

    espeak = create_engine("espeak", {})
    espeak.load()
    rate = next(v.sample_rate for v in espeak.voices() if v.name == "en")
    pcm = np.concatenate(
        list(espeak.synthesize(SynthesisRequest(text=LONG_PARAGRAPH, voice="en"), lambda: False))
    )
    pcm = pcm[: int(plan.encoding_seconds * rate)]
    frame = rate * FRAME_MS // 1000
    frames = [pcm[i : i + frame] for i in range(0, len(pcm), frame)]
    seconds = len(pcm) / rate
    results: dict[str, Any] = {}
    for fmt in FORMATS:
        totals, per_frame = [], []
        for _ in range(plan.encoding_repeats + 1):
            encoder = StreamingEncoder(fmt, 24000)
            times = []
            started = time.perf_counter()
            for piece in frames:
                t = time.perf_counter()
                encoder.encode(piece, rate)
                times.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            encoder.flush()
            flush_ms = (time.perf_counter() - t) * 1000
            totals.append((time.perf_counter() - started) * 1000)
            per_frame.append(times)
        totals, per_frame = totals[1:], per_frame[1:]  # the first pass warms the codec up
        starts = []  # a new encoder per turn: its creation and first frame are on the first-audio path
        for _ in range(20):
            t = time.perf_counter()
            encoder = StreamingEncoder(fmt, 24000)
            encoder.encode(frames[0], rate)
            starts.append((time.perf_counter() - t) * 1000)
            encoder.close()
        all_frames = [x for run in per_frame for x in run]
        results[fmt] = {
            "output_rate": encoder.sample_rate,
            "ms_per_frame": statistics.median(totals) / len(frames),
            "frame_p99_ms": pct(all_frames, 99),
            "frame_max_ms": max(all_frames),
            "flush_ms": flush_ms,
            "first_frame_ms": statistics.median(starts),
            "fraction_of_real_time": statistics.median(totals) / 1000 / seconds,
        }
    return {
        "input_rate": rate,
        "output_rate_requested": 24000,
        "seconds": seconds,
        "frames": len(frames),
        "formats": results,
    }


# ---- report -------------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def verdict(name: str, value: Any, engine: str) -> tuple[str, str]:
    target = TARGETS.get(name)
    if target is None or (target[2] is not None and engine not in target[2]):
        return "", ""
    limit, op, _ = target
    shown = f"{op} {limit:g}".replace("<=", "≤").replace(">=", "≥").replace("==", "=")
    if value is None:
        return shown, "n/a"
    ok = {"<=": value <= limit, ">=": value >= limit, "==": value == limit}[op]
    return shown, "PASS" if ok else "MISS"


def fmt_value(value: Any, unit: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value}{unit}"
    return f"{value:.3g}{unit}" if abs(value) < 100 else f"{value:.0f}{unit}"


def engine_rows(out: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    fig, engine = out["figures"], out["engine"]
    rows: list[tuple[str, str, str, str]] = []

    def row(label: str, name: str | None, value: Any, unit: str = "") -> None:
        target, result = verdict(name, value, engine) if name else ("", "")
        rows.append((label, fmt_value(value, unit), target + (unit if target else ""), result))

    row(
        "first-audio overhead, median",
        "first_audio_overhead_median_ms",
        fig["first_audio_overhead_median_ms"],
        " ms",
    )
    row("first-audio overhead, p95", "first_audio_overhead_p95_ms", fig["first_audio_overhead_p95_ms"], " ms")
    row("time to first audio, median", None, fig["ttfa_median_ms"], " ms")
    row("  worker first block, median (same turns)", None, fig["worker_first_block_median_ms"], " ms")
    row("  engine in process, first block, median", None, fig["engine_first_block_median_ms"], " ms")
    row("  TTFA ÷ engine in process", None, fig.get("ttfa_over_engine"), "×")
    row("  chunk_start arrival, median", None, fig["chunk_start_median_ms"], " ms")
    row("  server's own TTFA p50 (text cut -> frame queued)", None, fig["server_ttfa_p50_ms"], " ms")
    row(f"interrupted ack, p50 ({fig['interrupts']} interrupts)", None, fig["interrupt_ack_p50_ms"], " ms")
    row("interrupted ack, p99", "interrupt_ack_p99_ms", fig["interrupt_ack_p99_ms"], " ms")
    row("  old audio frames read before the ack, median", None, fig["interrupt_backlog_frames_median"])
    row(
        f"  ack p99 with no old frames in between ({fig['interrupt_no_backlog']})",
        None,
        fig["interrupt_ack_no_backlog_p99_ms"],
        " ms",
    )
    row("stale messages after interrupted", "stale_messages", fig["stale_messages"])
    row(
        f"engine alone, {out['pool_workers']} processes", None, fig["engine_only_audio_s_per_s"], " audio-s/s"
    )
    for sessions in out["throughput"]:
        row(f"server, {sessions} session(s)", None, fig[f"throughput_audio_s_per_s_{sessions}"], " audio-s/s")
        row(
            "  server process CPU per audio-second", None, fig[f"server_cpu_ms_per_audio_s_{sessions}"], " ms"
        )
        row(
            f"  ratio server ÷ engine alone, {sessions}",
            f"throughput_ratio_{sessions}",
            fig[f"throughput_ratio_{sessions}"],
        )
    row("other processes' CPU, worst phase", None, fig["other_cpu_share_max"] * 100, " % of machine")
    row("event-loop lag p99, worst load phase", "loop_lag_p99_ms", fig["loop_lag_p99_ms"], " ms")
    for phase, lag in out["loop_lag"].items():
        row(f"  {phase}", None, lag.get("p99_ms") if lag else None, " ms")
    return rows


def print_report(report: dict[str, Any]) -> None:
    for out in report["engines"].values():
        if "figures" not in out:
            continue
        title = (
            f"{out['engine']} — format {out['format']}, server pool.workers={out['pool_workers']}, "
            f"engine-only on {out['pool_workers']} processes, {os.cpu_count()} cores"
        )
        print_table(title, ("figure", "value", "target", ""), engine_rows(out))
    enc = report.get("encoding")
    if enc:
        rows = [
            (
                fmt,
                f"{r['output_rate']}",
                f"{r['ms_per_frame']:.3f}",
                f"{r['frame_p99_ms']:.3f}",
                f"{r['first_frame_ms']:.3f}",
                f"{r['fraction_of_real_time'] * 100:.2f} %",
            )
            for fmt, r in enc["formats"].items()
        ]
        print_table(
            f"encoding cost — {enc['seconds']:.1f} s of espeak speech at {enc['input_rate']} Hz "
            f"in {FRAME_MS} ms frames, 24000 Hz asked",
            ("format", "out Hz", "ms/frame", "p99 ms/frame", "new encoder + 1st frame ms", "of real time"),
            rows,
        )
    for note in report["notes"]:
        print(f"note: {note}")


def source_state() -> dict[str, Any]:
    """The commit measured, and whether the server's code differed from it (others edit in parallel)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "--short", "HEAD"), "changed": git("status", "--short", "streamer")}


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--engines", default="espeak,piper", help="comma-separated (default: espeak,piper)")
    parser.add_argument("--quick", action="store_true", help="fewer trials: a smoke run of about a minute")
    parser.add_argument("--json", type=Path, help="write every figure, raw trials included, to this file")
    parser.add_argument(
        "--workers", type=int, default=2, help="pool.workers of the server and engine-only runs (2)"
    )
    parser.add_argument(
        "--compression",
        choices=("deflate", "none"),
        default="deflate",
        help="WebSocket permessage-deflate offered by the client (default: deflate, as browsers do)",
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="diagnostic: lower the server's worker processes' priority by this much (default 0: as started)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on a shared machine: before each phase wait up to SECONDS for it to be idle, and measure "
        f"a phase again ({QUIET_RETRIES} times at most) when other processes used over "
        f"{OTHER_CPU_WARNING:.0%} of it meanwhile (default 0: neither)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    setup = Setup(
        args.workers, None if args.compression == "none" else "deflate", args.worker_nice, args.wait_quiet
    )

    from streamer.engines import is_available

    report: dict[str, Any] = {
        "machine": machine(),
        "source": source_state(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "plan": plan.__dict__,
        "compression": args.compression,
        "worker_nice": args.worker_nice,
        "wait_quiet_s": args.wait_quiet,
        "engines": {},
        "notes": [],
    }
    started = time.perf_counter()
    status = 0
    # SIGTERM unwinds like Ctrl-C, through every finally that stops a server.
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
            for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
                if not is_available(engine):
                    report["notes"].append(f"{engine} skipped: not installed (pip install -e '.[{engine}]')")
                    continue
                report["engines"][engine] = out = {}
                bench_engine(engine, plan, setup, Path(tmp), out)
            say("encoding cost per format (in process)")
            if setup.wait_quiet_s:
                wait_quiet(setup.wait_quiet_s)
            report["encoding"] = encoding_cost(plan)
    except BenchError as exc:
        report["notes"].append(f"run stopped: {exc}")
        status = 1
    except KeyboardInterrupt:
        report["notes"].append("run interrupted")
        status = 130
    except Exception as exc:  # a client or server failure: report what was measured, then the cause
        traceback.print_exc()
        report["notes"].append(f"run failed: {type(exc).__name__}: {exc}")
        status = 1
    report["elapsed_s"] = time.perf_counter() - started
    report["notes"].append(
        f"{report['machine']['cores']} cores ({report['machine']['cpu']}); the client, the server and its "
        f"workers share them; websocket compression: {args.compression}"
        + (f"; server workers reniced by +{args.worker_nice}" if args.worker_nice else "")
        + f"; {report['elapsed_s']:.0f} s in all"
    )
    for engine, out in report["engines"].items():
        share = out.get("figures", {}).get("other_cpu_share_max")
        if share is not None and share > OTHER_CPU_WARNING:
            report["notes"].append(
                f"{engine}: other processes used up to {share:.0%} of the machine during a phase: "
                "its figures are disturbed; run again on a quiet machine"
            )
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return status


if __name__ == "__main__":
    sys.exit(main())
