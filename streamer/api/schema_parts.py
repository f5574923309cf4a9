"""The pieces operations are written with: headers, shared error answers, parameters, bodies, answers.

``operations.py`` describes each REST operation with these; ``openapi.py`` puts the shared ones
(``HEADERS``, ``error_components()``, ``TAGS``) into the document's components.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

REF = "#/components/schemas/"


def header(description: str, schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


HEADERS = {
    "X-Request-ID": header(
        "The request's id (a valid incoming one is kept); the request's log lines carry it",
        {"type": "string", "minLength": 1},
    ),
    "X-Process-Time": header(
        "Seconds until the answer started", {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$"}
    ),
    "Retry-After": header("Seconds to wait before trying again", {"type": "string", "pattern": "^[0-9]+$"}),
    "WWW-Authenticate": header("`Bearer`", {"type": "string"}),
}
COMMON_HEADERS = ("X-Request-ID", "X-Process-Time")


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def header_refs(*names: str, **extra: dict[str, Any]) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in (*COMMON_HEADERS, *names)} | extra


def json_answer(schema: dict[str, Any], description: str, *headers: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": header_refs(*headers),
        "content": {"application/json": {"schema": schema}},
    }


def audio_answer(description: str, media_types: Iterable[str], **headers: dict[str, Any]) -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "description": description,
        "headers": header_refs(**headers),
        "content": {media_type: binary for media_type in media_types},
    }


# Shared error answers: name -> (status, body schema, description, extra headers).
ERRORS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "BadRequest": ("400", "Error", "The body is not valid JSON (`invalid_message`).", ()),
    "Unauthorized": (
        "401",
        "Error",
        "API keys are configured and the request carries none, or a wrong one (`unauthorized`).",
        ("WWW-Authenticate",),
    ),
    "NotFound": ("404", "Error", "No such resource (`not_found`, `session_not_found`).", ()),
    "PayloadTooLarge": (
        "413",
        "Error",
        "The body is over `limits.max_request_bytes` (`payload_too_large`), however it is framed.",
        (),
    ),
    "Unprocessable": ("422", "ValidationError", "A field is wrong; `detail` lists each one.", ()),
    "EngineFailed": ("500", "Error", "The engine failed on this text (`engine_error`).", ()),
    "Overloaded": ("503", "Error", "The synthesis queue is full or the server drains (`overloaded`).",
                   ("Retry-After",)),
    "TooManySessions": ("503", "Error", "The server holds `sessions.max_sessions` sessions "
                        "(`too_many_sessions`); one must close or expire first.", ("Retry-After",)),
    "ConfigNotWritable": ("409", "Error", "The file or its folder cannot be written (`config_not_writable`); "
                          "the file is unchanged.", ()),
    "InsufficientStorage": ("507", "Error", "No space left where the file lives (`insufficient_storage`); "
                            "the file is unchanged.", ()),
    "SaveFailed": ("500", "Error", "Another system error while writing (`config_save_failed`); "
                   "the file is unchanged.", ()),
    "OpenAIBadRequest": ("400", "OpenAIError", "Any invalid request; `error.code` says which rule.", ()),
    "OpenAIPayloadTooLarge": ("413", "OpenAIError", "The body is over `limits.max_request_bytes` "
                              "(`payload_too_large`), however it is framed.", ()),
    "OpenAIUnauthorized": ("401", "OpenAIError", "A missing or wrong API key (`invalid_api_key`).",
                           ("WWW-Authenticate",)),
    "OpenAIEngineFailed": ("500", "OpenAIError", "The engine failed before any audio was sent.", ()),
    "OpenAIOverloaded": ("503", "OpenAIError", "The synthesis queue is full or the server drains.",
                         ("Retry-After",)),
}  # fmt: skip


def error_answers(*names: str) -> dict[str, Any]:
    return {ERRORS[name][0]: {"$ref": f"#/components/responses/{name}"} for name in names}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def path_param(name: str, description: str, **schema: Any) -> dict[str, Any]:
    # A segment: no slash (it would reach another route) and never empty.
    base = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
    return {"name": name, "in": "path", "required": True, "schema": base | schema, "description": description}


def json_body(model: str, required: bool = False) -> dict[str, Any]:
    return {
        "required": required,
        "description": "JSON" if required else "JSON; an empty body is an empty object",
        "content": {"application/json": {"schema": ref(model)}},
    }


def operation(
    operation_id: str,
    tag: str,
    summary: str,
    responses: dict[str, Any],
    description: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
    body_required: bool = False,
    links: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An operation; one with a JSON ``body`` also answers 400 and 413."""
    op: dict[str, Any] = {"operationId": operation_id, "tags": [tag], "summary": summary}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = json_body(body, body_required)
        responses = error_answers("BadRequest", "PayloadTooLarge") | responses
    if links:
        success = min(status for status in responses if status.startswith("2"))
        responses = {**responses, success: {**responses[success], "links": links}}
    op["responses"] = dict(sorted(responses.items()))
    return op


def audio_headers(*names: str) -> dict[str, Any]:
    described = {
        "X-Audio-Duration": ("Seconds of audio", {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$"}),
        "X-Audio-Size": ("Bytes of the body", {"type": "string", "pattern": "^[0-9]+$"}),
        "X-Audio-Sample-Rate": ("Hz", {"type": "string", "pattern": "^[0-9]+$"}),
        "X-Engine-Used": ("The engine that spoke", {"type": "string"}),
        "X-Voice-Used": ("The voice, or `name:weight,...` for a blend", {"type": "string"}),
        "X-Model": ("The `model` of the request", {"type": "string"}),
        "Content-Disposition": ("`attachment; filename=synthesis.FORMAT`", {"type": "string"}),
    }
    return {name: header(*described[name]) for name in names}


TAGS = [
    {"name": "system", "description": "Health, readiness, status and metrics"},
    {"name": "config", "description": "The live configuration"},
    {"name": "voices", "description": "Engines, voices, languages and audio formats"},
    {"name": "sessions", "description": "Streaming sessions and barge-in"},
    {"name": "synthesis", "description": "Text to audio over HTTP"},
    {"name": "demo", "description": "The browser demo page"},
]


def error_components() -> dict[str, Any]:
    """The shared error answers, as the document's ``components.responses``."""
    return {
        name: {
            "description": description,
            "headers": header_refs(*headers),
            "content": {"application/json": {"schema": ref(schema)}},
        }
        for name, (_, schema, description, headers) in ERRORS.items()
    }
