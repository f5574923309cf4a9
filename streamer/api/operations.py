"""What each REST operation is, for /openapi.json: summary, parameters, body, answers and their headers.

One entry per (method, path) in ``described_operations``; ``openapi.py`` puts them together with the
route table and the schemas of ``models/``. Bodies and answers are named by their model (``_ref``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from ..audio import MIME_TYPES
from ..protocol.fields import FORMATS

REF = "#/components/schemas/"


def _header(description: str, schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


HEADERS = {
    "X-Request-ID": _header(
        "The request's id (a valid incoming one is kept); the request's log lines carry it",
        {"type": "string", "minLength": 1},
    ),
    "X-Process-Time": _header(
        "Seconds until the answer started", {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$"}
    ),
    "Retry-After": _header("Seconds to wait before trying again", {"type": "string", "pattern": "^[0-9]+$"}),
    "WWW-Authenticate": _header("`Bearer`", {"type": "string"}),
}
_COMMON = ("X-Request-ID", "X-Process-Time")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _headers(*names: str, **extra: dict[str, Any]) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in (*_COMMON, *names)} | extra


def _json(schema: dict[str, Any], description: str, *headers: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _headers(*headers),
        "content": {"application/json": {"schema": schema}},
    }


def _audio(description: str, media_types: Iterable[str], **headers: dict[str, Any]) -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "description": description,
        "headers": _headers(**headers),
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
        "The body is over `limits.max_request_bytes` (`payload_too_large`), in this shape on every route.",
        (),
    ),
    "Unprocessable": ("422", "ValidationError", "A field is wrong; `detail` lists each one.", ()),
    "EngineFailed": ("500", "Error", "The engine failed on this text (`engine_error`).", ()),
    "Overloaded": ("503", "Error", "The synthesis queue is full or the server drains (`overloaded`).",
                   ("Retry-After",)),
    "OpenAIBadRequest": ("400", "OpenAIError", "Any invalid request; `error.code` says which rule.", ()),
    "OpenAIUnauthorized": ("401", "OpenAIError", "A missing or wrong API key (`invalid_api_key`).",
                           ("WWW-Authenticate",)),
    "OpenAIEngineFailed": ("500", "OpenAIError", "The engine failed before any audio was sent.", ()),
    "OpenAIOverloaded": ("503", "OpenAIError", "The synthesis queue is full or the server drains.",
                         ("Retry-After",)),
}  # fmt: skip


def error_answers(*names: str) -> dict[str, Any]:
    return {ERRORS[name][0]: {"$ref": f"#/components/responses/{name}"} for name in names}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str, description: str, **schema: Any) -> dict[str, Any]:
    # A segment: no slash (it would reach another route) and never empty.
    base = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
    return {"name": name, "in": "path", "required": True, "schema": base | schema, "description": description}


def _body(model: str, required: bool = False) -> dict[str, Any]:
    return {
        "required": required,
        "description": "JSON" if required else "JSON; an empty body is an empty object",
        "content": {"application/json": {"schema": _ref(model)}},
    }


def _op(
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
        op["requestBody"] = _body(body, body_required)
        responses = error_answers("BadRequest", "PayloadTooLarge") | responses
    if links:
        success = min(status for status in responses if status.startswith("2"))
        responses = {**responses, success: {**responses[success], "links": links}}
    op["responses"] = dict(sorted(responses.items()))
    return op


def _session_links() -> dict[str, Any]:
    by_id = {"session_id": "$response.body#/session_id"}
    return {
        name: {"operationId": target, "parameters": by_id}
        for name, target in [
            ("GetSession", "getSession"),
            ("InterruptSession", "interruptSession"),
            ("CloseSession", "closeSession"),
        ]
    }


def _audio_headers(*names: str) -> dict[str, Any]:
    described = {
        "X-Audio-Duration": ("Seconds of audio", {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$"}),
        "X-Audio-Size": ("Bytes of the body", {"type": "string", "pattern": "^[0-9]+$"}),
        "X-Audio-Sample-Rate": ("Hz", {"type": "string", "pattern": "^[0-9]+$"}),
        "X-Engine-Used": ("The engine that spoke", {"type": "string"}),
        "X-Voice-Used": ("The voice, or `name:weight,...` for a blend", {"type": "string"}),
        "X-Model": ("The `model` of the request", {"type": "string"}),
        "Content-Disposition": ("`attachment; filename=synthesis.FORMAT`", {"type": "string"}),
    }
    return {name: _header(*described[name]) for name in names}


@functools.cache
def described_operations() -> dict[tuple[str, str], dict[str, Any]]:
    """Every operation described, by (method, path)."""
    health = _op(
        "getHealth", "system", "Liveness and the state of each part", {"200": _json(_ref("Health"), "Alive")}
    )
    engine_name = _path("name", "An engine name (GET /api/v1/engines)", examples=["espeak"])
    session_id = _path("session_id", "A session id (POST /api/v1/sessions)")
    audio_types = [MIME_TYPES[f] for f in FORMATS]
    to_demo = {
        "description": "To the demo page, /demo/",
        "headers": _headers(Location=_header("Where the demo is", {"type": "string"})),
    }
    demo = _op("openDemo", "demo", "The browser demo (plays the stream live)", {"307": to_demo})
    return {
        ("GET", "/health"): health,
        ("GET", "/api/v1/health"): {**health, "operationId": "getApiHealth"},
        ("GET", "/ready"): _op(
            "getReady",
            "system",
            "Readiness for a load balancer",
            {
                "200": _json(_ref("Readiness"), "Ready to take sessions"),
                "503": _json(_ref("Readiness"), "Not ready; `failing` names the checks that fail"),
            },
        ),
        ("GET", "/api/v1/status"): _op(
            "getStatus",
            "system",
            "Server, engine, audio, pool and queue status",
            {"200": _json(_ref("ServerStatus"), "Status")},
            parameters=[
                _query("reset_loop_lag", {"type": "boolean"}, "Any value: restart the loop-lag figures")
            ],
        ),
        ("GET", "/api/v1/metrics"): _op(
            "getMetrics", "system", "Performance figures as JSON", {"200": _json(_ref("Metrics"), "Metrics")}
        ),
        ("GET", "/metrics"): _op(
            "getPrometheusMetrics",
            "system",
            "Prometheus metrics",
            {
                "200": {
                    "description": "Text exposition 0.0.4, or OpenMetrics when the Accept header asks for it",
                    "headers": _headers(),
                    "content": {
                        media_type: {"schema": {"type": "string"}}
                        for media_type in ("text/plain", "application/openmetrics-text")
                    },
                }
            },
        ),
        ("GET", "/api/v1/config"): _op(
            "getConfig",
            "config",
            "The running configuration (secrets masked)",
            {"200": _json(_ref("Settings"), "The running configuration")},
        ),
        ("POST", "/api/v1/config"): _op(
            "updateConfig",
            "config",
            "Change the configuration live",
            {"200": _json(_ref("ConfigUpdated"), "Validated and applied")} | error_answers("Unprocessable"),
            description="Validated as a whole: one bad field and nothing changes.",
            body="SettingsPatch",
        ),
        ("POST", "/api/v1/config/reload"): _op(
            "reloadConfig",
            "config",
            "Re-read the configuration file (defaults, file, environment)",
            {"200": _json(_ref("ConfigUpdated"), "Reloaded")} | error_answers("Unprocessable"),
            description="An invalid file changes nothing and answers 422.",
        ),
        ("POST", "/api/v1/config/save"): _op(
            "saveConfig",
            "config",
            "Write the configuration to its file atomically",
            {"200": _json(_ref("ConfigSaved"), "Saved")} | error_answers("Unprocessable"),
            description="Writes to --config, else $STREAMER_CONFIG, else ~/.config/streamer/config.yaml, "
            "including changes that wait for a restart.",
        ),
        ("GET", "/api/v1/voices"): _op(
            "listVoices",
            "voices",
            "Voices grouped by language",
            {"200": _json({"type": "array", "items": _ref("LanguageGroup")}, "Languages and their voices")}
            | error_answers("Unprocessable"),
            parameters=[
                _query("engine", {"type": "string", "examples": ["espeak"]}, "Default: the default engine"),
                _query("language", {"type": "string", "examples": ["en"]}, "Only this language"),
            ],
        ),
        ("GET", "/api/v1/languages"): _op(
            "listLanguages", "voices", "Languages spoken", {"200": _json(_ref("Languages"), "Languages")}
        ),
        ("GET", "/api/v1/engines"): _op(
            "listEngines",
            "voices",
            "Engines, installed or not",
            {
                "200": _json(
                    {"type": "array", "items": {"anyOf": [_ref("EngineInfo"), _ref("UnavailableEngine")]}},
                    "Engines",
                )
            },
            parameters=[
                _query("available_only", {"type": "boolean"}, "Leave out engines that cannot be used")
            ],
        ),
        ("GET", "/api/v1/engines/{name}"): _op(
            "getEngine",
            "voices",
            "One engine",
            {"200": _json(_ref("EngineInfo"), "The engine")} | error_answers("Unprocessable"),
            description="An engine that is unknown or not installed answers 422 `unknown_engine`.",
            parameters=[engine_name],
        ),
        ("GET", "/api/v1/engines/{name}/voices"): _op(
            "listEngineVoices",
            "voices",
            "One engine's voices",
            {"200": _json({"type": "array", "items": _ref("EngineVoice")}, "Voices")}
            | error_answers("Unprocessable"),
            parameters=[
                engine_name,
                _query("language", {"type": "string", "examples": ["en"]}, "Only this language"),
            ],
        ),
        ("GET", "/api/v1/formats"): _op(
            "listFormats", "voices", "Audio formats", {"200": _json(_ref("Formats"), "Formats")}
        ),
        ("POST", "/api/v1/sessions"): _op(
            "createSession",
            "sessions",
            "Create a session to attach to over the WebSocket",
            {"201": _json(_ref("SessionCreated"), "Created")} | error_answers("Unprocessable"),
            description="Attach with a WebSocket `start` message carrying `session_id` and `resume_token`. "
            "A session no client attaches to expires after `sessions.idle_timeout_s`.",
            body="SessionCreate",
            links=_session_links(),
        ),
        ("GET", "/api/v1/sessions"): _op(
            "listSessions", "sessions", "Sessions", {"200": _json(_ref("SessionList"), "Sessions")}
        ),
        ("GET", "/api/v1/sessions/{session_id}"): _op(
            "getSession",
            "sessions",
            "One session",
            {"200": _json(_ref("SessionDetails"), "The session")} | error_answers("NotFound"),
            parameters=[session_id],
        ),
        ("DELETE", "/api/v1/sessions/{session_id}"): _op(
            "closeSession",
            "sessions",
            "Close a session (its client gets a fatal `session_closed` error)",
            {"200": _json(_ref("SessionClosed"), "Closed")} | error_answers("NotFound"),
            parameters=[session_id],
        ),
        ("POST", "/api/v1/interrupt/all"): _op(
            "interruptAll",
            "sessions",
            "Interrupt every session",
            {"200": _json(_ref("AllInterrupted"), "Interrupted")},
        ),
        ("POST", "/api/v1/interrupt/{session_id}"): _op(
            "interruptSession",
            "sessions",
            "Interrupt a session (barge-in)",
            {"200": _json(_ref("SessionInterrupted"), "Interrupted")} | error_answers("NotFound"),
            description="Starts a new generation: queued text and audio are dropped and the client gets "
            "`interrupted`. `all` is not an id: it interrupts every session.",
            parameters=[_path("session_id", "A session id", **{"not": {"const": "all"}})],
        ),
        ("GET", "/"): demo,
        ("GET", "/demo"): {**demo, "operationId": "openDemoPage"},
        ("GET", "/v1/{path}"): _op(
            "openaiNotFound",
            "synthesis",
            "Any other path under /v1/: an error in OpenAI's shape",
            {
                "404": _json(_ref("OpenAIError"), "No such route (`not_found`)"),
                "405": {
                    **_json(_ref("OpenAIError"), "A route of ours, another method (`method_not_allowed`)"),
                    "headers": _headers(Allow=_header("The methods the route takes", {"type": "string"})),
                },
            },
            parameters=[
                {
                    "name": "path",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"},
                    "examples": {"route": {"value": "audio/speech"}, "unknown": {"value": "models"}},
                }
            ],
        ),
        ("POST", "/api/v1/synth"): _op(
            "synthesize",
            "synthesis",
            "Synthesize a text into one audio file",
            {
                "200": _audio(
                    "The whole file, its media type by `format` (pcm: `audio/L16;rate=R;channels=1`)",
                    audio_types,
                    **_audio_headers(
                        "X-Audio-Duration",
                        "X-Audio-Size",
                        "X-Audio-Sample-Rate",
                        "X-Engine-Used",
                        "X-Voice-Used",
                        "Content-Disposition",
                    ),
                )
            }
            | error_answers("Unprocessable", "EngineFailed", "Overloaded"),
            description="Answers once the whole text is spoken, so the size and duration headers are "
            "exact. For audio as it is made, use the WebSocket or POST /v1/audio/speech.",
            body="SynthRequest",
            body_required=True,
        ),
        ("POST", "/v1/audio/speech"): _op(
            "createSpeech",
            "synthesis",
            "OpenAI-compatible speech, streamed as it is synthesized",
            {
                "200": _audio(
                    "Audio, streamed; the media type follows `response_format`",
                    audio_types,  # response_format's six formats are ours by other names
                    **_audio_headers("X-Model", "X-Engine-Used", "X-Voice-Used", "X-Audio-Sample-Rate"),
                )
            }
            | error_answers("OpenAIBadRequest", "PayloadTooLarge", "OpenAIEngineFailed", "OpenAIOverloaded"),
            description="Works with OpenAI's SDKs. Errors are in OpenAI's shape (every invalid request "
            "is a 400), except a body over the size limit, refused before any route runs. A chunk that "
            "fails once audio has started ends the download unfinished.",
            body="SpeechRequest",
            body_required=True,
        ),
    }


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
            "headers": _headers(*headers),
            "content": {"application/json": {"schema": _ref(schema)}},
        }
        for name, (_, schema, description, headers) in ERRORS.items()
    }
