"""The OpenAPI 3.1 description of the REST API, served at /openapi.json, built from the route table.

Every route gets the operation ``operations.py`` describes for its (method, path); a route nobody
described yet still appears, marked ``x-undescribed`` (the tests fail on it), and a description whose
route is not mounted is left out. The schemas are the models of ``models/`` that check and build the
bodies (every public one is a component: request bodies as validated, answers as serialised) and, for
the configuration, the ``Settings`` model itself: JSON Schema 2020-12, as 3.1 wants. The pages that
render the document are ``docs_pages.py``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from .. import __version__
from ..config import Settings
from ..config_manager import RESTART_KEYS
from ..security import OPENAI_PREFIX, is_public
from . import operations, schema_parts
from .models import answers, bodies
from .schema_parts import REF


def _each_object(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        if "properties" in schema:
            yield schema
        for value in schema.values():
            yield from _each_object(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _each_object(value)


def _settings_schemas() -> dict[str, Any]:
    """``Settings`` as GET /config answers it (every key) and ``SettingsPatch``, any part of it."""
    full = Settings.model_json_schema(mode="serialization", ref_template=REF + "{model}")
    patch = Settings.model_json_schema(mode="validation", ref_template=REF + "{model}Patch")
    schemas = {**full.pop("$defs"), "Settings": full}
    for obj in _each_object(schemas):
        obj["required"] = list(obj["properties"])
    patches = {f"{name}Patch": s for name, s in patch.pop("$defs").items()} | {"SettingsPatch": patch}
    for obj in _each_object([schemas, patches]):
        device = obj["properties"].get("device")
        if device and device.get("type") == "string":  # a field validator JSON Schema cannot see
            device["pattern"] = r"^(auto|cpu|cuda|mps|cuda:[0-9]+)$"
    patch["description"] = (
        "Any part of the configuration. Sections merge key by key; lists and values replace. "
        f"Keys read once at start ({', '.join(RESTART_KEYS)}) are kept for `save` and take effect "
        "after a restart. Masked secrets posted back unchanged keep their values."
    )
    return schemas | patches


@functools.cache
def component_schemas() -> dict[str, Any]:
    modes = [
        (model, "validation" if module is bodies else "serialization")
        for module in (bodies, answers)
        for name, model in vars(module).items()
        if isinstance(model, type) and issubclass(model, BaseModel) and model.__module__ == module.__name__
        and not name.startswith("_") and model not in (bodies.RequestBody, answers.Answer)
    ]  # fmt: skip
    _, defs = models_json_schema(modes, ref_template=REF + "{model}")
    return {**defs["$defs"], **_settings_schemas()}


# ---- the document --------------------------------------------------------------------------------------

DESCRIPTION = """\
Every answer carries `X-Request-ID` (a valid incoming one is kept) and `X-Process-Time`. Every error
is `{"detail", "error_type", "request_id"}`; a 422's `detail` lists `{"loc", "msg"}` per bad field.

**Streaming** happens on the WebSocket at `/api/v1/stream`, on `server.websocket_port` and on this port
too (see `x-websocket`): the client sends `start`, then `text` (with `flush`), `flush`, `interrupt`,
`config`, `end` and `ping` messages as JSON text or msgpack binary frames; the server answers `ready`,
then `audio`, `chunk_start`, `chunk_end`, `done`, `interrupted`, `error` and `pong`. Audio frames are
msgpack. Sessions created here are attached to with `start` carrying `session_id` and `resume_token`.
"""


def _endpoints(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, BaseRoute]]:
    """(method, OpenAPI path, route) of every HTTP route in the schema, Mounts followed."""
    for route in routes:
        if isinstance(route, Route) and route.include_in_schema:
            path = re.sub(r"\{([^}:]+)(:[^}]+)?\}", r"{\1}", prefix + route.path)
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield method, path, route
        elif isinstance(route, Mount) and route.routes:
            yield from _endpoints(route.routes, prefix + route.path)


def _undescribed(method: str, path: str, route: BaseRoute) -> dict[str, Any]:
    doc = (getattr(route, "endpoint", None).__doc__ or "").strip().splitlines()  # type: ignore[union-attr]
    slug = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    return {
        "operationId": f"{method.lower()}_{slug}",
        "summary": doc[0] if doc else getattr(route, "name", path),
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{([^}]+)\}", path)
        ],
        "responses": {"default": {"description": "Not described yet"}},
        "x-undescribed": True,
    }


def _guarded(path: str, op: dict[str, Any]) -> dict[str, Any]:
    """The operation with what access control adds: a 401 unless the path is public."""
    if is_public(path):
        return {**op, "security": []}
    name = "OpenAIUnauthorized" if path.startswith(OPENAI_PREFIX) else "Unauthorized"
    return {**op, "responses": dict(sorted((op["responses"] | schema_parts.error_answers(name)).items()))}


def openapi_document(routes: Iterable[BaseRoute], root_path: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the HTTP routes given, WebSocket routes under ``x-websocket``."""
    routes = list(routes)
    described = operations.described_operations()
    paths: dict[str, dict[str, Any]] = {}
    for method, path, route in _endpoints(routes):
        op = described.get((method, path)) or _undescribed(method, path, route)
        paths.setdefault(path, {})[method.lower()] = _guarded(path, op)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "streamer",
            "version": __version__,
            "summary": "Real-time text-to-speech streaming server",
            "description": DESCRIPTION,
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": schema_parts.TAGS,
        # Keys are needed only when `security.api_keys` is set: hence the empty alternative.
        "security": [{}, {"bearer": []}, {"apiKey": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": component_schemas(),
            "responses": schema_parts.error_components(),
            "headers": schema_parts.HEADERS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key as a bearer token"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "x-websocket": [
            {
                "path": route.path,
                "ports": ["server.websocket_port", "server.http_port"],
                "description": "The streaming protocol: text in, audio frames and events out, barge-in. "
                "With API keys set, the handshake needs one (headers, or `?api_key=` on the URL).",
            }
            for route in routes
            if isinstance(route, WebSocketRoute)
        ],
    }
    if root_path:
        document["servers"] = [{"url": root_path}]
    return document


# ---- routes --------------------------------------------------------------------------------------------


async def openapi_json(request: Request) -> Response:
    routes = request.app.routes
    document = openapi_document(routes, request.scope.get("root_path", ""))
    return Response(orjson.dumps(document), media_type="application/json")


routes: list[BaseRoute] = [
    Route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False),
]
