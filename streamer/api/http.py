"""HTTP plumbing shared by every route: request ids, timing, body limits, JSON answers and error bodies.

Every response carries ``X-Request-ID`` (an incoming one is kept) and ``X-Process-Time`` (seconds).
Answers are models of ``models/`` serialised by orjson (``answer``). Every error body is
``{"detail", "error_type", "request_id"}``; 422's ``detail`` is a list of ``{"loc", "msg"}``.
``error_type`` reuses the WebSocket error codes where the error is the same. Under ``/v1/`` every error
takes OpenAI's shape instead (``openai_error``): the handlers and the middleware here pick the shape by path,
so a 405, a 413 or a last-resort 500 there is in that shape too.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import structlog
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import (
    ConfigError,
    InvalidField,
    InvalidMessage,
    StreamerError,
    UnknownEngine,
    UnknownVoice,
    UnsupportedFormat,
)
from ..security import OPENAI_PREFIX, app_path
from .models.answers import Error, OpenAIError, ValidationError

log = structlog.get_logger(__name__)

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")
_STATUS_TYPES = {
    400: "invalid_message",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_field",
    429: "rate_limited",
    503: "overloaded",
}


def request_id_of(scope: Scope) -> str:
    return scope.get("state", {}).get("request_id", "")


def answer(body: BaseModel | list[Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer from a model (or a list of them), serialised by orjson."""
    data = (
        [m.model_dump(mode="json") for m in body] if isinstance(body, list) else body.model_dump(mode="json")
    )
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def error_response(
    request_id: str,
    status: int,
    detail: str | list[dict[str, Any]],
    error_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"detail": detail, "error_type": error_type or _STATUS_TYPES.get(status, "internal_error")}
    model = ValidationError if isinstance(detail, list) else Error
    return answer(model.model_validate({**body, "request_id": request_id}), status, headers)


def openai_error(
    status: int,
    message: str,
    kind: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An error in OpenAI's shape, for the routes under /v1/."""
    error = {"message": message, "type": kind, "param": param, "code": code}
    return answer(OpenAIError.model_validate({"error": error}), status, headers)


def speaks_openai(scope: Scope) -> bool:
    """A request under /v1/: its errors take OpenAI's shape."""
    return app_path(scope).startswith(OPENAI_PREFIX)


def openai_kind(status: int) -> str:
    """OpenAI's error ``type`` for a status (its SDKs pick the exception class by status)."""
    if status >= 500:
        return "server_error"
    return "rate_limit_error" if status == 429 else "invalid_request_error"


def error_for(
    scope: Scope,
    status: int,
    detail: str,
    error_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An error body in the shape the path speaks: ours, or OpenAI's under /v1/."""
    code = error_type or _STATUS_TYPES.get(status, "internal_error")
    if speaks_openai(scope):
        return openai_error(status, detail, openai_kind(status), code, headers=headers)
    return error_response(request_id_of(scope), status, detail, code, headers)


class RequestContextMiddleware:
    """Outermost middleware: ids, timing headers, request logging, body size, last-resort 500."""

    def __init__(self, app: ASGIApp, max_body: Callable[[], int]) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-process-time", f"{time.perf_counter() - started:.6f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        limit = self.max_body()
        length = dict(scope.get("headers") or []).get(b"content-length")
        try:
            if length is not None and length.isdigit() and int(length) > limit:
                await _too_large(limit, scope, receive, send_with_headers)
                return
            await self.app(scope, _limited(receive, limit), send_with_headers)
        except BodyTooLarge as exc:
            # Raised where no handler of the app answers it (a middleware reading the body).
            if not response_started:
                await _too_large(exc.limit, scope, receive, send_with_headers)
        except Exception:
            log.exception("request_failed", method=scope.get("method"), path=scope.get("path"))
            if not response_started:
                response = error_for(scope, 500, "internal server error", "internal_error")
                await response(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            log.info(
                "request_handled",
                method=scope.get("method"),
                path=scope.get("path"),
                status=status,
                ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")


class BodyTooLarge(HTTPException):
    """The body grew past ``limits.max_request_bytes`` while it was read (chunked, or a false length).

    An HTTPException, so the app's handler answers the documented 413 wherever the body is read,
    in the same shape as a body refused up front by its Content-Length.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit of {limit} bytes")
        self.limit = limit


async def _too_large(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    response = error_for(scope, 413, BodyTooLarge(limit).detail, "payload_too_large")
    await response(scope, receive, send)


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` counting the body as it arrives: the limit holds whatever the framing."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_for(request.scope, exc.status_code, exc.detail, headers=exc.headers)


async def streamer_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StreamerError)
    if speaks_openai(request.scope):
        return openai_error_for(exc)
    errors = exc.errors if isinstance(exc, ConfigError) else exc.details.get("errors")
    detail: str | list[dict[str, Any]]
    if errors:
        detail = [{"loc": e["loc"], "msg": e["msg"]} for e in errors]
    elif exc.http_status == 422:
        field = exc.details.get("field")
        detail = [{"loc": ["body", *([field] if field else [])], "msg": exc.message}]
    else:
        detail = exc.message
    headers = {"Retry-After": str(exc.details.get("retry_after", 1))} if exc.http_status == 503 else None
    return error_response(request_id_of(request.scope), exc.http_status, detail, exc.code, headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    return error_for(request.scope, 500, "internal server error", "internal_error")


def openai_error_for(exc: StreamerError) -> Response:
    """Our error in OpenAI's shape and status habits, so its SDK raises the matching exception class."""
    status = exc.http_status
    if status in (413, 422):
        status = 400  # OpenAI answers every invalid request with 400
    headers = None
    if status in (429, 503):
        headers = {"Retry-After": str(exc.details.get("retry_after", 1))}
    return openai_error(status, exc.message, openai_kind(status), exc.code, exc.details.get("field"), headers)


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Any]] = {
    HTTPException: http_exception,
    StreamerError: streamer_error,
    Exception: internal_error,
}


def by_method(path: str, **handlers: Callable[[Request], Awaitable[Response]]) -> Route:
    """One route for several methods, so a 405 on that path lists all of them in ``Allow``
    (two Route objects for one path would each answer 405 with only their own methods)."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    dispatch.__name__ = "_".join(h.__name__ for h in handlers.values())
    return Route(path, dispatch, methods=list(handlers))


async def read_json(request: Request) -> Any:
    """The request body as JSON, or a 400 ``invalid_message``; an empty body is an empty object."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"request body is not valid JSON: {exc.msg}") from None


async def read_object(request: Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidField("the request body must be a JSON object")
    return body


@contextlib.contextmanager
def fields_named(engine: str, voice: str, language: str, fmt: str) -> Iterator[None]:
    """The runtime's voice and format errors name the request's field (``loc``, or OpenAI's ``param``)."""
    try:
        yield
    except UnknownEngine as exc:
        exc.details.setdefault("field", engine)
        raise
    except UnknownVoice as exc:
        exc.details.setdefault("field", language if "language" in exc.details else voice)
        raise
    except UnsupportedFormat as exc:
        exc.details.setdefault("field", fmt)
        raise
