"""Sessions and interrupts over REST: the same registry and barge-in as the WebSocket."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..protocol import SessionConfig, error_event
from ..runtime import Runtime
from ..session.connection import CLOSE_NORMAL
from ..session.state import Session
from .http import by_method, fields_named, read_object
from .models.bodies import SessionCreate
from .system import runtime_of


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def session_config(runtime: Runtime, session: Session) -> dict[str, Any]:
    voice = session.voice
    voice_id = None
    if isinstance(voice.voice, str):
        found = runtime.catalog.find(voice.engine, voice.voice)
        voice_id = runtime.catalog.voice_id(found) if found else None
    return {
        "language": voice.language,
        "voice_id": voice_id,
        "voice": voice.voice,
        "engine": voice.engine,
        "format": session.format,
        "sample_rate": session.sample_rate,
        "speed": session.speed,
    }


def summary(runtime: Runtime, session: Session) -> dict[str, Any]:
    return {
        "session_id": session.id,
        "created_at": iso(session.created_at),
        "last_activity": iso(session.last_activity),
        "is_active": True,
        "connected": session.connected,
    }


def details(runtime: Runtime, session: Session) -> dict[str, Any]:
    connection = session.connection
    return {
        **summary(runtime, session),
        "config": session_config(runtime, session),
        "generation": session.generation,
        "last_seq": session.last_seq,
        "text_offset": session.chunker.offset,
        "chunks_queued": connection.chunks_queued if connection else 0,
        "chunks_done": session.chunks_done,
        "audio_seconds_sent": round(session.audio_ms_sent / 1000, 3),
    }


async def create_session(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    body = SessionCreate.parse(await read_object(request))
    with fields_named(engine="engine", voice="voice", language="language", fmt="format"):
        session = runtime.new_session(SessionConfig(**body.model_dump()))
    scheme = "wss" if request.url.scheme == "https" else "ws"
    root = request.scope.get("root_path", "")
    if root:
        # Behind a proxy that serves the app under a prefix: the internal WebSocket port is not what
        # the client can reach, but the same origin and prefix are (the REST port serves the stream too).
        ws_url = f"{scheme}://{request.url.netloc}{root}/api/v1/stream"
    else:
        ws_url = f"{scheme}://{request.url.hostname or '127.0.0.1'}:{runtime.ws_port}/api/v1/stream"
    answer = {**details(runtime, session), "resume_token": runtime.sessions.token(session), "ws_url": ws_url}
    return JSONResponse(answer, status_code=201)


async def list_sessions(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    sessions = [summary(runtime, s) for s in runtime.sessions.sessions.values()]
    return JSONResponse({"sessions": sessions, "total": len(sessions)})


async def get_session(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    return JSONResponse(details(runtime, runtime.sessions.get(request.path_params["session_id"])))


async def delete_session(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    session = runtime.sessions.get(request.path_params["session_id"])
    runtime.sessions.remove(session.id)
    if session.connection is not None:
        session.connection.close_soon(
            CLOSE_NORMAL,
            "session closed",
            error_event("session_closed", "the session was closed through the REST API", True),
        )
    return JSONResponse({"status": "success", "message": f"Session {session.id} closed"})


def interrupt(runtime: Runtime, session: Session) -> None:
    if session.connection is not None:
        session.connection.interrupt()
    else:
        session.generation += 1  # nothing is speaking; a later resume starts after this generation


async def interrupt_one(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    session = runtime.sessions.get(request.path_params["session_id"])
    interrupt(runtime, session)
    return JSONResponse(
        {
            "status": "success",
            "message": f"Session {session.id} interrupted",
            "generation": session.generation,
        }
    )


async def interrupt_all(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    sessions = list(runtime.sessions.sessions.values())
    for session in sessions:
        interrupt(runtime, session)
    return JSONResponse(
        {"status": "success", "message": "All sessions interrupted", "interrupted": len(sessions)}
    )


routes = [
    by_method("/api/v1/sessions", GET=list_sessions, POST=create_session),
    by_method("/api/v1/sessions/{session_id}", GET=get_session, DELETE=delete_session),
    # Before the parameterised route: the literal `all` is never taken for a session id.
    Route("/api/v1/interrupt/all", interrupt_all, methods=["POST"]),
    Route("/api/v1/interrupt/{session_id}", interrupt_one, methods=["POST"]),
]
