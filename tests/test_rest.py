"""The REST contract (seeds/streamer-rest-api.md) against a live server: every path, shape and error."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from streamer.config import load_settings
from streamer.config_manager import ConfigManager
from streamer.errors import ConfigDiskFull, ConfigError

from .conftest import TIMESCALE, ServerProcess, running_server
from .helpers import Client

SECRET = "rest-secret"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = {
        "tts": {"engine": "espeak"},
        "pool": {"workers": 1},
        "security": {"secret_key": SECRET},
        "sessions": {"idle_timeout_s": 2.0},
        "limits": {"max_request_bytes": 4096},
    }
    with running_server(tmp_path_factory.mktemp("rest"), config) as server:
        yield server


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "error_type", "request_id"}
    assert body["error_type"] == error_type
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_every_response_has_request_id_and_process_time(http: httpx.Client) -> None:
    for path in ("/health", "/api/v1/status", "/api/v1/nowhere"):
        response = http.get(path)
        assert response.headers["x-request-id"]
        assert float(response.headers["x-process-time"]) >= 0
    kept = http.get("/api/v1/health", headers={"X-Request-ID": "my-trace-42"})
    assert kept.headers["x-request-id"] == "my-trace-42"


def test_health_status_metrics_match_the_contract(http: httpx.Client) -> None:
    health = http.get("/api/v1/health").json()
    assert health["status"] == "healthy"
    assert {"timestamp", "version", "uptime_seconds", "components"} <= set(health)
    assert health["components"] == {
        "config_manager": "healthy",
        "session_manager": "healthy",
        "queue_manager": "healthy",
        "tts_engine": "healthy",
    }
    status = http.get("/api/v1/status").json()
    assert status["status"] == "running"
    assert {"uptime_seconds", "host", "http_port", "websocket_port", "max_connections"} <= set(
        status["server"]
    )
    assert status["tts_engine"]["engine"] == "espeak" and "en" in status["tts_engine"]["supported_languages"]
    assert {"default_format", "supported_formats", "buffer_size"} <= set(status["audio_processor"])
    assert status["queue_status"]["worker_processes"] == 1 and status["queue_status"]["current_size"] == 0
    assert isinstance(status["active_connections"], int)
    metrics = http.get("/api/v1/metrics").json()
    for key in ("timestamp", "uptime_seconds", "active_sessions", "total_requests", "average_latency_ms",
                "queue_size", "memory_usage_mb", "cpu_usage_percent"):  # fmt: skip
        assert key in metrics
    assert metrics["total_requests"] >= 2 and metrics["memory_usage_mb"] > 10


def test_ready_answers_200_once_engines_are_warm(http: httpx.Client) -> None:
    response = http.get("/ready")
    assert response.status_code == 200
    assert response.json()["failing"] == []


def test_voices_grouped_by_language_and_languages(http: httpx.Client) -> None:
    groups = http.get("/api/v1/voices").json()
    english = next(g for g in groups if g["code"] == "en")
    assert english["name"] == "English"
    ids = [s["id"] for s in english["speakers"]]
    assert ids == list(range(len(ids)))
    for speaker in english["speakers"]:
        assert {"id", "name", "gender", "description", "sample_rate", "quality"} <= set(speaker)
    languages = http.get("/api/v1/languages").json()
    assert "en" in languages["supported_languages"]
    assert languages["default_language"] == "en" and languages["preload_languages"] == ["en"]


def test_engines_and_engine_voices_and_formats(http: httpx.Client) -> None:
    engines = {e["name"]: e for e in http.get("/api/v1/engines").json()}
    assert engines["espeak"]["available"] and engines["espeak"]["default"]
    assert "melo" in engines  # listed, with why it is not available
    one = http.get("/api/v1/engines/espeak").json()
    assert one["name"] == "espeak" and "en-us" in one["voices"]
    flat = http.get("/api/v1/engines/espeak/voices", params={"language": "de"}).json()
    assert flat and all(v["language"].startswith("de") for v in flat)
    assert [v["voice_id"] for v in flat] == list(range(len(flat)))
    assert_error(http.get("/api/v1/engines/nope"), 422, "unknown_engine")
    assert http.get("/api/v1/formats").json()["formats"] == ["pcm", "wav", "ogg", "mp3", "flac", "aac"]


def test_errors_have_one_shape(http: httpx.Client) -> None:
    assert_error(http.get("/api/v1/does-not-exist"), 404, "not_found")
    assert_error(http.delete("/api/v1/health"), 405, "method_not_allowed")
    assert_error(http.post("/api/v1/sessions", content=b"{not json"), 400, "invalid_message")
    assert_error(http.post("/api/v1/sessions", content=b"x" * 5000), 413, "payload_too_large")
    body = assert_error(http.post("/api/v1/sessions", json={"speed": 99, "bogus": 1}), 422, "invalid_field")
    assert isinstance(body["detail"], list) and {"loc", "msg"} <= set(body["detail"][0])
    assert_error(http.post("/api/v1/sessions", json={"voice": "xx-none"}), 422, "unknown_voice")
    assert_error(http.post("/api/v1/sessions", json={"format": "wma"}), 422, "unsupported_format")
    assert_error(http.get("/api/v1/sessions/unknown"), 404, "session_not_found")


def test_session_body_lists_every_bad_field_and_names_runtime_checks(http: httpx.Client) -> None:
    body = assert_error(http.post("/api/v1/sessions", json={"speed": 99, "bogus": 1}), 422, "invalid_field")
    assert body["detail"] == [
        {"loc": ["body", "speed"], "msg": "Input should be less than or equal to 4"},
        {"loc": ["body", "bogus"], "msg": "unknown field 'bogus'"},
    ]
    body = assert_error(http.post("/api/v1/sessions", json={"lang": "en"}), 422, "invalid_field")
    assert body["detail"] == [
        {"loc": ["body", "lang"], "msg": "unknown field 'lang'; did you mean 'language'?"}
    ]
    body = assert_error(http.post("/api/v1/sessions", json={"format": "wma"}), 422, "unsupported_format")
    assert body["detail"][0]["loc"] == ["body", "format"]
    body = assert_error(http.post("/api/v1/sessions", json={"voice_id": True}), 422, "invalid_field")
    assert body["detail"][0]["loc"] == ["body", "voice_id"]


def test_config_get_update_validation_and_restart_keys(http: httpx.Client) -> None:
    config = http.get("/api/v1/config").json()
    assert {"server", "tts", "audio"} <= set(config)
    assert config["security"]["secret_key"] == "********", "secrets are masked"
    bad = http.post("/api/v1/config", json={"tts": {"default_speed": 12, "engine": "nope"}, "nope": {}})
    body = assert_error(bad, 422, "invalid_field")
    assert {tuple(d["loc"]) for d in body["detail"]} >= {
        ("tts", "default_speed"),
        ("tts", "engine"),
        ("nope",),
    }
    assert http.get("/api/v1/config").json()["tts"]["default_speed"] == 1.0, "nothing applied"
    ok = http.post("/api/v1/config", json={"tts": {"default_speed": 1.25}, "server": {"http_port": 9999}})
    assert ok.status_code == 200
    answer = ok.json()
    assert answer["status"] == "success" and answer["applied"] == ["tts.default_speed"]
    assert answer["restart_required"] == ["server.http_port"] and "restart" in answer["message"]
    running = http.get("/api/v1/config").json()
    assert running["tts"]["default_speed"] == 1.25 and running["server"]["http_port"] != 9999
    # Posting the masked document back does not replace the secret with the mask.
    assert http.post("/api/v1/config", json={"security": running["security"]}).status_code == 200
    http.post(
        "/api/v1/config",
        json={"tts": {"default_speed": 1.0}, "server": {"http_port": running["server"]["http_port"]}},
    )


def test_a_live_default_voice_the_engine_lacks_is_refused_with_its_field(http: httpx.Client) -> None:
    before = http.get("/api/v1/config").json()["tts"]["default_voice"]
    body = assert_error(
        http.post("/api/v1/config", json={"tts": {"default_voice": "en-uss"}}), 422, "invalid_field"
    )
    (field,) = body["detail"]
    assert field["loc"] == ["tts", "default_voice"] and "streamer voices" in field["msg"]
    assert http.get("/api/v1/config").json()["tts"]["default_voice"] == before, "nothing applied"


async def test_live_config_is_seen_by_a_new_websocket_session(
    server: ServerProcess, http: httpx.Client
) -> None:
    http.post("/api/v1/config", json={"tts": {"default_speed": 1.5}, "audio": {"default_format": "mp3"}})
    try:
        async with await Client.connect(server.ws_url) as client:
            ready = await client.start()
        assert ready["speed"] == 1.5 and ready["audio"]["format"] == "mp3"
    finally:
        http.post("/api/v1/config", json={"tts": {"default_speed": 1.0}, "audio": {"default_format": "pcm"}})


def test_logging_level_changes_at_once(server: ServerProcess, http: httpx.Client) -> None:
    http.post("/api/v1/config", json={"logging": {"level": "WARNING"}})
    marker = "level-check-marker"
    http.get("/api/v1/health", headers={"X-Request-ID": marker})
    http.post("/api/v1/config", json={"logging": {"level": "INFO"}})
    http.get("/api/v1/health", headers={"X-Request-ID": marker + "-2"})
    time.sleep(0.2)
    log = server.log()
    assert f'"request_id":"{marker}"' not in log and f'"request_id":"{marker}-2"' in log


def test_sessions_crud_and_attach_over_websocket(server: ServerProcess, http: httpx.Client) -> None:
    created = http.post("/api/v1/sessions", json={"language": "en", "voice_id": 0, "format": "wav",
                                                  "sample_rate": 22050, "speed": 1.0})  # fmt: skip
    assert created.status_code == 201
    session = created.json()
    for key in ("session_id", "created_at", "last_activity", "config", "is_active", "resume_token", "ws_url"):
        assert key in session
    assert session["config"]["format"] == "wav" and session["config"]["voice_id"] == 0
    assert session["ws_url"].endswith(f":{server.ws_port}/api/v1/stream")
    listed = http.get("/api/v1/sessions").json()
    assert listed["total"] == len(listed["sessions"]) and session["session_id"] in [
        s["session_id"] for s in listed["sessions"]
    ]

    async def attach() -> dict:
        async with await Client.connect(session["ws_url"]) as client:
            await client.send(
                {
                    "type": "start",
                    "session_id": session["session_id"],
                    "resume_token": session["resume_token"],
                }
            )
            ready = await client.expect("ready")
            await client.say("Attached to a session made over REST.")
            info = http.get(f"/api/v1/sessions/{session['session_id']}").json()
            assert info["connected"] is True
            return ready

    ready = asyncio.run(attach())
    assert ready["audio"]["format"] == "wav"
    deadline = time.monotonic() + 5 * TIMESCALE
    while (info := http.get(f"/api/v1/sessions/{session['session_id']}").json())["connected"]:
        assert time.monotonic() < deadline, "the session stays attached after its client left"
        time.sleep(0.05)  # the server notices the close a moment after the client returns
    assert info["audio_seconds_sent"] > 0.5 and "generation" in info
    assert http.get(f"/api/v1/sessions/{session['session_id']}").status_code == 200
    deleted = http.delete(f"/api/v1/sessions/{session['session_id']}")
    assert deleted.json() == {"status": "success", "message": f"Session {session['session_id']} closed"}
    assert_error(http.get(f"/api/v1/sessions/{session['session_id']}"), 404, "session_not_found")


def test_a_session_never_attached_expires(http: httpx.Client) -> None:
    session = http.post("/api/v1/sessions", json={}).json()
    deadline = time.monotonic() + 10 * TIMESCALE
    while time.monotonic() < deadline:
        if http.get(f"/api/v1/sessions/{session['session_id']}").status_code == 404:
            return
        time.sleep(0.2)
    pytest.fail("session did not expire after sessions.idle_timeout_s")


async def test_delete_closes_a_connected_client_with_session_closed(server: ServerProcess) -> None:
    async with await Client.connect(server.ws_url) as client:
        ready = await client.start()
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            assert (await http.delete(f"/api/v1/sessions/{ready['session_id']}")).status_code == 200
        error = await client.expect("error")
        assert error["code"] == "session_closed" and error["fatal"] is True
        with pytest.raises(Exception):  # noqa: B017 - closed by the server
            await client.recv(timeout=5)
        assert client.ws.close_code == 1000


PARAGRAPH = "A long paragraph keeps the session speaking while the operator decides to stop it. " * 6


async def test_rest_interrupt_stops_a_live_stream_with_no_stale_message(server: ServerProcess) -> None:
    async with (
        await Client.connect(server.ws_url) as client,
        httpx.AsyncClient(base_url=server.http_url) as http,
    ):
        ready = await client.start()
        for round_ in range(5):
            await client.send({"type": "text", "text": PARAGRAPH, "flush": True})
            await client.until("audio")
            path = f"/api/v1/interrupt/{ready['session_id']}" if round_ % 2 else "/api/v1/interrupt/all"
            answer = await http.post(path)
            assert answer.status_code == 200 and answer.json()["status"] == "success"
            turn = await client.until("interrupted")
            generation = turn.events[-1]["generation"]
            assert generation == round_ + 1
            await client.send({"type": "text", "text": "Next.", "flush": True})
            after = await client.until("done")
            assert all(e.get("generation", generation) >= generation for e in after.events)
        assert_error(await http.post("/api/v1/interrupt/not-a-session"), 404, "session_not_found")


async def test_is_active_while_a_turn_is_under_way(server: ServerProcess) -> None:
    async with (
        await Client.connect(server.ws_url) as client,
        httpx.AsyncClient(base_url=server.http_url) as http,
    ):
        path = f"/api/v1/sessions/{(await client.start())['session_id']}"
        idle = (await http.get(path)).json()
        assert (idle["connected"], idle["is_active"]) == (True, False)
        await client.send({"type": "text", "text": PARAGRAPH, "flush": True})
        await client.until("audio")
        assert (await http.get(path)).json()["is_active"] is True
        assert (await http.get("/api/v1/sessions")).json()["sessions"][-1]["is_active"] in (True, False)
        await http.post(path.replace("sessions", "interrupt"))
        await client.until("interrupted")
        deadline = time.monotonic() + 5 * TIMESCALE
        while (await http.get(path)).json()["is_active"]:
            assert time.monotonic() < deadline, "a session interrupted with nothing queued stays active"
            await asyncio.sleep(0.05)


def test_reload_rereads_the_file_and_an_invalid_file_changes_nothing(
    server: ServerProcess, http: httpx.Client
) -> None:
    path = server.config_path
    original = path.read_text()
    try:
        document = yaml.safe_load(original)
        document["tts"]["default_speed"] = 1.75
        path.write_text(yaml.safe_dump(document))
        answer = http.post("/api/v1/config/reload")
        assert answer.status_code == 200 and "tts.default_speed" in answer.json()["applied"]
        assert http.get("/api/v1/config").json()["tts"]["default_speed"] == 1.75
        path.write_text("tts:\n  default_speed: fast\n")
        body = assert_error(http.post("/api/v1/config/reload"), 422, "invalid_field")
        assert body["detail"][0]["loc"] == ["tts", "default_speed"]
        assert http.get("/api/v1/config").json()["tts"]["default_speed"] == 1.75, "old config still runs"
        health = http.get("/api/v1/health").json()
        assert (health["status"], health["components"]["config_manager"]) == ("degraded", "unhealthy")
    finally:
        path.write_text(original)
        http.post("/api/v1/config/reload")
    assert http.get("/api/v1/health").json()["components"]["config_manager"] == "healthy"


def test_sighup_and_file_change_reload(server: ServerProcess, http: httpx.Client) -> None:
    path = server.config_path
    original = path.read_text()
    try:
        document = yaml.safe_load(original)
        document["chunker"] = {"idle_flush_ms": 777}
        path.write_text(yaml.safe_dump(document))
        os.kill(server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5 * TIMESCALE
        while http.get("/api/v1/config").json()["chunker"]["idle_flush_ms"] != 777:
            assert time.monotonic() < deadline, "SIGHUP / file change did not reload"
            time.sleep(0.1)
    finally:
        path.write_text(original)
        http.post("/api/v1/config/reload")


def test_save_writes_the_running_config_to_the_config_file(server: ServerProcess, http: httpx.Client) -> None:
    path = server.config_path
    original = path.read_text()
    try:
        http.post(
            "/api/v1/config", json={"chunker": {"first_chunk_chars": 40}, "server": {"max_connections": 7}}
        )
        answer = http.post("/api/v1/config/save").json()
        assert answer["status"] == "success" and answer["path"] == str(path)
        saved = yaml.safe_load(path.read_text())
        assert saved["chunker"]["first_chunk_chars"] == 40 and saved["server"]["max_connections"] == 7
        assert saved["security"]["secret_key"] == SECRET, "the file keeps the real secret"
        assert not list(path.parent.glob(".config.yaml.*.tmp"))
    finally:
        path.write_text(original)
        http.post("/api/v1/config/reload")


def test_a_save_interrupted_midway_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "streamer.yaml"
    path.write_text("tts:\n  default_speed: 1.1\n")
    manager = ConfigManager(load_settings(path, environ={}), path)
    manager.update({"tts": {"default_speed": 2.0}})

    def crash(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    # A real full disk cannot be made here: the failure is faked at the OS boundary.
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(ConfigDiskFull) as info:
        manager.save()
    assert (info.value.http_status, info.value.code) == (507, "insufficient_storage")
    assert "No space left on device" in info.value.message and info.value.details["errno"] == "ENOSPC"
    assert path.read_text() == "tts:\n  default_speed: 1.1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["streamer.yaml"], "no temp file left behind"


def test_save_never_writes_the_packaged_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamer.config import default_config_path

    manager = ConfigManager(load_settings(None, environ={}), default_config_path())
    with pytest.raises(ConfigError):
        manager.save()


def test_free_form_mappings_change_as_a_whole(tmp_path: Path) -> None:
    path = tmp_path / "streamer.yaml"
    path.write_text("openai:\n  voices: {alloy: en-us}\n")
    manager = ConfigManager(load_settings(path, environ={}), path)
    assert manager.update({"openai": {"voices": {"alloy": "en-us", "echo": "en-gb"}}})["applied"] == [
        "openai.voices"
    ]
    path.write_text("openai:\n  voices: {}\n")
    assert manager.reload()["applied"] == ["openai.voices"]
    assert manager.running.openai.voices == {}
