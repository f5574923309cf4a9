"""The hard parts: a worker killed mid-chunk, a client that never reads, disconnects, overload, SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from .conftest import HAS_PIPER, TIMESCALE, ServerProcess, running_server
from .helpers import Client

needs_piper = pytest.mark.skipif(not HAS_PIPER, reason="the [piper] extra is not installed")

LONG = (
    "The committee met on Tuesday to discuss the budget for the coming year, and after a long debate about "
    "roads, schools and the new library, it agreed to postpone the decision until the spring. "
    "Nobody was entirely happy with the outcome, but everybody agreed that it was the best they could do. "
    "The mayor thanked the members for their patience and promised a shorter meeting next time. "
    "Then the lights went out, and the meeting ended in the dark, with everyone laughing."
)


def status(server: ServerProcess) -> dict:
    return httpx.get(f"{server.http_url}/api/v1/status", timeout=5).json()


async def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout * TIMESCALE
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()


@pytest.fixture(scope="module")
def piper2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if not HAS_PIPER:
        pytest.skip("the [piper] extra is not installed")
    config = {
        "tts": {"engine": "piper"},
        "pool": {"workers": 2},
        "limits": {"send_timeout_s": 2.0, "max_outbound_audio_ms": 400},
    }
    with running_server(tmp_path_factory.mktemp("piper2"), config) as server:
        yield server


@needs_piper
async def test_worker_killed_mid_chunk_skips_that_span_and_other_sessions_never_notice(
    piper2: ServerProcess,
) -> None:
    async with (
        await Client.connect(piper2.ws_url) as victim,
        await Client.connect(piper2.ws_url) as bystander,
    ):
        victim_ready = await victim.start(format="pcm")
        await bystander.start(format="pcm")
        await victim.send({"type": "text", "text": LONG, "flush": True})
        await victim.expect("chunk_start")
        await asyncio.sleep(0.05)
        busy = [
            w for w in status(piper2)["pool"]["worker_list"] if w["session"] == victim_ready["session_id"]
        ]
        assert busy, "the victim's chunk should be on a worker"
        bystander_turn = asyncio.create_task(bystander.say("I am speaking on the other worker, undisturbed."))
        os.kill(busy[0]["pid"], signal.SIGKILL)
        turn = await victim.until("done", timeout=60)
        other = await bystander_turn
    errors = turn.of_type("error")
    assert len(errors) == 1
    assert errors[0]["code"] == "engine_error" and errors[0]["fatal"] is False
    assert errors[0]["text_start"] < errors[0]["text_end"]
    spoken_after = [e for e in turn.events[turn.events.index(errors[0]) :] if e["type"] == "audio"]
    assert spoken_after, "the turn goes on after the skipped chunk"
    assert not other.of_type("error") and other.audio
    assert await wait_for(lambda: status(piper2)["pool"]["ready_workers"] == 2, 30)
    assert status(piper2)["pool"]["restarts"] >= 1


def raw_websocket(port: int) -> socket.socket:
    """A client that completes the handshake and then never reads: its receive buffer fills up."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert b" 101 " in response.split(b"\r\n")[0]
    return sock


def send_frame(sock: socket.socket, payload: bytes) -> None:
    mask = os.urandom(4)
    header = bytes([0x81])
    length = len(payload)
    if length < 126:
        header += bytes([0x80 | length])
    else:
        header += bytes([0x80 | 126]) + struct.pack("!H", length)
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


@needs_piper
async def test_a_client_that_never_reads_is_closed_after_send_timeout_with_bounded_work(
    piper2: ServerProcess,
) -> None:
    server = psutil.Process(piper2.process.pid)
    rss_before = server.memory_info().rss
    sock = raw_websocket(piper2.ws_port)
    try:
        send_frame(sock, orjson.dumps({"type": "start", "config": {"format": "pcm"}}))
        for _ in range(3):
            send_frame(sock, orjson.dumps({"type": "text", "text": LONG}))
        send_frame(sock, orjson.dumps({"type": "flush"}))
        # Backpressure: the session holds few chunks in the pool while the client is stuck.
        await asyncio.sleep(1.0)
        assert status(piper2)["pool"]["queue_depth"] <= 2
        # Kernel socket buffers (megabytes on loopback) fill first; then sends block for send_timeout_s.
        closed = await wait_for(lambda: status(piper2)["active_connections"] == 0, 40)
        assert closed, "the stuck client must be closed after limits.send_timeout_s"
    finally:
        sock.close()
    assert "session_send_timeout" in piper2.log()
    assert server.memory_info().rss - rss_before < 50 * 2**20
    assert await wait_for(lambda: status(piper2)["pool"]["busy_workers"] == 0, 5)


@needs_piper
async def test_disconnect_mid_stream_frees_its_work_at_once(piper2: ServerProcess) -> None:
    client = await Client.connect(piper2.ws_url)
    await client.start()
    await client.send({"type": "text", "text": LONG + " " + LONG, "flush": True})
    await client.until("audio")
    await client.close()
    started = time.monotonic()
    assert await wait_for(lambda: status(piper2)["pool"]["busy_workers"] == 0, 5)
    # Synthesizing the rest of that text would take seconds; its work was cancelled well before.
    assert time.monotonic() - started < 1.5 * TIMESCALE
    assert status(piper2)["pool"]["queue_depth"] == 0


@needs_piper
async def test_a_turn_that_starts_while_the_pool_queue_is_full_is_refused_with_overloaded(
    tmp_path: Path,
) -> None:
    config = {
        "tts": {"engine": "piper"},
        "pool": {"workers": 1, "max_queue": 1, "max_inflight_per_session": 2},
    }
    with running_server(tmp_path, config) as server:
        clients = [await Client.connect(server.ws_url) for _ in range(5)]
        try:
            for client in clients:
                await client.start()
            for client in clients:
                await client.send({"type": "text", "text": LONG, "flush": True, "id": "turn"})
            turns = await asyncio.gather(*(c.until("done", timeout=120) for c in clients))
        finally:
            for client in clients:
                await client.close()
    refused = [t for t in turns if t.done.get("rejected")]
    spoken = [t for t in turns if not t.done.get("rejected")]
    assert refused and spoken
    for turn in refused:
        error = turn.of_type("error")[0]
        assert error["code"] == "overloaded" and error["fatal"] is False and error["text_start"] == 0
        assert not turn.audio
        assert turn.done["id"] == "turn"
    for turn in spoken:
        assert turn.audio and not turn.of_type("error")


async def test_sigterm_lets_the_turn_in_flight_finish_then_closes_1012_and_stops_workers(
    tmp_path: Path,
) -> None:
    config = {"tts": {"engine": "espeak"}, "pool": {"workers": 2}, "server": {"shutdown_timeout_s": 10}}
    with running_server(tmp_path, config) as server:
        worker_pids = [w["pid"] for w in status(server)["pool"]["worker_list"]]
        async with (
            await Client.connect(server.ws_url) as speaking,
            await Client.connect(server.ws_url) as idle,
        ):
            await speaking.start(format="mp3")
            await idle.start()
            # Slow it down so the turn is still in flight at SIGTERM: text arrives in pieces.
            await speaking.send({"type": "text", "text": "First sentence is spoken now. "})
            await speaking.until("audio")
            server.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            await speaking.send(
                {"type": "text", "text": "And the rest follows after the signal.", "flush": True}
            )
            turn = await speaking.until("done", timeout=20)
            assert turn.audio
            with pytest.raises(Exception):  # noqa: B017 - closed by the server
                await speaking.recv(timeout=10)
            assert speaking.ws.close_code == 1012
            with pytest.raises(Exception):  # noqa: B017
                await idle.recv(timeout=10)
            assert idle.ws.close_code == 1012
        assert server.process.wait(20 * TIMESCALE) == 0
    assert not [
        pid for pid in worker_pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    ]


def close_code_of(sock: socket.socket, timeout: float = 5) -> int | None:
    """Read frames until the server's close frame: its code (None if the socket ends first)."""
    sock.settimeout(timeout * TIMESCALE)
    data = b""
    while True:
        while len(data) >= 2 and len(data) >= 2 + (data[1] & 0x7F):  # small unmasked server frames
            opcode, length = data[0] & 0x0F, data[1] & 0x7F
            frame, data = data[2 : 2 + length], data[2 + length :]
            if opcode == 0x8:
                return struct.unpack("!H", frame[:2])[0] if len(frame) >= 2 else None
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk


async def test_an_invalid_utf8_text_frame_closes_1007_with_one_warning_and_no_traceback(
    espeak_server: ServerProcess,
) -> None:
    for _ in range(3):
        sock = raw_websocket(espeak_server.ws_port)
        try:
            send_frame(sock, b'{"type": "text", "text": "\xff\xfe"}')
            assert close_code_of(sock) == 1007  # RFC 6455: the WebSocket layer refuses it
        finally:
            sock.close()
    async with await Client.connect(espeak_server.ws_url) as client:  # the server goes on
        await client.start()
        await client.send({"type": "ping"})
        assert (await client.expect("pong"))["type"] == "pong"
    log = espeak_server.log()
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    warnings = [line for line in lines if line.get("event") == "malformed_input"]
    assert len(warnings) == 3
    assert all(w["level"] == "warning" and w["count"] == 1 for w in warnings)
    assert {w["reason"] for w in warnings} == {"invalid_utf8_text_frame"}
    assert "Traceback" not in log and "UnicodeDecodeError" not in log
