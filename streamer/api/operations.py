"""What each REST operation is, for /openapi.json: summary, parameters, body, answers and their headers.

One entry per (method, path) in ``described_operations``; ``openapi.py`` puts them together with the
route table and the schemas of ``models/``. Bodies and answers are named by their model (``ref``);
the pieces they are made of are in ``schema_parts.py``.
"""

from __future__ import annotations

import functools
from typing import Any

from ..audio import MIME_TYPES
from ..protocol.fields import FORMATS
from .schema_parts import (
    audio_answer,
    audio_headers,
    error_answers,
    header,
    header_refs,
    json_answer,
    operation,
    path_param,
    query,
    ref,
)


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


@functools.cache
def described_operations() -> dict[tuple[str, str], dict[str, Any]]:
    """Every operation described, by (method, path)."""
    health = operation(
        "getHealth",
        "system",
        "Liveness and the state of each part",
        {"200": json_answer(ref("Health"), "Alive")},
    )
    engine_name = path_param("name", "An engine name (GET /api/v1/engines)", examples=["espeak"])
    session_id = path_param("session_id", "A session id (POST /api/v1/sessions)")
    audio_types = [MIME_TYPES[f] for f in FORMATS]
    to_demo = {
        "description": "To the demo page, /demo/",
        "headers": header_refs(Location=header("Where the demo is", {"type": "string"})),
    }
    demo = operation("openDemo", "demo", "The browser demo (plays the stream live)", {"307": to_demo})
    return {
        ("GET", "/health"): health,
        ("GET", "/api/v1/health"): {**health, "operationId": "getApiHealth"},
        ("GET", "/ready"): operation(
            "getReady",
            "system",
            "Readiness for a load balancer",
            {
                "200": json_answer(ref("Readiness"), "Ready to take sessions"),
                "503": json_answer(ref("Readiness"), "Not ready; `failing` names the checks that fail"),
            },
        ),
        ("GET", "/api/v1/status"): operation(
            "getStatus",
            "system",
            "Server, engine, audio, pool and queue status",
            {"200": json_answer(ref("ServerStatus"), "Status")},
            parameters=[
                query("reset_loop_lag", {"type": "boolean"}, "Any value: restart the loop-lag figures")
            ],
        ),
        ("GET", "/api/v1/metrics"): operation(
            "getMetrics",
            "system",
            "Performance figures as JSON",
            {"200": json_answer(ref("Metrics"), "Metrics")},
        ),
        ("GET", "/metrics"): operation(
            "getPrometheusMetrics",
            "system",
            "Prometheus metrics",
            {
                "200": {
                    "description": "Text exposition 0.0.4, or OpenMetrics when the Accept header asks for it",
                    "headers": header_refs(),
                    "content": {
                        media_type: {"schema": {"type": "string"}}
                        for media_type in ("text/plain", "application/openmetrics-text")
                    },
                }
            },
        ),
        ("GET", "/api/v1/config"): operation(
            "getConfig",
            "config",
            "The running configuration (secrets masked)",
            {"200": json_answer(ref("Settings"), "The running configuration")},
        ),
        ("POST", "/api/v1/config"): operation(
            "updateConfig",
            "config",
            "Change the configuration live",
            {"200": json_answer(ref("ConfigUpdated"), "Validated and applied")}
            | error_answers("Unprocessable"),
            description="Validated as a whole: one bad field and nothing changes.",
            body="SettingsPatch",
        ),
        ("POST", "/api/v1/config/reload"): operation(
            "reloadConfig",
            "config",
            "Re-read the configuration file (defaults, file, environment)",
            {"200": json_answer(ref("ConfigUpdated"), "Reloaded")} | error_answers("Unprocessable"),
            description="An invalid file changes nothing and answers 422.",
        ),
        ("POST", "/api/v1/config/save"): operation(
            "saveConfig",
            "config",
            "Write the configuration to its file atomically",
            {"200": json_answer(ref("ConfigSaved"), "Saved")}
            | error_answers("Unprocessable", "ConfigNotWritable", "InsufficientStorage", "SaveFailed"),
            description="Writes to --config, else $STREAMER_CONFIG, else ~/.config/streamer/config.yaml, "
            "including changes that wait for a restart. A failed save leaves the file as it was and "
            "says why.",
        ),
        ("GET", "/api/v1/voices"): operation(
            "listVoices",
            "voices",
            "Voices grouped by language",
            {
                "200": json_answer(
                    {"type": "array", "items": ref("LanguageGroup")}, "Languages and their voices"
                )
            }
            | error_answers("Unprocessable"),
            parameters=[
                query("engine", {"type": "string", "examples": ["espeak"]}, "Default: the default engine"),
                query("language", {"type": "string", "examples": ["en"]}, "Only this language"),
            ],
        ),
        ("GET", "/api/v1/languages"): operation(
            "listLanguages", "voices", "Languages spoken", {"200": json_answer(ref("Languages"), "Languages")}
        ),
        ("GET", "/api/v1/engines"): operation(
            "listEngines",
            "voices",
            "Engines, installed or not",
            {
                "200": json_answer(
                    {"type": "array", "items": {"anyOf": [ref("EngineInfo"), ref("UnavailableEngine")]}},
                    "Engines",
                )
            },
            parameters=[
                query("available_only", {"type": "boolean"}, "Leave out engines that cannot be used")
            ],
        ),
        ("GET", "/api/v1/engines/{name}"): operation(
            "getEngine",
            "voices",
            "One engine",
            {"200": json_answer(ref("EngineInfo"), "The engine")} | error_answers("Unprocessable"),
            description="An engine that is unknown or not installed answers 422 `unknown_engine`.",
            parameters=[engine_name],
        ),
        ("GET", "/api/v1/engines/{name}/voices"): operation(
            "listEngineVoices",
            "voices",
            "One engine's voices",
            {"200": json_answer({"type": "array", "items": ref("EngineVoice")}, "Voices")}
            | error_answers("Unprocessable"),
            parameters=[
                engine_name,
                query("language", {"type": "string", "examples": ["en"]}, "Only this language"),
            ],
        ),
        ("GET", "/api/v1/formats"): operation(
            "listFormats", "voices", "Audio formats", {"200": json_answer(ref("Formats"), "Formats")}
        ),
        ("POST", "/api/v1/sessions"): operation(
            "createSession",
            "sessions",
            "Create a session to attach to over the WebSocket",
            {"201": json_answer(ref("SessionCreated"), "Created")}
            | error_answers("Unprocessable", "TooManySessions"),
            description="Attach with a WebSocket `start` message carrying `session_id` and `resume_token`. "
            "A session no client attaches to expires after `sessions.idle_timeout_s`. While the server "
            "holds `sessions.max_sessions` sessions, a new one is refused (503 `too_many_sessions`).",
            body="SessionCreate",
            links=_session_links(),
        ),
        ("GET", "/api/v1/sessions"): operation(
            "listSessions",
            "sessions",
            "Sessions, a page at a time",
            {"200": json_answer(ref("SessionList"), "One page of sessions")} | error_answers("Unprocessable"),
            description="Oldest first. `total` counts every session; `next_offset` is where the next page "
            "starts (null on the last). Sessions created or closed between pages shift the offsets.",
            parameters=[
                query(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    "Sessions on the page",
                ),
                query(
                    "offset",
                    {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0},
                    "Sessions to skip",
                ),
            ],
        ),
        ("GET", "/api/v1/sessions/{session_id}"): operation(
            "getSession",
            "sessions",
            "One session",
            {"200": json_answer(ref("SessionDetails"), "The session")} | error_answers("NotFound"),
            parameters=[session_id],
        ),
        ("DELETE", "/api/v1/sessions/{session_id}"): operation(
            "closeSession",
            "sessions",
            "Close a session (its client gets a fatal `session_closed` error)",
            {"200": json_answer(ref("SessionClosed"), "Closed")} | error_answers("NotFound"),
            parameters=[session_id],
        ),
        ("POST", "/api/v1/interrupt/all"): operation(
            "interruptAll",
            "sessions",
            "Interrupt every session",
            {"200": json_answer(ref("AllInterrupted"), "Interrupted")},
        ),
        ("POST", "/api/v1/interrupt/{session_id}"): operation(
            "interruptSession",
            "sessions",
            "Interrupt a session (barge-in)",
            {"200": json_answer(ref("SessionInterrupted"), "Interrupted")} | error_answers("NotFound"),
            description="Starts a new generation: queued text and audio are dropped and the client gets "
            "`interrupted`. `all` is not an id: it interrupts every session.",
            parameters=[path_param("session_id", "A session id", **{"not": {"const": "all"}})],
        ),
        ("GET", "/"): demo,
        ("GET", "/demo"): {**demo, "operationId": "openDemoPage"},
        ("GET", "/v1/{path}"): operation(
            "openaiNotFound",
            "synthesis",
            "Any other path under /v1/: an error in OpenAI's shape",
            {
                "404": json_answer(ref("OpenAIError"), "No such route (`not_found`)"),
                "405": {
                    **json_answer(
                        ref("OpenAIError"), "A route of ours, another method (`method_not_allowed`)"
                    ),
                    "headers": header_refs(Allow=header("The methods the route takes", {"type": "string"})),
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
        ("POST", "/api/v1/synth"): operation(
            "synthesize",
            "synthesis",
            "Synthesize a text into one audio file",
            {
                "200": audio_answer(
                    "The whole file, its media type by `format` (pcm: `audio/L16;rate=R;channels=1`)",
                    audio_types,
                    **audio_headers(
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
        ("POST", "/v1/audio/speech"): operation(
            "createSpeech",
            "synthesis",
            "OpenAI-compatible speech, streamed as it is synthesized",
            {
                "200": audio_answer(
                    "Audio, streamed; the media type follows `response_format`",
                    audio_types,  # response_format's six formats are ours by other names
                    **audio_headers("X-Model", "X-Engine-Used", "X-Voice-Used", "X-Audio-Sample-Rate"),
                )
            }
            | error_answers(
                "OpenAIBadRequest", "OpenAIPayloadTooLarge", "OpenAIEngineFailed", "OpenAIOverloaded"
            ),
            description="Works with OpenAI's SDKs. Errors are in OpenAI's shape (every invalid request "
            "is a 400, except a body over the size limit: 413). A chunk that fails once audio has "
            "started ends the download unfinished.",
            body="SpeechRequest",
            body_required=True,
        ),
    }
