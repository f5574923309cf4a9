"""What the benchmark scripts share: loopback ports, plain HTTP to the server under test, stopping a
child started in its own process group, percentiles, the machine's description and plain-text tables.
Imported by ``scripts/bench_*.py`` (their folder is on ``sys.path`` when they run as
``python scripts/bench_x.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

HOST = "127.0.0.1"

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_get_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    with _NO_PROXY.open(url, timeout=timeout) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (our server drains and stops its workers on it, as wyoming-piper stops), then SIGKILL to
    the whole process group. The child was started with ``start_new_session``, so the group is it and
    what it spawned, never anything else."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def print_table(title: str, headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    if not rows:
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
