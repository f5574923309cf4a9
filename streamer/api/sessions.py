"""Sessions and interrupts over REST: the same registry and barge-in as the WebSocket."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import InvalidField
from ..protocol import SessionConfig, error_event
from ..protocol.events import CLOSE_NORMAL
from ..runtime import Runtime
from ..session.state import Session
from .http import answer, by_method, fields_named, read_object
from .models import answers
from .models.bodies import SessionCreate
from .system import runtime_of


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def session_config(runtime: Runtime, session: Session) -> answers.SessionConfig:
    voice = session.voice
    voice_id = None
    if isinstance(voice.voice, str):
        found = runtime.catalog.find(voice.engine, voice.voice)
        voice_id = runtime.catalog.voice_id(found) if found else None
    return answers.SessionConfig(
        language=voice.language,
        voice_id=voice_id,
        voice=voice.voice,
        engine=voice.engine,
        format=session.format,  # type: ignore[arg-type]  # the runtime checked it against FORMATS
        sample_rate=session.sample_rate,
        speed=session.speed,
    )


def summary(session: Session) -> answers.SessionSummary:
    connection = session.connection
    return answers.SessionSummary(
        session_id=session.id,
        created_at=iso(session.created_at),
        last_activity=iso(session.last_activity),
        is_active=connection is not None and not connection.idle,
        connected=session.connected,
    )


def details(runtime: Runtime, session: Session) -> answers.SessionDetails:
    connection = session.connection
    return answers.SessionDetails(
        **dict(summary(session)),
        config=session_config(runtime, session),
        generation=session.generation,
        last_seq=session.last_seq,
        text_offset=session.chunker.offset,
        chunks_queued=connection.chunks_queued if connection else 0,
        chunks_done=session.chunks_done,
        audio_seconds_sent=round(session.audio_ms_sent / 1000, 3),
    )


async def create_session(request: Request) -> Response:
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
    token = runtime.sessions.token(session)
    created = answers.SessionCreated(**dict(details(runtime, session)), resume_token=token, ws_url=ws_url)
    return answer(created, 201)


PAGE_DEFAULT, PAGE_MAX = 100, 1000


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise InvalidField(
            f"query parameter '{name}' must be an integer from {low} to {high}",
            field=name,
            errors=[{"loc": ["query", name], "msg": f"must be an integer from {low} to {high}"}],
        )
    return int(raw)


async def list_sessions(request: Request) -> Response:
    """One page of sessions, oldest first: ``limit`` (default 100, at most 1000) from ``offset``."""
    registry = runtime_of(request).sessions
    limit = _query_int(request, "limit", PAGE_DEFAULT, 1, PAGE_MAX)
    offset = _query_int(request, "offset", 0, 0, 2**31 - 1)
    total = len(registry.sessions)
    page = [summary(s) for s in registry.page(offset, limit)]
    next_offset = offset + limit if offset + limit < total else None
    listed = answers.SessionList(
        sessions=page, total=total, offset=offset, limit=limit, next_offset=next_offset
    )
    return answer(listed)


async def get_session(request: Request) -> Response:
    runtime = runtime_of(request)
    session = runtime.sessions.get(request.path_params["session_id"])
    return answer(details(runtime, session))


async def delete_session(request: Request) -> Response:
    runtime = runtime_of(request)
    session = runtime.sessions.get(request.path_params["session_id"])
    runtime.sessions.remove(session.id)
    if session.connection is not None:
        session.connection.close_soon(
            CLOSE_NORMAL,
            "session closed",
            error_event("session_closed", "the session was closed through the REST API", True),
        )
    return answer(answers.SessionClosed(message=f"Session {session.id} closed"))


def interrupt(session: Session) -> None:
    if session.connection is not None:
        session.connection.interrupt()
    else:
        session.generation += 1  # nothing is speaking; a later resume starts after this generation


async def interrupt_one(request: Request) -> Response:
    session = runtime_of(request).sessions.get(request.path_params["session_id"])
    interrupt(session)
    message = f"Session {session.id} interrupted"
    return answer(answers.SessionInterrupted(message=message, generation=session.generation))


async def interrupt_all(request: Request) -> Response:
    sessions = list(runtime_of(request).sessions.sessions.values())
    for session in sessions:
        interrupt(session)
    return answer(answers.AllInterrupted(message="All sessions interrupted", interrupted=len(sessions)))


routes = [
    by_method("/api/v1/sessions", GET=list_sessions, POST=create_session),
    by_method("/api/v1/sessions/{session_id}", GET=get_session, DELETE=delete_session),
    # Before the parameterised route: the literal `all` is never taken for a session id.
    Route("/api/v1/interrupt/all", interrupt_all, methods=["POST"]),
    Route("/api/v1/interrupt/{session_id}", interrupt_one, methods=["POST"]),
]
