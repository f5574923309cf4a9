"""Property tests: whatever a client sends, the answer is a message or the documented error, never a crash.

Bounded for CI (STREAMER_FUZZ_EXAMPLES examples per property, 150 by default); for a longer run:
``STREAMER_FUZZ_EXAMPLES=20000 python3 -m pytest tests/test_fuzz.py``. No example database is written.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson
import pytest
import structlog
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from wyoming.event import Event

from streamer.config import Settings
from streamer.errors import OverloadedError, StreamerError
from streamer.protocol import ClientMessage, decode, parse
from streamer.protocol.events import ServerEvent
from streamer.protocol.session import (
    BargeIn,
    Close,
    Configure,
    EndTurn,
    Error,
    Limits,
    SessionProtocol,
    StartSession,
    State,
    TakeText,
)
from streamer.wyoming import FramingError, WyomingConnection, read_event

# Hypothesis's report of a falsifying example trips this (warnings are errors) and hides the example.
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")

EXAMPLES = int(os.environ.get("STREAMER_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=2000,  # ms per example: generous for a slow CI machine, short enough to catch a hang
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _codes() -> set[str]:
    codes, level = set(), [StreamerError]
    while level:
        codes |= {cls.code for cls in level}
        level = [sub for cls in level for sub in cls.__subclasses__()]
    return codes


CODES = _codes()  # every stable code of streamer.errors

# ---- what a client can send ----------------------------------------------------------------------

# Surrogates included: a str from a client can hold them (decode counts bytes with "surrogatepass").
TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4)
)
TYPES = ["start", "text", "flush", "interrupt", "config", "end", "ping", "nonsense", ""]
FIELDS = ["text", "flush", "id", "config", "session_id", "resume_token", "last_seq", "protocol", "voice"]
CONFIG = st.dictionaries(
    st.sampled_from(["voice", "name", "language", "speaker", "engine", "speed", "format", "sample_rate"]),
    JSON,
    max_size=4,
)
# Mostly message-shaped objects, so parse() sees every type with fields of every type, not only garbage.
MESSAGES = st.builds(
    lambda kind, fields, config: {"type": kind, **fields, **({"config": config} if config else {})},
    st.sampled_from(TYPES) | TEXT | JSON,
    st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=4),
    st.none() | CONFIG | JSON,
)


def _json(obj: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except (orjson.JSONEncodeError, UnicodeDecodeError):  # a surrogate in a key, an int over 64 bits
        return "{"


def _msgpack(obj: Any) -> bytes:
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, TypeError, ValueError, UnicodeEncodeError):
        return b"\xc1"


FRAMES = st.one_of(
    MESSAGES.map(_json),
    MESSAGES.map(_msgpack),
    JSON.map(_json),
    JSON.map(_msgpack),
    st.binary(max_size=64),
    TEXT,
)
LIMITS = Limits(max_message_bytes=1 << 18, max_text_chars=64, max_messages_per_s=1e6)


# ---- the protocol decoder ------------------------------------------------------------------------


@FUZZ
@given(FRAMES)
@example("[" * 100_000)
@example(b"\x91" * 100_000 + b"\xc0")  # msgpack arrays nested 100,000 deep
@example('{"type": "text", "text": "a", "id": 1e400}')
def test_decode_and_parse_give_a_message_or_a_documented_error(frame: str | bytes) -> None:
    try:
        message = parse(decode(frame, LIMITS.max_message_bytes), LIMITS.max_text_chars)
    except StreamerError as exc:
        assert exc.code in CODES and isinstance(exc.message, str)
    else:
        assert isinstance(message, ClientMessage)


# ---- the session state machine -------------------------------------------------------------------

ACTIONS = (StartSession, TakeText, EndTurn, Configure, BargeIn)


@FUZZ
@given(st.lists(st.tuples(FRAMES, st.booleans()), max_size=12))
def test_the_session_protocol_answers_any_messages_without_raising(
    frames: list[tuple[str | bytes, bool]],
) -> None:
    protocol = SessionProtocol()
    for frame, fail in frames:
        closed_before = protocol.state is State.CLOSED
        outputs = protocol.receive(frame, LIMITS)
        if closed_before:
            assert outputs == []
        for output in list(outputs):
            assert isinstance(output, (ServerEvent, Close, *ACTIONS))
            if fail and isinstance(output, ACTIONS):  # the connection could not perform it
                outputs += protocol.fail(output, OverloadedError("no room"))
                break
        for output in outputs:
            if isinstance(output, Error):
                assert output.code in CODES
                if output.fatal:  # the documented close follows a fatal error, and nothing after it
                    assert isinstance(outputs[-1], Close) and protocol.state is State.CLOSED
                orjson.dumps(output.to_wire())  # it can be sent


# ---- Wyoming -------------------------------------------------------------------------------------


def _event_bytes(kind: Any, data: Any, payload: bytes, split_data: bool) -> bytes:
    header: dict[str, Any] = {"type": kind}
    body = _json(data).encode()
    if split_data:
        header["data_length"] = len(body)
    else:
        header["data"] = data
    if payload:
        header["payload_length"] = len(payload)
    return _json(header).encode() + b"\n" + (body if split_data else b"") + payload


WYOMING_TYPES = ["describe", "synthesize", "synthesize-start", "synthesize-chunk", "synthesize-stop", "x"]
VOICES = st.fixed_dictionaries({}, optional={"name": JSON, "language": JSON, "speaker": JSON}) | JSON
WYOMING_DATA = st.one_of(
    st.fixed_dictionaries({}, optional={"text": TEXT | JSON, "voice": VOICES}),
    st.dictionaries(st.sampled_from(["text", "voice", "speaker"]), JSON, max_size=3),
    JSON,
)
WYOMING_EVENTS = st.builds(
    _event_bytes, st.sampled_from(WYOMING_TYPES) | JSON, WYOMING_DATA, st.binary(max_size=8), st.booleans()
)
DEEP = st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth)
# Headers JSON cannot write: lengths of every JSON type (1e400 is infinity in Python), nesting past any limit.
ODD_HEADERS = st.one_of(
    st.builds(
        lambda key, value: b'{"type": "synthesize", "%s": %s}\n' % (key, value),
        st.sampled_from([b"data_length", b"payload_length"]),
        st.sampled_from([b"1e400", b"-1", b"true", b'"5"', b"1.5", b"null", b"[]", b"0", b"2"]),
    ),
    DEEP.map(lambda deep: deep + b"\n"),
    DEEP.map(lambda deep: b'{"type": "synthesize", "data_length": %d}\n' % len(deep) + deep),
    DEEP.map(lambda deep: b'{"type": "synthesize", "data": {"text": "Hi.", "voice": %s}}\n' % deep),
)
WYOMING_STREAMS = st.lists(WYOMING_EVENTS | ODD_HEADERS | st.binary(max_size=40), max_size=6).map(b"".join)
# The reports of issue 11, each once a crash of the connection task with no `error` event.
ISSUE_11 = [
    b'{"type": "synthesize", "data": {"text": "Hi.", "voice": {"name": 5}}}\n',
    b'{"type": "synthesize", "data": {"text": "Hi.", "voice": [1]}}\n',
    b"[" * 100_000 + b"\n",
    b'{"type": "synthesize", "data_length": 10000}\n' + b"[" * 5000 + b"]" * 5000,
]
WYOMING_LIMIT = 1 << 18  # limits.max_message_bytes: 256 KiB, as by default


def _reader(data: bytes, limit: int = WYOMING_LIMIT) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def _frames(data: bytes, limit: int = WYOMING_LIMIT) -> tuple[list[Event], FramingError | None]:
    reader, events = _reader(data, limit), []
    try:
        while (event := await read_event(reader, limit)) is not None:
            events.append(event)
    except FramingError as exc:
        return events, exc
    return events, None


@FUZZ
@given(WYOMING_STREAMS)
@example(ISSUE_11[2])
@example(ISSUE_11[3])
def test_the_wyoming_reader_frames_any_bytes_or_raises_framing_error(data: bytes) -> None:
    events, error = asyncio.run(_frames(data))
    for event in events:
        assert isinstance(event.type, str) and isinstance(event.data, dict)
    if error is not None:
        assert error.code in CODES


@dataclass
class _Voice:
    name: str = "en-us"
    description: str = "English"
    language: str = "en"


@dataclass
class _Catalog:
    engines: dict[str, object] = field(default_factory=lambda: {"espeak": object()})
    default_engine: str = "espeak"

    def voices(self, engine: str) -> list[_Voice]:
        return [_Voice()]


@dataclass
class _Runtime:
    """Just enough of Runtime for a Wyoming connection: every synthesis is refused before it starts."""

    settings: Settings = field(
        default_factory=lambda: Settings.model_validate({"limits": {"max_message_bytes": WYOMING_LIMIT}})
    )
    catalog: _Catalog = field(default_factory=_Catalog)

    def resolve_voice(self, config: Any) -> Any:
        for value in (config.voice, config.language):
            assert value is None or isinstance(value, str), (
                f"an unchecked voice field reached the runtime: {value!r}"
            )
        raise OverloadedError("the fuzz runtime synthesizes nothing")


class _Writer:
    def __init__(self) -> None:
        self.data, self.closed = bytearray(), False

    def write(self, data: bytes) -> None:
        self.data += data

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.data += line

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def _serve(data: bytes) -> tuple[list[Event], bool]:
    writer = _Writer()
    connection = WyomingConnection(_Runtime(), _reader(data), writer)  # type: ignore[arg-type]
    await asyncio.wait_for(connection.run(), 5)
    answers, error = await _frames(bytes(writer.data), limit=2**20)  # `info` is longer than a request
    assert error is None, f"the server wrote something that is not Wyoming events: {error}"
    return answers, writer.closed


@FUZZ
@given(WYOMING_STREAMS)
@example(ISSUE_11[0])
@example(ISSUE_11[1])
@example(ISSUE_11[2])
@example(ISSUE_11[3])
def test_a_wyoming_connection_answers_any_bytes_with_events_and_the_documented_error(data: bytes) -> None:
    with structlog.testing.capture_logs() as logs:
        answers, closed = asyncio.run(_serve(data))
    assert closed
    assert not [line for line in logs if line["log_level"] in ("error", "critical")], logs
    for answer in answers:
        assert answer.type in {"info", "error", "audio-start", "audio-stop", "synthesize-stopped"}
        if answer.type == "error":
            assert answer.data["code"] in CODES and answer.data["code"] != "internal_error"
    _, framing = asyncio.run(_frames(data))
    if framing is not None:  # bytes that cannot be framed: the last word is the error that says so
        assert answers and answers[-1].type == "error" and answers[-1].data["code"] == framing.code
