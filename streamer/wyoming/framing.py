"""Wyoming events off the socket, bounded and checked: framing, and the fields of the events we act on.

Everything a client can send ends in an Event, a FramingError (the byte stream can no longer be trusted:
`error`, then the connection closes) or, for a well-framed event with a wrong field, an InvalidField
(`error`, and the connection goes on). Nothing else escapes: JSON is parsed by orjson, whose depth limit
(1,024) turns `[[[[…` into a parse error where the stdlib's parser would raise RecursionError.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from wyoming.event import Event
from wyoming.tts import SynthesizeVoice

from ..errors import InvalidField


class FramingError(Exception):
    """The byte stream is not Wyoming events: answered with an error event, then the connection ends."""

    def __init__(self, message: str, code: str = "invalid_message") -> None:
        super().__init__(message)
        self.message, self.code = message, code


def _loads(data: bytes, what: str) -> Any:
    try:
        return orjson.loads(data)
    except (orjson.JSONDecodeError, RecursionError):  # invalid UTF-8, not JSON, nested too deep, 1e400
        raise FramingError(f"{what} is not JSON (or is nested more than 1,024 levels deep)") from None


def _length(header: dict[str, Any], key: str) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if type(value) is not int or value < 0:  # not `true`, `1.5`, `"5"` or `1e400`
        raise FramingError(f"an event header's `{key}` is not a non-negative integer")
    return value


async def read_event(reader: asyncio.StreamReader, limit: int) -> Event | None:
    """One event, as ``wyoming.event.async_read_event`` frames it (a JSON header line, then optional
    data and payload of the lengths it names), but bounded: no part over ``limit`` bytes is read, and a
    malformed event raises FramingError instead of ending the connection without a word. None at EOF.
    (The reader's own limit, set where the server starts, bounds the header line.)"""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise FramingError("the connection ended inside an event header") from None
    except asyncio.LimitOverrunError:
        raise FramingError(f"an event header is over {limit} bytes", "message_too_large") from None
    header = _loads(line, "an event header")
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise FramingError("an event header is not a JSON object with a string type")
    data = header.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise FramingError("an event header's `data` is not a JSON object")
    data_length, payload_length = _length(header, "data_length"), _length(header, "payload_length")
    if data_length > limit or payload_length > limit:
        raise FramingError(f"an event's data or payload is over {limit} bytes", "message_too_large")
    try:
        if data_length:
            extra = _loads(await reader.readexactly(data_length), "an event's data")
            if not isinstance(extra, dict):
                raise FramingError("an event's data is not a JSON object")
            data = {**data, **extra}
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        raise FramingError("the connection ended inside an event") from None
    return Event(type=header["type"], data=data, payload=payload)


# ---- the fields we act on: checked here, so a wrong type is `invalid_field`, never a crash later ------


def text_of(event: Event) -> str:
    """``data.text``, which ``synthesize`` and ``synthesize-chunk`` must carry as a string."""
    text = event.data.get("text")
    if not isinstance(text, str):
        problem = "is missing" if text is None else "must be a string"
        raise InvalidField(f"{event.type}: `text` {problem}", field="text")
    return text


def voice_of(event: Event) -> SynthesizeVoice | None:
    """``data.voice``: absent, null or ``{}`` for the default voice, else an object of optional strings."""
    voice = event.data.get("voice")
    if voice is None:
        return None
    if not isinstance(voice, dict):
        raise InvalidField(
            f"{event.type}: `voice` must be an object with `name`, `language` or `speaker`", field="voice"
        )
    for key in ("name", "language", "speaker"):
        if voice.get(key) is not None and not isinstance(voice[key], str):
            raise InvalidField(f"{event.type}: `voice.{key}` must be a string", field=f"voice.{key}")
    # Wyoming's own reading (a name wins over a language), without the keys that are null.
    return SynthesizeVoice.from_dict({key: value for key, value in voice.items() if value is not None})
