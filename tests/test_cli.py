"""The command line: `serve` (uvicorn options, TLS on both ports, reload), `say`, `voices`, `config check`."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from streamer.cli import main
from streamer.client import RestClient, StreamerClient
from streamer.config import load_settings

from .conftest import TIMESCALE, free_port
from .helpers import decode_audio, rms

# Every long option of the `api` command table in ttskit's API document, plus ours.
TABLE_OPTIONS = (
    "--host", "--port", "--workers", "--reload", "--log-level", "--access-log", "--timeout-keep-alive",
    "--ssl-keyfile", "--ssl-certfile", "--ssl-keyfile-password", "--ssl-version", "--ssl-cert-reqs",
    "--ssl-ca-certs", "--ssl-ciphers", "--header", "--forwarded-allow-ips", "--root-path", "--proxy-headers",
    "--server-header", "--date-header",
)  # fmt: skip
OUR_OPTIONS = (
    "--http-port",
    "--ws-port",
    "--config",
    "--pool-workers",
    "--no-server-header",
    "--no-date-header",
)


def streamer(
    *args: str, stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    return subprocess.run(
        [sys.executable, "-m", "streamer", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout * TIMESCALE,
        env=env,
        check=False,
    )


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    http_port: int
    ws_port: int
    log_path: Path
    scheme: str

    def url(self, port: int, path: str = "/health") -> str:
        return f"{self.scheme}://127.0.0.1:{port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def serve(
    tmp: Path, *args: str, config: dict[str, Any] | None = None, verify: Any = True, scheme: str = "http"
) -> Iterator[Served]:
    """`streamer serve` with ``args`` on free ports; yields once /health answers on the REST port."""
    http_port, ws_port = free_port(), free_port()
    config_path = tmp / "config.yaml"
    base = {"tts": {"engine": "espeak"}, "pool": {"workers": 1}, "logging": {"format": "console"}}
    config_path.write_text(yaml.safe_dump({**base, **(config or {})}))
    log_path = tmp / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    command = [sys.executable, "-m", "streamer", "serve", "--config", str(config_path), "--host", "127.0.0.1"]
    command += ["--port", str(http_port), "--ws-port", str(ws_port), *args]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    served = Served(process, http_port, ws_port, log_path, scheme)
    try:
        deadline = time.monotonic() + 30 * TIMESCALE
        while True:
            assert process.poll() is None, f"server exited with {process.returncode}:\n{served.log()}"
            assert time.monotonic() < deadline, f"server not ready:\n{served.log()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(served.url(http_port), timeout=1, verify=verify).json().get("workers_ready"):
                    break
            time.sleep(0.05)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30 * TIMESCALE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def test_serve_help_lists_every_option_of_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "-h"])  # -h stays help
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for option in TABLE_OPTIONS + OUR_OPTIONS:
        assert option in text, option


def test_serve_refuses_several_server_processes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--workers", "2"]) == 2
    message = capsys.readouterr().err
    assert "--workers 2" in message and "one server process" in message and "--pool-workers" in message


def test_serve_refuses_tls_options_that_cannot_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--ssl-keyfile", str(tmp_path / "key.pem")]) == 2
    assert "--ssl-certfile" in capsys.readouterr().err
    assert main(["serve", "--ssl-certfile", str(tmp_path / "missing.pem")]) == 2
    assert "TLS settings do not load" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--ssl-cert-reqs", "sometimes"])
    with pytest.raises(SystemExit):
        main(["serve", "--header", "no colon here"])


def test_serve_ports_headers_and_banner(tmp_path: Path) -> None:
    args = (
        "--header",
        "X-Test:1",
        "--header",
        "X-Other: two words",
        "--no-server-header",
        "--no-date-header",
        "--no-proxy-headers",
    )
    with serve(tmp_path, *args) as server:
        for port in (server.http_port, server.ws_port):  # one uvicorn serves both sockets
            response = httpx.get(server.url(port))
            assert response.status_code == 200
            assert response.headers["x-test"] == "1" and response.headers["x-other"] == "two words"
            assert "server" not in response.headers and "date" not in response.headers
        forwarded = {"X-Forwarded-Proto": "https"}
        created = httpx.post(server.url(server.http_port, "/api/v1/sessions"), json={}, headers=forwarded)
        assert created.json()["ws_url"].startswith("ws://")  # proxy headers off: not believed
        log = server.log()
    assert f"REST API   http://127.0.0.1:{server.http_port}/api/v1" in log
    assert f"WebSocket  ws://127.0.0.1:{server.ws_port}/api/v1/stream" in log
    assert f"http://127.0.0.1:{server.http_port}/docs" in log and f"127.0.0.1:{server.http_port}/demo/" in log
    assert "curl " in log
    assert server.process.returncode == 0


def test_serve_defaults_send_server_and_date_headers(tmp_path: Path) -> None:
    with serve(tmp_path, "--access-log", "--log-level", "info", "--timeout-keep-alive", "2") as server:
        response = httpx.get(server.url(server.http_port))
        assert response.headers["server"] == "uvicorn" and "date" in response.headers
        forwarded = {"X-Forwarded-Proto": "https"}  # from 127.0.0.1, a trusted proxy by default
        created = httpx.post(server.url(server.http_port, "/api/v1/sessions"), json={}, headers=forwarded)
        assert created.json()["ws_url"].startswith("wss://")
        time.sleep(0.2)
        assert '"GET /health HTTP/1.1" 200' in server.log()  # uvicorn's access log line


def test_json_logging_makes_every_line_json_uvicorn_included(tmp_path: Path) -> None:
    config = {"logging": {"format": "json", "level": "INFO"}}
    with serve(tmp_path, "--access-log", config=config) as server:
        httpx.get(server.url(server.http_port), headers={"X-Request-ID": "json-line-check"})
        httpx.get(server.url(server.http_port, "/no-such-path"))
    lines = [line for line in server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line: uvicorn's, ours, the shutdown's
    by_logger = {record.get("logger") for record in records}
    assert {"uvicorn.error", "uvicorn.access"} <= by_logger
    access = [r for r in records if r.get("logger") == "uvicorn.access"]
    assert any("GET /health" in r["event"] and r.get("request_id") == "json-line-check" for r in access)
    assert all({"event", "level", "timestamp"} <= set(record) for record in records)
    assert server.process.returncode == 0


def make_certificate(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made now."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "streamer test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_tls_on_both_ports(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    args = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    with serve(
        tmp_path, *args, config={"logging": {"format": "json"}}, verify=trust, scheme="https"
    ) as server:
        for port in (server.http_port, server.ws_port):
            assert httpx.get(server.url(port), verify=trust).json()["status"] == "healthy"
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)  # no plain HTTP on a TLS port
            wss = f"wss://127.0.0.1:{port}/api/v1/stream"
            for verify in (str(cert), False):
                async with StreamerClient.connect(wss, verify=verify, format="mp3") as session:
                    turn = await session.say("Spoken over TLS.", timeout=30 * TIMESCALE)
                samples, _ = decode_audio(turn.audio)
                assert len(samples) and rms(samples) > 0.01
        with RestClient(f"https://127.0.0.1:{server.http_port}", verify=str(cert)) as rest:
            created = rest.create_session(language="en")
            assert created["ws_url"] == f"wss://127.0.0.1:{server.ws_port}/api/v1/stream"
        log = server.log()
    assert '"event":"server_urls"' in log and f"wss://127.0.0.1:{server.ws_port}/api/v1/stream" in log


def test_reload_restarts_the_server_when_the_config_changes(tmp_path: Path) -> None:
    with serve(tmp_path, "--reload") as server:
        parent = psutil.Process(server.process.pid)
        first_child = next(c for c in parent.children() if "spawn_main" in " ".join(c.cmdline()))
        before = httpx.get(server.url(server.http_port, "/api/v1/config")).json()["tts"]["default_speed"]
        assert before == 1.0
        config_path = tmp_path / "config.yaml"
        config = yaml.safe_load(config_path.read_text())
        config["tts"]["default_speed"] = 1.25
        config_path.write_text(yaml.safe_dump(config))
        deadline = time.monotonic() + 30 * TIMESCALE
        while True:
            assert time.monotonic() < deadline, server.log()
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(server.url(server.http_port), timeout=1).json()
                if not first_child.is_running() and health.get("workers_ready"):
                    break
            time.sleep(0.1)
        assert (
            httpx.get(server.url(server.http_port, "/api/v1/config")).json()["tts"]["default_speed"] == 1.25
        )
        assert "reloader_restarting" in server.log()
        children = parent.children(recursive=True)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30 * TIMESCALE) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, alive


def test_say_writes_an_mp3(tmp_path: Path) -> None:
    output = tmp_path / "out.mp3"
    result = streamer("say", "--engine", "espeak", "Hello there, from the command line.", "-o", str(output))
    assert result.returncode == 0, result.stderr.decode()
    samples, rate = decode_audio(output.read_bytes())
    assert rate == 24000 and len(samples) / rate > 1.0 and rms(samples) > 0.01
    assert b"s of mp3 at 24000 Hz" in result.stderr


def test_say_reads_stdin_and_writes_wav_to_stdout() -> None:
    result = streamer("say", "--engine", "espeak", "-f", "wav", "-o", "-", "-q", stdin=b"Text from a pipe.")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout[:4] == b"RIFF" and result.stderr == b""
    samples, rate = decode_audio(result.stdout)
    assert len(samples) / rate > 0.5 and rms(samples) > 0.01


def test_say_long_text_from_a_file_with_a_progress_bar(tmp_path: Path) -> None:
    text = tmp_path / "story.txt"
    text.write_text(" ".join(f"This is sentence number {n} of a long story." for n in range(1, 40)))
    output = tmp_path / "story.flac"
    result = streamer(
        "say", "--engine", "espeak", "--speed", "1.5", "-i", str(text), "-o", str(output), "--progress"
    )
    assert result.returncode == 0, result.stderr.decode()
    err = result.stderr.decode()
    chunks = int(err.rsplit(" chunks in ", 1)[0].rsplit(", ", 1)[1])
    assert chunks > 1 and f"] {chunks}/{chunks} chunks" in err and "[" + "#" * 30 + "]" in err
    samples, rate = decode_audio(output.read_bytes())
    assert len(samples) / rate > 20


def test_say_errors_are_one_line(tmp_path: Path) -> None:
    wav = str(tmp_path / "x.wav")
    for args, expected in (
        (("--voice", "no-such-voice", "Hi", "-o", wav), b"unknown voice"),
        (("Hi", "-o", str(tmp_path / "speech.xyz")), b"cannot tell the format"),
        (("--engine", "espeak", "--speed", "9", "Hi", "-o", wav), b"--speed"),
        (("--engine", "espeak", "-o", wav), b"nothing to say"),
    ):
        result = streamer("say", *args, stdin=b"")
        assert result.returncode == 2 and expected in result.stderr and b"Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


def test_voices_lists_the_engines_voices(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["voices", "--engine", "espeak", "--language", "en"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "ENGINE", "LANGUAGE", "GENDER", "RATE", "QUALITY", "VOICE_ID"]
    en_us = next(line.split() for line in lines if line.startswith("en-us "))
    assert en_us[1:3] == ["espeak", "en-us"] and en_us[4] == "22050"
    assert main(["voices", "--json"]) == 0
    assert '"name": "en-us"' in capsys.readouterr().out


def test_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("server:\n  http_port: 9000\ntts:\n  engine: espeak\n")
    assert main(["config", "check", str(good)]) == 0
    assert "valid" in capsys.readouterr().out

    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  http_port: lots\n  colour: blue\ntts:\n  default_speed: 9\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "invalid" in err and "server.http_port" in err and "server.colour" in err
    assert "tts.default_speed" in err

    broken = tmp_path / "broken.yaml"
    broken.write_text("server: [unclosed\n")
    assert main(["config", "check", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def write_config(tmp: Path, tree: dict[str, Any]) -> Path:
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_config_check_refuses_a_default_voice_no_engine_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = write_config(tmp_path, {"tts": {"engine": "espeak", "default_voice": "en-uss"}})
    assert main(["config", "check", str(typo)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"{typo}: tts.default_voice: no voice 'en-uss' in engine espeak (tts.engine: espeak); "
        "`streamer voices --engine espeak` lists them\n"
    )
    good = write_config(tmp_path, {"tts": {"engine": "espeak", "default_voice": "en-GB"}})
    assert (
        main(["config", "check", str(good)]) == 0
    )  # voice names match as `streamer voices` has them, any case


def test_config_check_says_which_engine_auto_chose_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamer.engines.catalog import Catalog

    catalog = Catalog(load_settings(None, environ={}).engines.model_dump(), "auto")
    path = write_config(tmp_path, {"tts": {"engine": "auto"}})
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: valid (engine {catalog.default_engine}, ")
    assert out[1].startswith(f"  engine: auto chose {catalog.default_engine}")
    for engine, reason in catalog.choice.skipped.items():  # every engine auto passed over, with its reason
        assert f"{engine} skipped ({reason})" in out[1]


def test_serve_refuses_a_default_voice_no_engine_has_before_its_banner(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tts": {"engine": "espeak", "default_voice": "en-uss"}})
    port = free_port()
    result = streamer("serve", "--config", str(config), "--port", str(port), "--ws-port", str(free_port()))
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "streamer: tts.default_voice: no voice 'en-uss' in engine espeak (tts.engine: espeak); "
        "`streamer voices --engine espeak` lists them\n"
    )  # one line, and no banner: the engine and voice are checked first


def test_serve_says_a_taken_wyoming_port_in_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"tts": {"engine": "espeak"}, "pool": {"workers": 1}})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ("--config", str(config), "--host", "127.0.0.1", "--port", str(free_port()))
        result = streamer("serve", *args, "--ws-port", str(free_port()), "--wyoming-port", str(port))
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"streamer: cannot listen on 127.0.0.1:{port} (Wyoming): Address already in use; "
        "choose another port with --wyoming-port\n"
    )


def test_serve_banner_names_the_engine_auto_chose_and_the_wyoming_port(tmp_path: Path) -> None:
    wyoming_port = free_port()
    config = {"tts": {"engine": "auto"}}
    with serve(tmp_path, "--wyoming-port", str(wyoming_port), config=config) as server:
        engine = httpx.get(server.url(server.http_port, "/api/v1/health")).json()["engine"]
        log = server.log()
    banner = log[log.index("streamer 0.1.0: ") :].splitlines()
    assert banner[0].startswith(f"streamer 0.1.0: engine {engine}, ")
    assert banner[1].startswith(f"  Engine     auto chose {engine}")
    assert f"  Wyoming    tcp://127.0.0.1:{wyoming_port}" in banner
    assert log.index("engine_selected") < log.index("streamer 0.1.0: ") < log.index("wyoming_listening")


def test_say_unknown_voice_points_at_streamer_voices(tmp_path: Path) -> None:
    result = streamer(
        "say", "--engine", "espeak", "--voice", "no-such-voice", "Hi", "-o", str(tmp_path / "x.wav")
    )
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "streamer: unknown voice 'no-such-voice' for engine espeak; "
        "`streamer voices --engine espeak` lists them\n"
    )
