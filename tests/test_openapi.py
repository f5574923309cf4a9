"""The OpenAPI description, the offline docs pages, and a bounded schemathesis run against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.testclient import TestClient

from streamer.api.app import STREAM_PATH, create_apps, rest_routes
from streamer.api.models.answers import PoolStatus
from streamer.api.openapi import openapi_document
from streamer.config import Settings
from streamer.pool import WorkerPool
from streamer.protocol.fields import CONFIG_KEYS, FORMATS
from streamer.runtime import Runtime

from .conftest import TIMESCALE, running_server

DOCS_ROUTES = {"/openapi.json", "/docs", "/redoc"}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """The REST app without its lifespan: no workers, which documents and pages do not need."""
    rest, _ = create_apps(Runtime(Settings.model_validate({"tts": {"engine": "espeak"}})))
    client = TestClient(rest, base_url="http://127.0.0.1:8080")  # not entered: no lifespan
    yield client
    client.close()


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()  # type: ignore[no-any-return]


def http_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, Route]]:
    """(method, path as OpenAPI writes it, route) of every HTTP route, Mounts followed."""
    for route in routes:
        if isinstance(route, Route):
            path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", prefix + route.path)
            for method in route.methods or ():
                if method != "HEAD":  # Starlette adds HEAD to every GET
                    yield method, path, route
        elif isinstance(route, Mount):
            yield from http_routes(route.routes, prefix + route.path)


# ---- the document ----------------------------------------------------------------------------------


def test_spec_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1.")
    OpenAPIV31SpecValidator(spec).validate()
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_served_spec_is_the_route_table_described(spec: dict[str, Any]) -> None:
    assert spec == openapi_document(rest_routes())


def test_every_route_is_described(spec: dict[str, Any]) -> None:
    routes = rest_routes()
    seen = set()
    for method, path, route in http_routes(routes):
        if not route.include_in_schema:
            assert path in DOCS_ROUTES or path.startswith("/v1/"), f"{path} is left out of the spec"
            continue
        op = spec["paths"].get(path, {}).get(method.lower())
        assert op is not None, f"{method} {path} is missing from the spec"
        assert not op.get("x-undescribed"), f"{method} {path} is not described in streamer/api/operations.py"
        seen.add((method.lower(), path))
    documented = {(m, p) for p, item in spec["paths"].items() for m in item}
    assert documented == seen, "the spec describes routes the app does not have"
    websockets = [r.path for r in routes if isinstance(r, WebSocketRoute)]
    assert websockets == [STREAM_PATH]
    assert [w["path"] for w in spec["x-websocket"]] == websockets
    assert STREAM_PATH in spec["info"]["description"]


def test_docs_routes_are_served_but_not_described(spec: dict[str, Any]) -> None:
    paths = {path for _, path, _ in http_routes(rest_routes())}
    assert paths >= DOCS_ROUTES
    assert not DOCS_ROUTES & set(spec["paths"])
    assert any(isinstance(r, Mount) and r.path == "/docs/assets" for r in rest_routes())


def test_bodies_and_errors_are_described(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    patch = paths["/api/v1/config"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert patch == {"$ref": "#/components/schemas/SettingsPatch"}
    schemas = spec["components"]["schemas"]
    assert schemas["SettingsPatch"]["additionalProperties"] is False
    assert "required" not in schemas["SettingsPatch"]
    assert set(schemas["Settings"]["required"]) == set(Settings.model_fields)
    assert schemas["SessionCreate"]["additionalProperties"] is False
    for path, method, status in [
        ("/api/v1/sessions/{session_id}", "get", "404"),
        ("/api/v1/sessions", "post", "422"),
        ("/api/v1/sessions", "post", "413"),
        ("/api/v1/config", "post", "400"),
        ("/api/v1/config", "get", "401"),
    ]:
        assert status in paths[path][method]["responses"], (method, path, status)
    assert "security" not in paths["/health"]["get"]["responses"]
    assert paths["/health"]["get"]["security"] == []
    error = spec["components"]["responses"]["NotFound"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    assert set(schemas["Error"]["required"]) == {"detail", "error_type", "request_id"}
    assert schemas["ValidationError"]["properties"]["detail"]["type"] == "array"


def test_request_bodies_are_the_models_that_validate_them(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert list(schemas["SessionCreate"]["properties"]) == list(CONFIG_KEYS)
    synth = schemas["SynthRequest"]
    assert synth["additionalProperties"] is False and synth["required"] == ["text"]
    for alias, name in [("speed", "rate"), ("language", "lang")]:
        assert synth["properties"][alias]["anyOf"] == synth["properties"][name]["anyOf"]
        assert f"`{name}`" in synth["properties"][alias]["description"]
    assert "additionalProperties" not in schemas["SpeechRequest"]  # fields OpenAI adds later are ignored
    assert schemas["SynthRequest"]["properties"]["format"]["anyOf"][0]["enum"] == list(FORMATS)


def test_the_status_answer_takes_the_pool_status_as_the_pool_gives_it() -> None:
    pool = WorkerPool(workers=1, engines_settings={}, preload=["espeak"], max_queue=4).status()
    pool["load_errors"] = {0: {"melo": "not installed"}}  # keyed by worker index, as the pool keys it
    answer = PoolStatus.model_validate(pool).model_dump(mode="json")
    assert answer["load_errors"] == {"0": {"melo": "not installed"}}


def test_a_root_path_becomes_the_server_url() -> None:
    document = openapi_document(rest_routes(), root_path="/tts")
    assert document["servers"] == [{"url": "/tts"}]
    assert "servers" not in openapi_document(rest_routes())


def test_an_undescribed_route_still_appears_marked() -> None:
    async def extra(request: Any) -> None:
        """Something new."""

    document = openapi_document([*rest_routes(), Route("/api/v1/new/{thing:int}", extra, methods=["PUT"])])
    op = document["paths"]["/api/v1/new/{thing}"]["put"]
    assert op["x-undescribed"] is True
    assert op["summary"] == "Something new."
    OpenAPIV31SpecValidator(document).validate()


# ---- the docs pages ----------------------------------------------------------------------------------


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href", "spec-url") and value]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_page_loads_only_from_this_server(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    # No URL with a host at all: the page works offline, under any root path.
    assert "http://" not in response.text and "https://" not in response.text and "//" not in response.text
    policy = dict(
        (directive.split()[0], directive.split()[1:])
        for directive in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == ["'none'"]
    for sources in policy.values():
        assert set(sources) <= {"'self'", "'none'", "'unsafe-inline'", "data:", "blob:"}, sources
    parser = _References()
    parser.feed(response.text)
    assert len(parser.urls) >= 2
    for url in parser.urls:
        asset = client.get(urljoin(str(response.url), url))
        assert asset.status_code == 200, url
        assert asset.content, url


def test_swagger_ui_reads_the_local_spec_without_the_online_validator(client: TestClient) -> None:
    init = client.get("/docs/assets/swagger-init.js").text
    assert 'url: "openapi.json"' in init
    assert "validatorUrl: null" in init
    assert client.get(urljoin(str(client.get("/docs").url), "openapi.json")).status_code == 200


def test_vendored_assets_keep_their_licences() -> None:
    assets = Path(__file__).resolve().parent.parent / "streamer" / "api" / "docs_assets"
    for name in ["swagger-ui.LICENSE", "swagger-ui.NOTICE", "redoc.LICENSE", "README.md"]:
        assert (assets / name).is_file(), name
    assert not list(assets.glob("*.map"))


# ---- schemathesis against a real server ---------------------------------------------------------------

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "allow_header_conformance",
    "error_body_shape",  # ours, in HOOKS: every 4xx, documented or not, in the error shape of its API
]
CONFIG_OPERATIONS = ["updateConfig", "reloadConfig", "saveConfig"]
# Examples per operation: bounded for CI; scripts/fuzz.py --api-examples N runs longer.
API_EXAMPLES = int(os.environ.get("STREAMER_API_FUZZ_EXAMPLES", "20"))
# Loaded by the schemathesis process (SCHEMATHESIS_HOOKS).
HOOKS = """
import schemathesis

# Each rule twice: the coverage phase applies the case hooks, the other phases the per-part ones.


def _is_interrupt_all(operation, path_parameters):
    # "all" reaches POST /api/v1/interrupt/all: another operation, with its own answer.
    return (
        operation.path == "/api/v1/interrupt/{session_id}"
        and (path_parameters or {}).get("session_id") == "all"
    )


def _without_keys(operation, body):
    # API keys set by a generated patch would make every later request a 401, testing nothing.
    if operation.path == "/api/v1/config" and isinstance(body, dict):
        return {key: value for key, value in body.items() if key != "security"}
    return body


@schemathesis.hook
def filter_case(ctx, case):
    return not _is_interrupt_all(case.operation, case.path_parameters)


@schemathesis.hook
def filter_path_parameters(ctx, path_parameters):
    return ctx.operation is None or not _is_interrupt_all(ctx.operation, path_parameters)


@schemathesis.hook
def map_case(ctx, case):
    case.body = _without_keys(case.operation, case.body)
    return case


@schemathesis.hook
def map_body(ctx, body):
    return body if ctx.operation is None else _without_keys(ctx.operation, body)


@schemathesis.check
def error_body_shape(ctx, response, case):
    if not 400 <= response.status_code < 500:
        return None
    body = response.json()
    if case.operation.path.startswith("/v1/"):  # OpenAI's shape
        assert set(body) == {"error"}, body
        assert {"message", "type", "param", "code"} <= set(body["error"]), body
    else:  # ours: Error or ValidationError
        assert isinstance(body.get("detail"), (str, list)), body
        assert isinstance(body.get("error_type"), str) and isinstance(body.get("request_id"), str), body
    return None
"""


def schemathesis_run(url: str, tmp: Path, max_examples: int, *selection: str) -> str:
    (tmp / "st_hooks.py").write_text(HOOKS)
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
        "--checks", ",".join(CHECKS),
        "--max-examples", str(max_examples),
        "--seed", "20240601",
        "--workers", "2",
        "--request-timeout", str(30 * TIMESCALE),
        "--generation-database", "none",
        # Generation that discards many values is slow, not wrong: not a reason to fail.
        "--suppress-health-check", "filter_too_much",
        "--no-color",
        "--output-truncate", "false",
        *selection,
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "st_hooks", "PYTHONPATH": str(tmp)}
    done = subprocess.run(
        command, cwd=tmp, env=env, capture_output=True, text=True, timeout=300 * TIMESCALE, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    generated = re.search(r"(\d+) generated", output)
    assert generated and int(generated.group(1)) >= 50, output
    return output


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    config = {"tts": {"engine": "espeak"}, "pool": {"workers": 1}, "audio": {"default_format": "pcm"}}
    with running_server(tmp_path, config) as server:
        # The configuration last: its generated patches may change limits the other operations meet.
        exclude = [arg for op in CONFIG_OPERATIONS for arg in ("--exclude-operation-id", op)]
        schemathesis_run(server.http_url, tmp_path, API_EXAMPLES, *exclude)
        include = [arg for op in CONFIG_OPERATIONS for arg in ("--include-operation-id", op)]
        # No stateful phase: no links among these.
        schemathesis_run(
            server.http_url, tmp_path, API_EXAMPLES, *include, "--phases", "examples,coverage,fuzzing"
        )
        assert httpx.get(f"{server.http_url}/health", timeout=5).status_code == 200
        assert server.config_path.read_text().startswith("# Saved by streamer")  # the throw-away file
