"""Each example, run as a user would: a subprocess against a live server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest

from .conftest import TIMESCALE, ServerProcess
from .helpers import decode_audio, rms

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
from voice_assistant import REPLY  # noqa: E402

TEXT = "Hello from the streaming client example. It writes whatever the server speaks."


# The examples run on the core install (`pip install -e .`), as the README has them: the packages of the
# extras are hidden from them, so one that imports httpx, or sounddevice when not playing, fails here.
CORE_ONLY = """
import os, runpy, sys
sys.modules.update(dict.fromkeys(("httpx", "sounddevice")))  # now `import httpx` raises ImportError
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(sys.argv[0])  # as `python examples/NAME.py` has it
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_example(
    name: str, *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    return subprocess.run(
        [sys.executable, "-c", CORE_ONLY, str(EXAMPLES / name), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout * TIMESCALE,
        env=env,
        check=False,
    )


def assert_playable(path: Path, min_s: float) -> float:
    samples, rate = decode_audio(path.read_bytes())
    seconds = len(samples) / rate
    assert seconds >= min_s, seconds
    assert rms(samples) > 0.01, "silence"
    return seconds


@pytest.mark.parametrize("name", ["speech.wav", "speech.mp3", "speech.ogg", "speech.flac"])
def test_stream_client_writes_a_playable_file(
    espeak_server: ServerProcess, tmp_path: Path, name: str
) -> None:
    output = tmp_path / name
    result = run_example("stream_client.py", "--url", espeak_server.ws_url, "-o", str(output), TEXT)
    assert result.returncode == 0, result.stderr
    seconds = assert_playable(output, min_s=2.0)
    assert "s of audio to" in result.stderr and "first audio after" in result.stderr
    if name.endswith(".wav"):
        with wave.open(str(output)) as wav:  # a real header: the exact length, not "until the end"
            assert wav.getframerate() == 24000 and abs(wav.getnframes() / 24000 - seconds) < 0.01


def test_stream_client_streams_standard_input(espeak_server: ServerProcess, tmp_path: Path) -> None:
    output = tmp_path / "piped.wav"
    lines = "The first line arrives.\nThen a second line,\nand the end of it.\n"
    result = run_example(
        "stream_client.py", "--url", espeak_server.ws_url, "--msgpack", "-o", str(output), stdin=lines
    )
    assert result.returncode == 0, result.stderr
    assert_playable(output, min_s=2.0)


def test_stream_client_without_sounddevice_says_what_to_do(espeak_server: ServerProcess) -> None:
    result = run_example("stream_client.py", "--url", espeak_server.ws_url, "Play me.")
    assert result.returncode != 0
    assert "--output" in result.stderr and "Traceback" not in result.stderr


def test_voice_assistant_barge_in(espeak_server: ServerProcess) -> None:
    started = time.monotonic()
    result = run_example("voice_assistant.py", "--url", espeak_server.ws_url, "--barge-in", "1")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"time to first audio: [\d.]+ ms", out), out
    tokens = re.search(r"barges in after 1 s: (\d+) tokens sent", out)
    words = len(REPLY.split(" "))
    assert tokens and 5 <= int(tokens.group(1)) < words, out  # the reply was cut short
    latency = re.search(r"interrupt acknowledged in ([\d.]+) ms \(generation 1", out)
    assert latency and float(latency.group(1)) < 1000 * TIMESCALE, out
    assert "stale audio after the interrupt: 0 frames" in out
    assert "assistant answers" in out
    assert elapsed < 30 * TIMESCALE


def test_voice_assistant_fast(espeak_server: ServerProcess) -> None:
    result = run_example("voice_assistant.py", "--url", espeak_server.ws_url, "--barge-in", "0.5", "--fast")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stale audio after the interrupt: 0 frames" in result.stdout


def test_rest_client_tour(espeak_server: ServerProcess) -> None:
    result = run_example("rest_client.py", "--url", espeak_server.http_url)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Server status: healthy" in out
    session_id = re.search(r"Session created: ([0-9a-f]+)", out)
    assert session_id and f"Session closed: Session {session_id.group(1)} closed" in out
    assert "Total requests:" in out and "Config: engine espeak" in out
    assert re.search(r"Voices for English \(en, espeak\): en, ", out)


def test_rest_client_reports_an_unreachable_server() -> None:
    result = run_example("rest_client.py", "--url", "http://127.0.0.1:9")
    assert result.returncode == 1 and "cannot reach" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080", "the stream is at ws://127.0.0.1:8080/api/v1/stream"),
        ("https://tts.example:8443/api/v1/stream", "the stream is at wss://tts.example:8443/api/v1/stream"),
        ("127.0.0.1:8081", "the stream is at ws://HOST:8081/api/v1/stream"),
    ],
)
@pytest.mark.parametrize("example", ["stream_client", "voice_assistant"])
def test_a_url_that_is_not_a_websocket_gets_one_line(example: str, url: str, expected: str) -> None:
    result = run_example(f"{example}.py", "--url", url, *(["Hi"] if example == "stream_client" else []))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{example}: {url}"), result.stderr
    assert "is not a WebSocket URL" in lines[0] and expected in lines[0]


def test_a_websocket_url_with_a_wrong_path_names_the_right_one(
    espeak_server: ServerProcess, tmp_path: Path
) -> None:
    url = f"ws://127.0.0.1:{espeak_server.ws_port}/"
    result = run_example("stream_client.py", "--url", url, "-o", str(tmp_path / "out.wav"), "Hi")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("stream_client: WebSocket handshake refused: HTTP ")
    assert result.stderr.endswith(" (a wrong path? the stream is at /api/v1/stream)\n")
