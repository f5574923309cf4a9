"""Access control: API keys on every REST route but the public ones and on both WebSocket handshakes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from starlette.routing import Mount, Route
from structlog.testing import capture_logs

from streamer.api.access import CLOSE_UNAUTHORIZED, AccessControlMiddleware
from streamer.api.app import rest_routes
from streamer.config import Settings
from streamer.security import check_key, warn_if_exposed

from .conftest import ServerProcess, running_server
from .helpers import Client

KEYS = ["k1", "k2"]
# What the issue names public: probes, the docs and the demo page (with their assets).
PUBLIC = {"/health", "/ready", "/docs", "/redoc", "/openapi.json", "/", "/demo"}
PUBLIC_PREFIXES = ("/docs/", "/redoc/", "/demo/", "/static/")


def _is_public(path: str) -> bool:
    return path in PUBLIC or path.startswith(PUBLIC_PREFIXES)


def _endpoints() -> list[tuple[str, str]]:
    """(method, concrete path) for every HTTP route the REST app has when the test runs."""
    found: set[tuple[str, str]] = set()
    for route in rest_routes():
        if isinstance(route, Route):
            path = re.sub(r"\{[^}:]+(:[^}]+)?\}", "dummy", route.path)
            path = path.replace("dummy", "0") if ":int}" in route.path else path
            for method in route.methods or ["GET"]:
                found.add((method, path))
        elif isinstance(route, Mount):
            found.add(("GET", f"{route.path}/dummy"))
    return sorted(found, key=lambda e: (e[1], e[0]))


ENDPOINTS = _endpoints()
PROTECTED = [e for e in ENDPOINTS if not _is_public(e[1])]
PUBLIC_ENDPOINTS = [e for e in ENDPOINTS if _is_public(e[1])]


def _call(
    server: ServerProcess, method: str, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return httpx.request(method, server.http_url + path, headers=headers, timeout=30, **body)  # type: ignore[arg-type]


def _assert_unauthorized(response: httpx.Response, method: str, path: str) -> None:
    assert response.status_code == 401, (method, path, response.text)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["x-request-id"]
    assert "x-process-time" in response.headers
    if method == "HEAD":
        return
    body = response.json()
    if path.startswith("/v1/"):  # OpenAI's shape, so its SDKs raise AuthenticationError
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["code"] == "invalid_api_key"
        assert body["error"]["message"]
    else:
        assert body["error_type"] == "unauthorized"
        assert body["detail"]
        assert body["request_id"] == response.headers["x-request-id"]


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = {"tts": {"engine": "espeak"}, "pool": {"workers": 1}, "security": {"api_keys": KEYS}}
    with running_server(tmp_path_factory.mktemp("keyed"), config) as server:
        yield server


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = {"tts": {"engine": "espeak"}, "pool": {"workers": 1}}
    with running_server(tmp_path_factory.mktemp("open"), config) as server:
        yield server


def test_the_route_table_is_enumerated() -> None:
    assert ("GET", "/api/v1/sessions/dummy") in ENDPOINTS
    assert ("GET", "/metrics") in PROTECTED
    assert ("GET", "/health") in PUBLIC_ENDPOINTS


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_protected_route_needs_a_valid_key(keyed_server: ServerProcess, method: str, path: str) -> None:
    _assert_unauthorized(_call(keyed_server, method, path), method, path)
    _assert_unauthorized(_call(keyed_server, method, path, {"Authorization": "Bearer k3"}), method, path)
    _assert_unauthorized(_call(keyed_server, method, path, {"X-API-Key": "k1x"}), method, path)
    _assert_unauthorized(_call(keyed_server, method, path, {"Authorization": "Basic azE6"}), method, path)
    # 404 or 422 are fine: the point is the key got the request past the gate.
    assert _call(keyed_server, method, path, {"Authorization": "Bearer k1"}).status_code != 401
    assert _call(keyed_server, method, path, {"X-API-Key": "k2"}).status_code != 401


@pytest.mark.parametrize(("method", "path"), PUBLIC_ENDPOINTS, ids=[f"{m} {p}" for m, p in PUBLIC_ENDPOINTS])
def test_public_route_needs_no_key(keyed_server: ServerProcess, method: str, path: str) -> None:
    assert _call(keyed_server, method, path).status_code != 401
    # A wrong key on a public route is not a reason to refuse it either.
    assert _call(keyed_server, method, path, {"X-API-Key": "nope"}).status_code != 401


def test_unknown_paths_are_hidden_behind_the_key(keyed_server: ServerProcess) -> None:
    _assert_unauthorized(_call(keyed_server, "GET", "/no/such/route"), "GET", "/no/such/route")
    assert _call(keyed_server, "GET", "/no/such/route", {"X-API-Key": "k1"}).status_code == 404


def test_openai_routes_answer_in_openai_error_shape(keyed_server: ServerProcess) -> None:
    # Whether or not the OpenAI-compatible routes exist yet, the gate answers for every /v1/ path.
    _assert_unauthorized(_call(keyed_server, "POST", "/v1/audio/speech"), "POST", "/v1/audio/speech")


def test_key_is_not_taken_from_the_query_on_rest(keyed_server: ServerProcess) -> None:
    response = _call(keyed_server, "GET", "/api/v1/status?api_key=k1")
    assert response.status_code == 401


def _ws_urls(server: ServerProcess) -> list[str]:
    return [server.ws_url, server.ws_url_on_http_port]


@pytest.mark.parametrize("port", ["ws", "http"])
async def test_websocket_handshake_without_a_valid_key_is_refused(
    keyed_server: ServerProcess, port: str
) -> None:
    url = keyed_server.ws_url if port == "ws" else keyed_server.ws_url_on_http_port
    for kwargs in ({}, {"additional_headers": {"Authorization": "Bearer wrong"}}):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await Client.connect(url, **kwargs)
        response = refused.value.response
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert b'"unauthorized"' in response.body
    with pytest.raises(websockets.InvalidStatus) as refused:
        await Client.connect(url + "?api_key=wrong")
    assert refused.value.response.status_code == 401
    # uvicorn logs a spurious ERROR after a denial response (Kludex/uvicorn#3138); it is filtered out.
    assert "without completing handshake" not in keyed_server.log()


@pytest.mark.parametrize("port", ["ws", "http"])
@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("?api_key=k1", {}),
        ("", {"Authorization": "Bearer k2"}),
        ("", {"X-API-Key": "k1"}),
    ],
    ids=["query", "bearer", "x-api-key"],
)
async def test_websocket_with_a_key_gets_ready(
    keyed_server: ServerProcess, port: str, query: str, headers: dict[str, str]
) -> None:
    url = keyed_server.ws_url if port == "ws" else keyed_server.ws_url_on_http_port
    async with await Client.connect(url + query, additional_headers=headers) as client:
        ready = await client.start()
        assert ready["session_id"]


def test_keys_are_read_live(keyed_server: ServerProcess) -> None:
    url = f"{keyed_server.http_url}/api/v1/config"
    try:
        response = httpx.post(url, json={"security": {"api_keys": ["k3"]}}, headers={"X-API-Key": "k1"})
        assert response.status_code == 200, response.text
        assert _call(keyed_server, "GET", "/api/v1/status", {"X-API-Key": "k1"}).status_code == 401
        assert _call(keyed_server, "GET", "/api/v1/status", {"X-API-Key": "k3"}).status_code == 200
    finally:
        for key in ("k3", "k1"):
            httpx.post(url, json={"security": {"api_keys": KEYS}}, headers={"X-API-Key": key})
    assert _call(keyed_server, "GET", "/api/v1/status", {"X-API-Key": "k1"}).status_code == 200


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_without_keys_everything_is_open(open_server: ServerProcess, method: str, path: str) -> None:
    assert _call(open_server, method, path).status_code != 401


async def test_without_keys_the_websocket_is_open(open_server: ServerProcess) -> None:
    for url in _ws_urls(open_server):
        async with await Client.connect(url) as client:
            assert (await client.start())["session_id"]


async def _refuse(extensions: dict[str, Any]) -> list[dict[str, Any]]:
    """Drive the middleware over an in-memory WebSocket handshake that carries no key."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a handshake without a key reached the app")

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/api/v1/stream", "headers": [], "extensions": extensions}
    await AccessControlMiddleware(app, lambda: KEYS)(scope, receive, send)
    return sent


async def test_websocket_refusal_is_an_http_401_where_the_server_allows_it() -> None:
    sent = await _refuse({"websocket.http.response": {}})
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 401
    assert json.loads(sent[1]["body"])["error_type"] == "unauthorized"


async def test_websocket_refusal_without_the_denial_extension_closes_with_4401() -> None:
    sent = await _refuse({})
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    event = json.loads(sent[1]["text"])
    assert (event["type"], event["code"], event["fatal"]) == ("error", "unauthorized", True)
    assert sent[2]["code"] == CLOSE_UNAUTHORIZED == 4401


def test_check_key() -> None:
    assert check_key(None, KEYS) == "missing"
    assert check_key("k2", KEYS) == "ok"
    assert check_key("k", KEYS) == "invalid"
    assert check_key("k1 ", KEYS) == "invalid"
    assert check_key("ключ", KEYS) == "invalid"  # non-ASCII compares without raising


@pytest.mark.parametrize(
    ("host", "keys", "warned"),
    [
        ("0.0.0.0", [], True),
        ("::", [], True),
        ("192.168.1.20", [], True),
        ("tts.example.com", [], True),
        ("0.0.0.0", ["k1"], False),
        ("127.0.0.1", [], False),
        ("127.0.0.2", [], False),
        ("::1", [], False),
        ("localhost", [], False),
    ],
)
def test_public_bind_without_keys_warns(host: str, keys: list[str], warned: bool) -> None:
    settings = Settings.model_validate({"server": {"host": host}, "security": {"api_keys": keys}})
    with capture_logs() as logs:
        assert warn_if_exposed(settings) is warned
    events = [e for e in logs if e["event"] == "access_control_off"]
    if warned:
        assert events == [{**events[0], "host": host, "log_level": "warning"}]
    else:
        assert events == []


@pytest.mark.parametrize(
    ("host", "wyoming", "warned"),
    [
        ("127.0.0.1", {"port": 10200}, False),
        ("127.0.0.1", {"port": 10200, "host": "0.0.0.0"}, True),
        ("0.0.0.0", {"port": 10200, "host": "127.0.0.1"}, False),  # keys cover the rest
        ("127.0.0.1", {"host": "0.0.0.0"}, False),  # the Wyoming port is off
    ],
)
def test_a_public_wyoming_port_warns_even_with_keys(host: str, wyoming: dict, warned: bool) -> None:
    settings = Settings.model_validate(
        {"server": {"host": host}, "security": {"api_keys": ["k1"]}, "wyoming": wyoming}
    )
    with capture_logs() as logs:
        assert warn_if_exposed(settings) is warned
    events = [e for e in logs if e["event"] == "access_control_off"]
    assert [e.get("port") for e in events] == ([10200] if warned else [])


def test_serve_on_all_interfaces_without_keys_logs_the_warning(
    tmp_path: Path, open_server: ServerProcess
) -> None:
    assert "access_control_off" not in open_server.log()  # loopback: no warning
    config = {"tts": {"engine": "espeak"}, "pool": {"workers": 1}}
    with running_server(tmp_path, config, args=("--host", "0.0.0.0")) as server:  # the later --host wins
        log = server.log()
    warnings = [line for line in log.splitlines() if "access_control_off" in line]
    assert len(warnings) == 1, log
    assert '"host":"0.0.0.0"' in warnings[0].replace(" ", "")


def test_public_paths_are_judged_without_the_root_path() -> None:
    from streamer.security import app_path

    assert app_path({"path": "/tts/health", "root_path": "/tts"}) == "/health"
    assert app_path({"path": "/tts", "root_path": "/tts"}) == "/"
    assert app_path({"path": "/health", "root_path": ""}) == "/health"
    assert app_path({"path": "/other/health", "root_path": "/tts"}) == "/other/health"
