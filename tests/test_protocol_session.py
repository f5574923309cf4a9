"""The session state machine in memory: every flow of docs/protocol.md, messages in, events and actions out.

No sockets, no event loop, no server: ``SessionProtocol`` decides, and these tests read its decisions.
What only a running session can show (audio, seq numbers, the idle flush's timing) is in test_stream.py
and test_bargein.py against a real server.
"""

from __future__ import annotations

import msgpack
import orjson
import pytest

from streamer.errors import InvalidField, TextTooLong, UnknownVoice
from streamer.protocol import SessionConfig, Start, encode
from streamer.protocol.events import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    Audio,
    AudioFormat,
    ChunkEnd,
    Done,
    Error,
    Interrupted,
    Pong,
    Ready,
)
from streamer.protocol.session import (
    BargeIn,
    Close,
    Configure,
    EndTurn,
    Limits,
    SessionProtocol,
    StartSession,
    State,
    TakeText,
)

LIMITS = Limits(max_message_bytes=1024, max_text_chars=100, max_messages_per_s=1000)


def send(protocol: SessionProtocol, message: dict[str, object], binary: bool = False) -> list[object]:
    data = msgpack.packb(message) if binary else orjson.dumps(message).decode()
    return protocol.receive(data, LIMITS)


def started() -> SessionProtocol:
    protocol = SessionProtocol()
    assert send(protocol, {"type": "start"}) == [StartSession(Start())]
    return protocol


def codes(outputs: list[object]) -> list[str]:
    return [o.code for o in outputs if isinstance(o, Error)]


# ---- start -------------------------------------------------------------------------------------------


def test_start_opens_a_session_with_its_config() -> None:
    protocol = SessionProtocol()
    out = send(protocol, {"type": "start", "config": {"voice": "en-us", "speed": 1.5, "format": "mp3"}})
    assert out == [StartSession(Start(config=SessionConfig(voice="en-us", speed=1.5, format="mp3")))]
    assert protocol.state is State.IDLE


def test_a_second_start_is_a_non_fatal_error_and_changes_nothing() -> None:
    protocol = started()
    out = send(protocol, {"type": "start", "id": 7})
    assert out == [Error("invalid_message", "the session has already started", False, 7)]
    assert protocol.state is State.IDLE


@pytest.mark.parametrize(
    "message, then",
    [
        ({"type": "text", "text": "Hi"}, [TakeText("Hi")]),
        ({"type": "ping", "id": 3}, [Pong(3)]),
        ({"type": "flush"}, [EndTurn("flush")]),
        ({"type": "config", "config": {"speed": 2}}, [Configure(SessionConfig(speed=2.0))]),
    ],
)
def test_any_first_message_starts_a_session_with_the_defaults(
    message: dict[str, object], then: list[object]
) -> None:
    protocol = SessionProtocol()
    assert send(protocol, message) == [StartSession(Start()), *then]


def test_a_failed_start_leaves_the_connection_unstarted_so_a_later_start_works() -> None:
    protocol = SessionProtocol()
    out = send(protocol, {"type": "start", "config": {"voice": "nope"}})
    assert protocol.fail(out[0], UnknownVoice("unknown voice 'nope'", voice="nope")) == [
        Error("unknown_voice", "unknown voice 'nope'", False, None, {"voice": "nope"})
    ]
    assert protocol.state is State.CONNECTING
    assert send(protocol, {"type": "start"}) == [StartSession(Start())]


def test_a_failed_implicit_start_takes_no_text() -> None:
    protocol = SessionProtocol()
    start, take = send(protocol, {"type": "text", "text": "Hi", "id": "m1"})
    assert isinstance(take, TakeText)
    # The connection stops at the failed action: the text after it is not performed.
    assert codes(protocol.fail(start, InvalidField("no default voice", field="voice"))) == ["invalid_field"]
    assert protocol.state is State.CONNECTING


def test_resume_carries_the_session_id_and_token() -> None:
    protocol = SessionProtocol()
    out = send(
        protocol, {"type": "start", "session_id": "abc", "resume_token": "tok", "config": {"speed": 2}}
    )
    assert out == [StartSession(Start(session_id="abc", resume_token="tok", config=SessionConfig(speed=2.0)))]


def test_resume_needs_both_the_id_and_the_token() -> None:
    assert codes(send(SessionProtocol(), {"type": "start", "session_id": "abc"})) == ["invalid_field"]


def test_an_unsupported_protocol_version_is_fatal() -> None:
    protocol = SessionProtocol()
    out = send(protocol, {"type": "start", "protocol": 2})
    assert codes(out) == ["unsupported_protocol"] and out[0].fatal
    assert out[-1] == Close(CLOSE_POLICY, "unsupported_protocol")
    assert protocol.state is State.CLOSED
    assert send(protocol, {"type": "start"}) == []  # closing: nothing more is taken


# ---- text, flush, turns ------------------------------------------------------------------------------


def test_text_opens_a_turn_and_flush_closes_it() -> None:
    protocol = started()
    assert send(protocol, {"type": "text", "text": "Hello "}) == [TakeText("Hello ")]
    assert protocol.state is State.TURN_OPEN
    assert send(protocol, {"type": "text", "text": "there."}) == [TakeText("there.")]
    assert send(protocol, {"type": "flush", "id": "f1"}) == [EndTurn("flush", "f1")]
    assert protocol.state is State.IDLE


def test_text_with_flush_is_text_then_a_flush_with_the_message_id() -> None:
    protocol = started()
    assert send(protocol, {"type": "text", "text": "Hi.", "flush": True, "id": 9}) == [
        TakeText("Hi."),
        EndTurn("flush", 9),
    ]
    assert protocol.state is State.IDLE


def test_the_idle_flush_leaves_the_turn_open_until_a_flush() -> None:
    # The idle flush cuts buffered text into chunks (the connection's timer); it ends no turn: `done`
    # still waits for a flush or end.
    protocol = started()
    send(protocol, {"type": "text", "text": "token by token"})
    assert protocol.state is State.TURN_OPEN


def test_text_over_the_buffer_limit_is_refused_and_the_turn_stays_as_it_was() -> None:
    protocol = started()
    (take,) = send(protocol, {"type": "text", "text": "x" * 50, "id": "big"})
    out = protocol.fail(take, TextTooLong("the session already holds 4000 characters"))
    assert [(e.code, e.id, e.fatal) for e in out] == [("text_too_long", "big", False)]
    assert protocol.state is State.IDLE
    send(protocol, {"type": "text", "text": "a"})
    (take,) = send(protocol, {"type": "text", "text": "b"})
    protocol.fail(take, TextTooLong("full"))
    assert protocol.state is State.TURN_OPEN  # the earlier text was taken


def test_text_over_the_message_limit_is_an_error_without_an_action() -> None:
    protocol = started()
    assert codes(send(protocol, {"type": "text", "text": "x" * 101})) == ["text_too_long"]


# ---- config ------------------------------------------------------------------------------------------


def test_config_mid_session_is_an_action_and_bad_values_are_errors() -> None:
    protocol = started()
    send(protocol, {"type": "text", "text": "Hi"})
    assert send(protocol, {"type": "config", "config": {"voice": {"a": 1, "b": 2}}}) == [
        Configure(SessionConfig(voice={"a": 1.0, "b": 2.0}))
    ]
    assert protocol.state is State.TURN_OPEN  # config does not end a turn
    for bad in ({"speed": 9}, {"speed": True}, {"sample_rate": 100}, {"voice": 3}, {"voice": {}}):
        assert codes(send(protocol, {"type": "config", "config": bad})) == ["invalid_field"], bad
    assert codes(send(protocol, {"type": "config"})) == ["invalid_field"]


# ---- barge-in ----------------------------------------------------------------------------------------


def test_interrupt_is_a_barge_in_that_closes_the_open_turn() -> None:
    protocol = started()
    send(protocol, {"type": "text", "text": "A long answer"})
    assert send(protocol, {"type": "interrupt"}) == [BargeIn()]
    assert protocol.state is State.IDLE
    assert send(protocol, {"type": "text", "text": "New"}) == [TakeText("New")]


def test_the_rest_api_interrupt_is_the_same_barge_in_and_nothing_before_a_session() -> None:
    assert SessionProtocol().interrupt() == []
    protocol = started()
    assert protocol.interrupt() == [BargeIn()]


# ---- end -----------------------------------------------------------------------------------------------


def test_end_speaks_the_rest_then_only_interrupt_and_ping_are_taken() -> None:
    protocol = started()
    send(protocol, {"type": "text", "text": "Bye"})
    assert send(protocol, {"type": "end", "id": "e"}) == [EndTurn("end", "e")]
    assert protocol.state is State.ENDING
    for refused in ({"type": "text", "text": "more"}, {"type": "flush"}, {"type": "config", "config": {}}):
        assert codes(send(protocol, refused)) == ["invalid_message"]
    assert send(protocol, {"type": "ping", "id": 1}) == [Pong(1)]


def test_interrupt_after_end_closes_after_interrupted() -> None:
    protocol = started()
    send(protocol, {"type": "end"})
    assert send(protocol, {"type": "interrupt"}) == [BargeIn(), Close(CLOSE_NORMAL, "interrupted after end")]


# ---- supersede ---------------------------------------------------------------------------------------


def test_a_superseded_connection_says_why_closes_and_then_ignores_everything() -> None:
    protocol = started()
    out = protocol.supersede()
    assert [type(o) for o in out] == [Error, Close]
    assert out[0].code == "session_closed" and out[0].fatal
    assert out[1] == Close(CLOSE_NORMAL, "session resumed elsewhere")
    assert send(protocol, {"type": "text", "text": "late"}) == []
    assert protocol.interrupt() == []


# ---- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, code",
    [
        ("{not json", "invalid_message"),
        (b"\xc1", "invalid_message"),
        ("[1, 2]", "invalid_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": 5}', "invalid_field"),
        ('{"type": "text"}', "invalid_field"),
        ('{"type": "text", "text": "a", "flush": 1}', "invalid_field"),
    ],
)
def test_bad_messages_are_non_fatal_errors_and_the_session_goes_on(data: str | bytes, code: str) -> None:
    protocol = started()
    out = protocol.receive(data, LIMITS)
    assert codes(out) == [code] and not out[0].fatal and len(out) == 1
    assert send(protocol, {"type": "ping"}) == [Pong()]


def test_an_error_answers_with_the_id_of_the_message_it_is_about() -> None:
    protocol = started()
    (error,) = send(protocol, {"type": "dance", "id": "x1"})
    assert error.id == "x1" and error.details == {"received_type": "dance"}


def test_a_message_over_the_size_limit_is_refused_and_the_session_goes_on() -> None:
    protocol = started()
    out = protocol.receive("x" * 2000, LIMITS)
    assert codes(out) == ["message_too_large"] and not out[0].fatal and len(out) == 1
    assert send(protocol, {"type": "ping"}) == [Pong()]


def test_rate_limited_messages_are_refused_then_abuse_closes_with_1008() -> None:
    protocol = SessionProtocol()
    slow = Limits(max_message_bytes=1024, max_text_chars=100, max_messages_per_s=1)
    answers = [protocol.receive('{"type": "ping"}', slow) for _ in range(110)]
    assert answers[0] == [StartSession(Start()), Pong()]  # a burst of two
    assert answers[2] == [Error("rate_limited", "over 1 messages/s", False)]
    fatal = answers[102]  # the 101st refused in a row
    assert [(e.code, e.fatal) for e in fatal if isinstance(e, Error)] == [("rate_limited", True)]
    assert fatal[-1] == Close(CLOSE_POLICY, "rate_limited")
    assert answers[103:] == [[]] * 7  # closing: nothing more is answered


def test_the_answer_goes_in_the_encoding_of_the_last_message() -> None:
    protocol = started()
    send(protocol, {"type": "ping"}, binary=True)
    assert protocol.binary
    send(protocol, {"type": "ping"})
    assert not protocol.binary


# ---- events on the wire ----------------------------------------------------------------------------


def test_events_put_on_the_wire_as_docs_protocol_md_shows_them() -> None:
    ready = Ready("s1", "tok", 0, "espeak", "en-us", "en", 1.0, 0, None, AudioFormat("mp3", 24000))
    assert orjson.loads(encode(ready, binary=False)) == {
        "type": "ready", "session_id": "s1", "resume_token": "tok", "protocol": 1, "generation": 0,
        "engine": "espeak", "voice": "en-us", "language": "en", "speed": 1.0, "text_offset": 0,
        "last_seq": None, "audio": {"format": "mp3", "sample_rate": 24000, "channels": 1},
    }  # fmt: skip
    audio = Audio(2, "pcm", 24000, 960, 0, 12, b"\x00\x01", seq=5)
    assert msgpack.unpackb(encode(audio, binary=True)) == {
        "type": "audio", "generation": 2, "format": "pcm", "sample_rate": 24000, "samples": 960,
        "text_start": 0, "text_end": 12, "data": b"\x00\x01", "seq": 5,
    }  # fmt: skip
    assert Done(1, 120.0, id="f").to_wire() == {
        "type": "done",
        "generation": 1,
        "audio_ms": 120.0,
        "id": "f",
        "seq_last": None,
    }
    assert Done(1, 0.0, rejected=True).to_wire()["rejected"] is True
    assert ChunkEnd(0, 3, 80.0, 12.5, 4.0, None, seq_last=7).to_wire()["seq_last"] == 7
    assert Interrupted(4, last_seq=11).to_wire() == {"type": "interrupted", "generation": 4, "last_seq": 11}
    error = Error("rate_limited", "slow down", False, 3, {"retry_after": 1, "type": "not this"})
    assert error.to_wire() == {
        "type": "error", "code": "rate_limited", "message": "slow down", "fatal": False, "id": 3,
        "retry_after": 1,
    }  # fmt: skip
