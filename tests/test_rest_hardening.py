"""REST hardening against a live server: body limits whatever the framing, OpenAI's error shape under /v1/,
the session cap and the paginated list, masked secrets, and config saves that fail with their reason."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streamer.config import load_settings
from streamer.config_manager import ConfigManager
from streamer.errors import ConfigDiskFull, ConfigNotWritable, ConfigSaveFailed

from .conftest import ServerProcess, running_server
from .helpers import Client

LIMIT = 4096
BODY_PATHS = ("/api/v1/synth", "/api/v1/sessions", "/api/v1/config", "/v1/audio/speech")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = {
        "tts": {"engine": "espeak"},
        "pool": {"workers": 1},
        "limits": {"max_request_bytes": LIMIT},
    }
    with running_server(tmp_path_factory.mktemp("hardening"), config) as server:
        yield server


def chunked(size: int) -> Iterator[bytes]:
    """A JSON body sent without a Content-Length (chunked), a piece at a time."""
    yield b'{"text": "'
    for _ in range(size // 1000):
        yield b"a" * 1000
    yield b'"}'


def assert_too_large(response: httpx.Response, path: str) -> None:
    assert response.status_code == 413, response.text
    body = response.json()
    if path.startswith("/v1/"):
        assert body["error"]["code"] == "payload_too_large"
        assert set(body["error"]) == {"message", "type", "param", "code"}
    else:
        assert body["error_type"] == "payload_too_large"
        assert body["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("path", BODY_PATHS)
def test_a_body_over_the_limit_is_a_413_however_it_is_framed(http: httpx.Client, path: str) -> None:
    streamed = http.post(path, content=chunked(LIMIT + 2000))
    assert "content-length" not in streamed.request.headers
    assert_too_large(streamed, path)
    assert_too_large(http.post(path, content=b"x" * (LIMIT + 1)), path)
    # The server goes on: a small body on the same path is read as usual.
    assert http.post(path, content=b"{nope").status_code == 400


@pytest.mark.parametrize("method", ["TRACE", "PUT", "DELETE"])
def test_every_error_under_v1_is_in_openai_shape(http: httpx.Client, method: str) -> None:
    for path, status in (("/v1/audio/speech", 405), ("/v1/models", 404)):
        response = http.request(method, path)
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error"}
        assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("field", "code"),
    [("format", "unsupported_format"), ("engine", "unknown_engine"), ("language", "unknown_voice")],
)
def test_an_empty_string_in_a_body_is_a_value_not_unset(http: httpx.Client, field: str, code: str) -> None:
    created = http.post("/api/v1/sessions", json={field: ""})
    assert created.status_code == 422, created.text
    assert created.json()["error_type"] == code
    assert created.json()["detail"][0]["loc"] == ["body", field]
    synth_field = "lang" if field == "language" else field
    spoken = http.post("/api/v1/synth", json={"text": "Hi.", synth_field: ""})
    assert spoken.status_code == 422, spoken.text
    assert spoken.json()["error_type"] == code


def test_a_masked_secret_is_never_stored(http: httpx.Client) -> None:
    mask = "********"
    assert http.post("/api/v1/config", json={"security": {"api_keys": ["alpha-key", "beta-key"]}}).is_success
    http.headers["X-API-Key"] = "alpha-key"
    try:
        got = http.get("/api/v1/config")
        assert got.status_code == 200, got.text
        shown = got.json()["security"]
        assert shown["api_keys"] == [mask, mask]
        # Masks beside a new key, or masks of another count: which key each stands for is unknown.
        for keys in ([mask, mask, "gamma-key"], [mask], [mask, "gamma-key"]):
            refused = http.post("/api/v1/config", json={"security": {"api_keys": keys}})
            assert refused.status_code == 422, refused.text
            assert refused.json()["detail"][0]["loc"] == ["security", "api_keys"]
        # The masked list as it came back leaves the keys untouched.
        assert http.post("/api/v1/config", json={"security": shown}).is_success
        assert http.get("/api/v1/status", headers={"X-API-Key": "beta-key"}).status_code == 200
        assert http.get("/api/v1/status", headers={"X-API-Key": mask}).status_code == 401
        # Naming the keys in full replaces them.
        assert http.post("/api/v1/config", json={"security": {"api_keys": ["alpha-key"]}}).is_success
        assert http.get("/api/v1/status", headers={"X-API-Key": "beta-key"}).status_code == 401
    finally:
        assert http.post("/api/v1/config", json={"security": {"api_keys": []}}).is_success


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = {"tts": {"engine": "espeak"}, "pool": {"workers": 1}, "sessions": {"max_sessions": 5}}
    with running_server(tmp_path_factory.mktemp("capped"), config) as server:
        yield server


async def test_the_session_cap_refuses_over_rest_and_websocket_and_frees_on_close(
    capped: ServerProcess,
) -> None:
    with httpx.Client(base_url=capped.http_url, timeout=10) as http:
        ids = [http.post("/api/v1/sessions").json()["session_id"] for _ in range(5)]
        refused = http.post("/api/v1/sessions")
        assert refused.status_code == 503, refused.text
        assert refused.json()["error_type"] == "too_many_sessions"
        assert int(refused.headers["retry-after"]) >= 1
        async with await Client.connect(capped.ws_url) as client:
            await client.send({"type": "start"})
            error = await client.expect("error")
            assert (error["code"], error["fatal"]) == ("too_many_sessions", False)
            assert http.delete(f"/api/v1/sessions/{ids[0]}").is_success
            await client.start()  # a place is free: the same connection starts
        assert http.get("/api/v1/sessions").json()["total"] <= 5


def test_the_session_list_is_paginated_with_the_total(capped: ServerProcess) -> None:
    with httpx.Client(base_url=capped.http_url, timeout=10) as http:
        for session in http.get("/api/v1/sessions").json()["sessions"]:
            http.delete(f"/api/v1/sessions/{session['session_id']}")
        created = [http.post("/api/v1/sessions").json()["session_id"] for _ in range(5)]
        default = http.get("/api/v1/sessions").json()
        assert [s["session_id"] for s in default["sessions"]] == created
        assert (default["total"], default["offset"], default["next_offset"]) == (5, 0, None)
        seen, offset = [], 0
        while offset is not None:
            page = http.get("/api/v1/sessions", params={"limit": 2, "offset": offset}).json()
            assert page["total"] == 5 and len(page["sessions"]) <= 2
            seen += [s["session_id"] for s in page["sessions"]]
            offset = page["next_offset"]
        assert seen == created
        for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "x"}):
            refused = http.get("/api/v1/sessions", params=bad)
            assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][0] == "query"
        for session_id in created:
            http.delete(f"/api/v1/sessions/{session_id}")


def test_a_save_that_cannot_write_says_why_and_leaves_the_file(
    server: ServerProcess, http: httpx.Client
) -> None:
    # Root ignores permissions, so the target is made unwritable another way: a folder in its place.
    path = server.config_path
    original = path.read_bytes()
    path.unlink()
    path.mkdir()
    try:
        refused = http.post("/api/v1/config/save")
        assert refused.status_code == 409, refused.text
        body = refused.json()
        assert body["error_type"] == "config_not_writable"
        assert str(path) in body["detail"] and "directory" in body["detail"].lower()
        assert list(path.parent.glob(".config.yaml.*.tmp")) == [], "no temp file left behind"
    finally:
        path.rmdir()
        path.write_bytes(original)
    assert path.read_bytes() == original


@pytest.mark.parametrize(
    ("code", "error", "status"),
    [
        (errno.EROFS, ConfigNotWritable, 409),
        (errno.EACCES, ConfigNotWritable, 409),
        (errno.ENOSPC, ConfigDiskFull, 507),
        (errno.EIO, ConfigSaveFailed, 500),
    ],
)
def test_each_save_failure_has_its_code_and_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, error: type[ConfigSaveFailed], status: int
) -> None:
    # A read-only file system or a full disk cannot be made here (root, no mounts): faked at the OS boundary.
    path = tmp_path / "streamer.yaml"
    path.write_text("tts:\n  default_speed: 1.1\n")
    manager = ConfigManager(load_settings(path, environ={}), path)
    manager.update({"tts": {"default_speed": 2.0}})

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "mkstemp", fail)
    with pytest.raises(error) as info:
        manager.save()
    assert type(info.value) is error and info.value.http_status == status
    assert os.strerror(code) in info.value.message
    assert path.read_text() == "tts:\n  default_speed: 1.1\n"
