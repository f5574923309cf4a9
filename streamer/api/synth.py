"""One-shot synthesis over HTTP: ``POST /api/v1/synth`` (a whole file) and OpenAI's ``POST /v1/audio/speech``.

``POST /api/v1/synth`` (the ttskit contract) takes ``{text, lang, engine, voice, rate, pitch, format,
sample_rate}`` (``language`` and ``speed``, the names our CLI and OpenAI use, as other names of ``lang``
and ``rate``), synthesizes the whole text, then answers with the file: X-Audio-Duration and X-Audio-Size
are headers, so they must be known before the body starts. Where we differ from ttskit:

- ``text`` is 1..``limits.max_text_chars`` characters (the ``max_text_length`` GET /api/v1/engines reports).
- ``rate`` is 0.25..4.0, the engines' speed range (ttskit: 0.1..3.0).
- ``pitch`` is accepted but must be 0: no engine interface here takes a pitch shift, so anything else is
  a 422 rather than silently ignored.
- ``format`` is any of ours (default ``ogg``, Opus in Ogg); ``sample_rate`` (8000..48000) is ours too.
- ``voice`` may be a blend object ``{name: weight}`` for engines that blend; without ``engine`` a voice
  name picks the engine that has it (the default engine first).
Errors use the server's body shape (``{detail, error_type, request_id}``, 422 for bad fields).

``POST /v1/audio/speech`` (OpenAI's contract) takes ``{model, input, voice, response_format, speed,
instructions, stream_format}`` and streams the body as it is synthesized, so the official SDK works
unchanged (``with_streaming_response`` included). Headers go out with the first audio: an error before
that is a proper error response; a chunk that fails later ends the download unfinished (see
``session/oneshot.py``). Mapping:

- ``model``: any string, reported back in ``X-Model``; the name of one of our engines selects it.
- ``voice``: OpenAI's names map through ``openai.voices`` in the config; an OpenAI name not listed there
  speaks with the default voice. Our own voice names (and blends) work too; ``{"id": name}`` is a name.
- ``response_format``: mp3 (default), opus (Opus in Ogg, as OpenAI sends it), aac, flac, wav, and pcm
  (raw s16le mono); all at 24 kHz like OpenAI's.
- ``instructions`` is accepted and ignored: no engine here takes style prompts. ``stream_format`` must be
  ``audio`` (the default); server-sent events are not offered.
Errors use OpenAI's shape ``{"error": {message, type, param, code}}`` with our code in ``code``. Every
invalid request is a 400 (OpenAI's own habit; the SDK raises BadRequestError), a full server a 503 with
Retry-After, an engine failure a 500. Unknown paths and methods under /v1/ answer in that shape too.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..engines.catalog import ResolvedVoice
from ..errors import StreamerError, UnsupportedFormat
from ..protocol import SessionConfig
from ..runtime import Runtime
from ..session.oneshot import OneShot, admit, voice_label
from .http import fields_named, openai_error, openai_error_for, read_object
from .models.bodies import OPENAI_FORMATS, SpeechRequest, SynthRequest, VoiceRef
from .system import runtime_of

T = TypeVar("T")

SYNTH_DEFAULT_FORMAT = "ogg"
# OpenAI's built-in voices: any of them not mapped in `openai.voices` speaks with our default voice.
OPENAI_VOICES = frozenset(
    {
        "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
        "marin", "cedar",
    }
)  # fmt: skip
OPENAI_SAMPLE_RATE = 24000
# 499, nginx's "client closed request": only ever seen in our own logs, since nobody is left to read it.
CLIENT_CLOSED = 499


# ---- from a valid body to a synthesis -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Synthesis:
    text: str
    voice: ResolvedVoice
    speed: float
    format: str
    sample_rate: int

    def start(self, runtime: Runtime, path: str = "synth") -> OneShot:
        admit(runtime)
        return OneShot(runtime, self.text, self.voice, self.speed, self.format, self.sample_rate, path)


def synth_request(runtime: Runtime, raw: dict[str, Any]) -> _Synthesis:
    """A ``/api/v1/synth`` body as a synthesis, or InvalidField & co. naming the field."""
    settings = runtime.settings
    body = SynthRequest.parse(raw, max_text_chars=settings.limits.max_text_chars)
    fmt = body.format
    if fmt is None:
        supported = settings.audio.supported_formats
        fmt = SYNTH_DEFAULT_FORMAT if SYNTH_DEFAULT_FORMAT in supported else settings.audio.default_format
    with fields_named(engine="engine", voice="voice", language="lang", fmt="format"):
        return _Synthesis(
            text=body.text,
            voice=runtime.resolve_voice(
                SessionConfig(engine=body.engine, voice=body.voice, language=body.lang)
            ),
            speed=body.rate if body.rate is not None else settings.tts.default_speed,
            format=runtime.check_format(fmt),
            sample_rate=body.sample_rate or settings.audio.default_sample_rate,
        )


def speech_request(runtime: Runtime, raw: dict[str, Any]) -> tuple[str, _Synthesis]:
    """A ``/v1/audio/speech`` body as (model, synthesis)."""
    settings = runtime.settings
    body = SpeechRequest.parse(raw, max_text_chars=settings.openai.max_input_chars)
    response_format = body.response_format or "mp3"
    if response_format not in OPENAI_FORMATS:
        raise UnsupportedFormat(
            f"response_format '{response_format}' is not one of {', '.join(OPENAI_FORMATS)}",
            field="response_format",
        )
    voice = body.voice.id if isinstance(body.voice, VoiceRef) else body.voice
    if isinstance(voice, str):
        table = settings.openai.voices
        if voice in table:
            voice = table[voice]
        elif voice in OPENAI_VOICES:
            voice = None  # the default voice
    engine = body.model if body.model in runtime.catalog.engines else None
    with fields_named(engine="model", voice="voice", language="voice", fmt="response_format"):
        synthesis = _Synthesis(
            text=body.input,
            voice=runtime.resolve_voice(SessionConfig(engine=engine, voice=voice)),
            speed=body.speed if body.speed is not None else settings.tts.default_speed,
            format=runtime.check_format(OPENAI_FORMATS[response_format]),
            sample_rate=OPENAI_SAMPLE_RATE,
        )
    return body.model, synthesis


# ---- responses -------------------------------------------------------------------------------------


class _ClientGone(Exception):
    """The client disconnected before the answer was ready."""


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await ``work`` while watching the client: if it disconnects first, cancel ``work``, raise _ClientGone.

    Starlette watches for a disconnect only while a StreamingResponse streams; this covers the time
    before the answer starts, so an abandoned request stops its synthesis at once.
    """

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    worker = asyncio.create_task(work, name="oneshot-work")
    watcher = asyncio.create_task(watch(), name="oneshot-disconnect-watch")
    try:
        await asyncio.wait((worker, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (worker, watcher):
            task.cancel()
        await asyncio.gather(worker, watcher, return_exceptions=True)
    if worker.cancelled():
        raise _ClientGone
    return worker.result()


def _media_type(fmt: str, sample_rate: int, mime_type: str) -> str:
    return f"{mime_type};rate={sample_rate};channels=1" if fmt == "pcm" else mime_type


def _sized_wav(data: bytes) -> bytes:
    """A finished WAV with its real RIFF and data sizes (the streaming header says "until EOF")."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[36:40] != b"data":
        return data
    return (
        data[:4]
        + struct.pack("<I", len(data) - 8)
        + data[8:40]
        + struct.pack("<I", len(data) - 44)
        + data[44:]
    )


async def synth(request: Request) -> Response:
    runtime = runtime_of(request)
    job = synth_request(runtime, await read_object(request))
    oneshot = job.start(runtime)
    try:
        audio = await _unless_disconnected(request, oneshot.read_all())
    except _ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    if job.format == "wav":
        audio = _sized_wav(audio)
    headers = {
        "Content-Disposition": f"attachment; filename=synthesis.{job.format}",
        "X-Audio-Duration": f"{oneshot.duration_s:.3f}",
        "X-Audio-Size": str(len(audio)),
        "X-Audio-Sample-Rate": str(oneshot.sample_rate),
        "X-Engine-Used": job.voice.engine,
        "X-Voice-Used": voice_label(job.voice),
    }
    return Response(
        audio, media_type=_media_type(job.format, oneshot.sample_rate, oneshot.mime_type), headers=headers
    )


class _AudioStream(StreamingResponse):
    """A streamed synthesis whose pool work ends with the response, however the response ends."""

    def __init__(self, first: bytes, rest: AsyncGenerator[bytes, None], **kwargs: Any) -> None:
        async def body() -> AsyncGenerator[bytes, None]:
            if first:
                yield first
            async for data in rest:
                yield data

        super().__init__(body(), **kwargs)
        self._rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except StreamerError:
            # A chunk failed mid-stream; the one-shot's summary line has logged it. Returning without
            # ending the body makes the server drop the connection, so the client sees a truncated
            # download instead of a short file that looks complete.
            pass
        finally:
            await self._rest.aclose()  # a disconnect leaves it suspended: this cancels its pool jobs


async def speech(request: Request) -> Response:
    runtime = runtime_of(request)
    try:
        model, job = speech_request(runtime, await read_object(request))
        oneshot = job.start(runtime, "speech")
        stream = oneshot.stream()

        async def first_bytes() -> bytes:
            return await anext(stream, b"")

        # Headers wait for the first audio: until then a failure can still be an honest error status.
        first = await _unless_disconnected(request, first_bytes())
    except StreamerError as exc:
        return openai_error_for(exc)
    except _ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    headers = {
        "X-Model": model,
        "X-Engine-Used": job.voice.engine,
        "X-Voice-Used": voice_label(job.voice),
        "X-Audio-Sample-Rate": str(oneshot.sample_rate),
    }
    media_type = _media_type(job.format, oneshot.sample_rate, oneshot.mime_type)
    return _AudioStream(first, stream, headers=headers, media_type=media_type)


_V1_ROUTES = {"/v1/audio/speech": ("POST",)}


async def v1_fallback(request: Request) -> Response:
    """Unknown paths and methods under /v1/ in OpenAI's error shape (Starlette's own would be ours)."""
    path = request.url.path
    allowed = _V1_ROUTES.get(path)
    if allowed is not None:
        return openai_error(
            405,
            f"method {request.method} is not allowed on {path}; use {', '.join(allowed)}",
            "invalid_request_error",
            "method_not_allowed",
            headers={"Allow": ", ".join(allowed)},
        )
    return openai_error(404, f"Invalid URL ({request.method} {path})", "invalid_request_error", "not_found")


# TRACE and CONNECT too: a method Starlette's router refused would answer in our shape.
_ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")

routes = [
    Route("/api/v1/synth", synth, methods=["POST"]),
    Route("/v1/audio/speech", speech, methods=["POST"]),
    # Last of ours: it answers for every other method and path under /v1/.
    Route("/v1/{path:path}", v1_fallback, methods=list(_ALL_METHODS), include_in_schema=False),
]
