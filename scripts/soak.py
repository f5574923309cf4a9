#!/usr/bin/env python3
"""Soak and fault run: many sessions of mixed traffic for minutes against a real server, with faults.

The script starts ``python -m streamer serve`` (REST, WebSocket and Wyoming) on free loopback ports and
runs ``--sessions`` WebSocket sessions for ``--minutes``. Each session loops over what clients do: a whole
reply, a reply streamed token by token, a barge-in, a mid-session ``config``, a resume on a new
connection. Beside them, a REST client asks for one-shot syntheses and a Wyoming client for streamed ones.
With ``--faults``, every ``--fault-every`` seconds one fault in turn: SIGKILL a worker process, drop a
client mid-turn, stall a reader past ``limits.send_timeout_s``.

It prints, and writes with ``--json``:
- time to first audio p50/p95 in the first and the last tenth of the run;
- interrupt acknowledgement p50/p99;
- errors by code, and the unexplained ones (a code the action could not cause; an ``engine_error``
  outside the seconds after a worker kill; a client exception; a 5xx);
- stale messages after ``interrupted`` and sequence gaps (both must be 0);
- RSS of the server and each worker over time, and the server's slope after warm-up (MB/min);
- after each fault, how long until a new session got audio again.

Only 127.0.0.1 is contacted; everything is bounded in time and stops by itself (the server too).

    python scripts/soak.py [--sessions 16] [--minutes 10] [--faults] [--engine piper] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
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

REPLIES = [
    "Sure, I can help with that.",
    "The package left our warehouse on Monday morning and should arrive before six o'clock today.",
    "It is twelve degrees and cloudy, with a chance of rain in the afternoon.",
    "Thanks for waiting. I have your order in front of me now, and everything looks fine.",
]
LONG = " ".join(REPLIES * 3)
# Codes a well-behaved client can see from a healthy server, and why.
EXPLAINED = {
    "overloaded": "the pool's queue is full (a documented refusal)",
    "send_timeout": "the stalled reader of a fault",
    "session_closed": "a resume superseded the old connection",
}
ENGINE_ERROR_WINDOW_S = 10.0  # after a worker kill, the chunks it held fail with engine_error


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    ttfa: list[tuple[float, float]] = field(default_factory=list)  # (seconds into the run, ms)
    acks: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    unexplained: list[str] = field(default_factory=list)
    stale: int = 0
    gaps: int = 0
    turns: int = 0
    resumes: int = 0
    rest: Counter[str] = field(default_factory=Counter)
    wyoming: Counter[str] = field(default_factory=Counter)
    rss: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    kills: list[float] = field(default_factory=list)  # monotonic times of worker kills

    def now(self) -> float:
        return time.monotonic() - self.started

    def error(self, code: str, where: str) -> None:
        self.errors[code] += 1
        if code in EXPLAINED:
            return
        recent_kill = any(0 <= time.monotonic() - t <= ENGINE_ERROR_WINDOW_S for t in self.kills)
        if code == "engine_error" and recent_kill:
            return
        self.unexplained.append(f"{self.now():.1f}s {where}: {code}")


class Session:
    """One WebSocket session of the run; reconnects (resumes) when asked to or when dropped."""

    def __init__(self, url: str, stats: Stats, index: int) -> None:
        self.url, self.stats, self.index = url, stats, index
        self.rng = random.Random(index)
        self.ws: Any = None
        self.session_id: str | None = None
        self.token: str | None = None
        self.generation = 0
        self.acked = 0  # generation of the last `interrupted`
        self.last_seq: int | None = None
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None
        self.stall = asyncio.Event()
        self.stall.set()  # set: read; cleared: a fault stalls this reader
        self.faulted = False  # a fault dropped or stalled this session: its next failure is explained

    async def connect(self, resume: bool = False) -> None:
        self.ws = await websockets.connect(self.url, compression=None, max_size=2**24, open_timeout=10)
        start: dict[str, Any] = {"type": "start", "config": {"format": "pcm"}}
        if resume and self.session_id:
            start = {"type": "start", "session_id": self.session_id, "resume_token": self.token}
        self.inbox = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())
        await self.send(start)
        ready = await self.expect("ready")
        if resume and ready["session_id"] != self.session_id:
            self.stats.unexplained.append(f"session {self.index}: resume gave another session")
        self.session_id, self.token = ready["session_id"], ready["resume_token"]
        self.generation = self.acked = ready["generation"]
        if resume and ready["last_seq"] != self.last_seq:
            self.stats.gaps += 1
        self.last_seq = ready["last_seq"]

    async def close(self, abrupt: bool = False) -> None:
        """Close the connection; the reader goes on reading meanwhile, so the closing handshake completes."""
        if self.ws is not None:
            if abrupt:
                self.ws.transport.abort()
            else:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.ws.close(), 5)
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                await self.stall.wait()
                message = msgpack.unpackb(raw) if isinstance(raw, bytes) else orjson.loads(raw)
                kind = message.get("type")
                generation = message.get("generation")
                if kind in ("audio", "chunk_start", "chunk_end", "done") and generation < self.acked:
                    self.stats.stale += 1
                    continue
                if kind == "audio":
                    expected = 0 if self.last_seq is None else self.last_seq + 1
                    if message["seq"] != expected:
                        self.stats.gaps += 1
                    self.last_seq = message["seq"]
                elif kind == "interrupted":
                    self.acked = max(self.acked, message["generation"])
                elif kind == "error":
                    self.stats.error(message["code"], f"session {self.index}")
                await self.inbox.put(message)
        await self.inbox.put({"type": "_closed"})

    async def expect(self, *kinds: str, timeout: float = 30.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if message["type"] in kinds:
                    return message
                if message["type"] == "_closed":
                    raise ConnectionError("the server closed the connection")

    async def reply(self, text: str, tokens: bool) -> None:
        sent = time.perf_counter()
        if tokens:
            for word in text.split(" "):
                await self.send({"type": "text", "text": word + " "})
                await asyncio.sleep(0.025)
            await self.send({"type": "flush", "id": "t"})
        else:
            await self.send({"type": "text", "text": text, "flush": True, "id": "t"})
        first = await self.expect("audio", "done")
        if first["type"] == "audio":
            self.stats.ttfa.append((self.stats.now(), (time.perf_counter() - sent) * 1000))
            await self.expect("done", timeout=60)
        self.stats.turns += 1

    async def barge_in(self) -> None:
        await self.send({"type": "text", "text": LONG, "flush": True})
        await self.expect("audio")
        await asyncio.sleep(self.rng.uniform(0.05, 0.5))
        sent = time.perf_counter()
        await self.send({"type": "interrupt"})
        await self.expect("interrupted")
        self.stats.acks.append((time.perf_counter() - sent) * 1000)

    async def run(self, deadline: float) -> None:
        await self.connect()
        while time.monotonic() < deadline:
            action = self.rng.choices(
                ["reply", "tokens", "barge", "config", "resume"], weights=[4, 3, 2, 1, 1]
            )[0]
            try:
                if action == "reply":
                    await self.reply(self.rng.choice(REPLIES), tokens=False)
                elif action == "tokens":
                    await self.reply(self.rng.choice(REPLIES), tokens=True)
                elif action == "barge":
                    await self.barge_in()
                elif action == "config":
                    await self.send(
                        {"type": "config", "config": {"speed": round(self.rng.uniform(0.9, 1.2), 2)}}
                    )
                    await self.expect("configured")
                else:
                    await self.close()
                    await self.connect(resume=True)
                    self.stats.resumes += 1
            except (ConnectionError, OSError, websockets.ConnectionClosed, TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    break
                if not self.faulted:
                    self.stats.unexplained.append(f"{self.stats.now():.1f}s session {self.index}: {exc!r}")
                self.faulted = False
                await self.close(abrupt=True)
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    await self.connect(resume=True)
            await asyncio.sleep(self.rng.uniform(0.1, 0.6))
        await self.close()


async def rest_client(base: str, stats: Stats, deadline: float) -> None:
    def synth(text: str) -> tuple[int, str | None]:
        request = urllib.request.Request(
            f"{base}/api/v1/synth",
            data=orjson.dumps({"text": text, "format": "wav"}),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
                return int(response.status), None
        except urllib.error.HTTPError as exc:
            with contextlib.suppress(ValueError):
                return exc.code, str(orjson.loads(exc.read()).get("error_type"))
            return exc.code, None

    rng = random.Random(1000)
    while time.monotonic() < deadline:
        status, code = await asyncio.to_thread(synth, rng.choice(REPLIES))
        stats.rest[str(status)] += 1
        if code is not None:
            stats.error(code, f"REST synth (HTTP {status})")  # explained or not, by its code
        elif status >= 500:
            stats.unexplained.append(f"{stats.now():.1f}s REST synth: HTTP {status} without an error body")
        await asyncio.sleep(rng.uniform(0.5, 2.0))


async def wyoming_client(port: int, stats: Stats, deadline: float) -> None:
    from wyoming.client import AsyncTcpClient
    from wyoming.tts import Synthesize

    rng = random.Random(2000)
    while time.monotonic() < deadline:
        try:
            async with asyncio.timeout(60), AsyncTcpClient(HOST, port) as client:
                await client.write_event(Synthesize(text=rng.choice(REPLIES)).event())
                while (event := await client.read_event()) is not None:
                    if event.type == "error":
                        stats.error(str((event.data or {}).get("code")), "wyoming")
                        break
                    if event.type == "audio-stop":
                        stats.wyoming["done"] += 1
                        break
        except (OSError, TimeoutError) as exc:
            stats.unexplained.append(f"{stats.now():.1f}s wyoming: {exc!r}")
        await asyncio.sleep(rng.uniform(0.5, 2.0))


def worker_pids(base: str) -> list[int]:
    status = http_get_json(f"{base}/api/v1/status", timeout=5)
    return [w["pid"] for w in status["pool"]["worker_list"] if w.get("pid")]


async def sample_rss(server: psutil.Process, base: str, stats: Stats, deadline: float) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            workers = {}
            for pid in await asyncio.to_thread(worker_pids, base):
                with contextlib.suppress(psutil.Error):
                    workers[str(pid)] = psutil.Process(pid).memory_info().rss / 2**20
            stats.rss.append(
                {"t": stats.now(), "server_mb": server.memory_info().rss / 2**20, "workers_mb": workers}
            )
        await asyncio.sleep(5)


async def probe(url: str, timeout: float = 30.0) -> float:
    """Seconds until a brand-new session gets audio; a session whose chunk failed (it was handed to the
    worker just killed) is replaced by another, and the time counts on."""
    started = time.perf_counter()
    async with asyncio.timeout(timeout):
        while True:
            ws = await websockets.connect(url, compression=None, open_timeout=10)
            try:
                await ws.send(
                    orjson.dumps({"type": "text", "text": "Recovery probe.", "flush": True}).decode()
                )
                async for raw in ws:
                    kind = (msgpack.unpackb(raw) if isinstance(raw, bytes) else orjson.loads(raw))["type"]
                    if kind == "audio":
                        return time.perf_counter() - started
                    if kind in ("done", "error"):
                        break
            finally:
                # Not a closing handshake: a client that stops reading (as this one does) makes its
                # library stop reading too, and the server's close frame would wait behind the audio.
                ws.transport.abort()
            await asyncio.sleep(0.05)


async def faults(
    url: str, base: str, sessions: list[Session], stats: Stats, every: float, deadline: float
) -> None:
    kinds = ["kill_worker", "drop_client", "stall_reader"]
    n = 0
    while time.monotonic() + every < deadline:
        await asyncio.sleep(every)
        kind = kinds[n % len(kinds)]
        n += 1
        fault: dict[str, Any] = {"kind": kind, "at_s": round(stats.now(), 1)}
        if kind == "kill_worker":
            pids = await asyncio.to_thread(worker_pids, base)
            if pids:
                stats.kills.append(time.monotonic())
                os.kill(random.choice(pids), signal.SIGKILL)
        elif kind == "drop_client":
            victim = random.choice(sessions)
            if victim.ws is not None:
                victim.faulted = True
                victim.ws.transport.abort()
        else:
            victim = random.choice(sessions)
            victim.faulted = True
            victim.stall.clear()  # the server's send timeout closes it; the session then resumes
            await asyncio.sleep(12)
            victim.stall.set()
        try:
            fault["new_session_audio_after_s"] = round(await probe(url), 3)
        except Exception as exc:  # a failed recovery is a result, not a crash
            fault["new_session_audio_after_s"] = None
            stats.unexplained.append(f"{stats.now():.1f}s recovery after {kind}: {exc!r}")
        stats.faults.append(fault)


def slope_mb_per_min(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    t, mb = np.array(points).T
    return float(np.polyfit(t / 60, mb, 1)[0])


def start_server(
    tmp: Path, engine: str, workers: int, extra: dict[str, Any]
) -> tuple[subprocess.Popen[bytes], dict[str, int], Path]:
    ports = {"http": free_port(), "ws": free_port(), "wyoming": free_port()}
    config = {
        "tts": {"engine": engine},
        "pool": {"workers": workers},
        "audio": {"default_format": "pcm"},
        "logging": {"level": "WARNING", "format": "json"},
        "limits": {"send_timeout_s": 5.0},
    }
    for section, values in extra.items():
        config.setdefault(section, {}).update(values)
    (tmp / "soak.yaml").write_text(yaml.safe_dump(config))
    log = tmp / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    command = [sys.executable, "-m", "streamer", "serve", "--config", str(tmp / "soak.yaml"), "--host", HOST,
               "--http-port", str(ports["http"]), "--ws-port", str(ports["ws"]),
               "--wyoming-port", str(ports["wyoming"])]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}:\n{log_tail(log)}")
        with contextlib.suppress(OSError, ValueError):
            if http_get_json(f"http://{HOST}:{ports['http']}/ready", timeout=1).get("status") == "ready":
                return process, ports, log
        time.sleep(0.5)
    stop_group(process)
    raise SystemExit(f"the server was not ready within 120 s:\n{log_tail(log)}")


async def soak(args: argparse.Namespace, ports: dict[str, int], server: psutil.Process) -> Stats:
    stats = Stats()
    deadline = time.monotonic() + args.minutes * 60
    url, base = f"ws://{HOST}:{ports['ws']}/api/v1/stream", f"http://{HOST}:{ports['http']}"
    sessions = [Session(url, stats, i) for i in range(args.sessions)]
    tasks = [asyncio.create_task(s.run(deadline)) for s in sessions]
    tasks += [
        asyncio.create_task(rest_client(base, stats, deadline)),
        asyncio.create_task(wyoming_client(ports["wyoming"], stats, deadline)),
        asyncio.create_task(sample_rss(server, base, stats, deadline)),
    ]
    if args.faults:
        tasks.append(asyncio.create_task(faults(url, base, sessions, stats, args.fault_every, deadline)))
    done, pending = await asyncio.wait(tasks, timeout=args.minutes * 60 + 120)
    for task in pending:
        task.cancel()
    for task in done:
        if task.exception() is not None:
            stats.unexplained.append(f"client task failed: {task.exception()!r}")
    return stats


def report(stats: Stats, args: argparse.Namespace) -> dict[str, Any]:
    run_s = args.minutes * 60
    first = [ms for t, ms in stats.ttfa if t <= run_s / 10]
    last = [ms for t, ms in stats.ttfa if t >= run_s * 0.9]
    warm = [(r["t"], r["server_mb"]) for r in stats.rss if r["t"] >= run_s * 0.2]
    worker_max: dict[str, float] = {}
    for r in stats.rss:
        for pid, mb in r["workers_mb"].items():
            worker_max[pid] = max(worker_max.get(pid, 0.0), mb)
    p95_first, p95_last = pct(first, 95), pct(last, 95)
    return {
        "sessions": args.sessions, "minutes": args.minutes, "faults_on": args.faults, "engine": args.engine,
        "turns": stats.turns, "resumes": stats.resumes,
        "rest": dict(stats.rest), "wyoming": dict(stats.wyoming),
        "ttfa_ms": {"first_tenth": {"p50": pct(first, 50), "p95": p95_first, "n": len(first)},
                    "last_tenth": {"p50": pct(last, 50), "p95": p95_last, "n": len(last)},
                    "p95_last_over_first": p95_last / p95_first if p95_first and p95_last else None},
        "interrupt_ack_ms": {"p50": pct(stats.acks, 50), "p99": pct(stats.acks, 99), "n": len(stats.acks)},
        "errors_by_code": dict(stats.errors), "unexplained": stats.unexplained,
        "stale_after_interrupted": stats.stale, "sequence_gaps": stats.gaps,
        "server_rss_mb": {"start": stats.rss[0]["server_mb"] if stats.rss else None,
                          "end": stats.rss[-1]["server_mb"] if stats.rss else None,
                          "slope_after_warmup_mb_per_min": slope_mb_per_min(warm)},
        "worker_rss_max_mb": worker_max, "faults": stats.faults, "rss_samples": stats.rss,
        "machine": machine(),
    }  # fmt: skip


def print_report(out: dict[str, Any]) -> None:
    def f(value: Any, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    t, ack, rss = out["ttfa_ms"], out["interrupt_ack_ms"], out["server_rss_mb"]
    rows = [
        ("turns / resumes", f"{out['turns']} / {out['resumes']}"),
        ("REST one-shots by status", json.dumps(out["rest"])),
        ("Wyoming syntheses", json.dumps(out["wyoming"])),
        ("TTFA p50 / p95, first tenth", f"{f(t['first_tenth']['p50'])} / {f(t['first_tenth']['p95'])} ms"),
        ("TTFA p50 / p95, last tenth", f"{f(t['last_tenth']['p50'])} / {f(t['last_tenth']['p95'])} ms"),
        ("TTFA p95 last ÷ first (target ≤ 1.2)", f(t["p95_last_over_first"], 2)),
        ("interrupt ack p50 / p99", f"{f(ack['p50'])} / {f(ack['p99'])} ms"),
        ("errors by code", json.dumps(out["errors_by_code"])),
        ("unexplained errors (target 0)", str(len(out["unexplained"]))),
        ("stale after interrupted (target 0)", str(out["stale_after_interrupted"])),
        ("sequence gaps (target 0)", str(out["sequence_gaps"])),
        ("server RSS start → end", f"{f(rss['start'])} → {f(rss['end'])} MB"),
        ("server RSS slope after warm-up (≤ 1)", f"{f(rss['slope_after_warmup_mb_per_min'], 2)} MB/min"),
        ("worker RSS max", ", ".join(f"{pid}: {mb:.0f} MB" for pid, mb in out["worker_rss_max_mb"].items())),
    ]  # fmt: skip
    title = f"soak: {out['sessions']} sessions, {out['minutes']} min, faults {out['faults_on']}"
    print_table(title, ("figure", "value"), rows)
    recoveries = [
        (f"{x['at_s']} s", x["kind"], f"{f(x['new_session_audio_after_s'], 2)} s") for x in out["faults"]
    ]
    print_table("faults", ("at", "fault", "new session audio after"), recoveries)
    for line in out["unexplained"][:20]:
        print(f"unexplained: {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--faults", action="store_true", help="kill a worker, drop a client, stall a reader")
    parser.add_argument("--fault-every", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("--engine", default="piper", help="the server's tts.engine (piper; espeak, melo)")
    parser.add_argument("--workers", type=int, default=2, help="pool.workers (2)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="another server setting, e.g. pool.max_worker_rss_mb=800 (a YAML value)",
    )
    parser.add_argument("--json", type=Path, help="write every figure and RSS sample to this file")
    args = parser.parse_args(argv)
    extra: dict[str, dict[str, Any]] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        extra.setdefault(section, {})[name] = yaml.safe_load(value)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        process, ports, log = start_server(Path(tmp), args.engine, args.workers, extra)
        try:
            stats = asyncio.run(soak(args, ports, psutil.Process(process.pid)))
        except KeyboardInterrupt:
            return 130
        finally:
            stop_group(process)
        out = report(stats, args)
        print_report(out)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2, default=str))
        tracebacks = log.read_text(errors="replace").count("Traceback")
        print(f"note: {tracebacks} traceback(s) in the server's log")
    ok = not out["unexplained"] and out["stale_after_interrupted"] == 0 and out["sequence_gaps"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
