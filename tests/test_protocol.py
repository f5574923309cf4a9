"""The sans-I/O protocol: bytes in, typed messages or stable error codes out. No sockets."""

from __future__ import annotations

import msgpack
import orjson
import pytest

from streamer.errors import StreamerError
from streamer.protocol import (
    Config,
    End,
    Flush,
    Interrupt,
    Ping,
    RateLimiter,
    Start,
    Text,
    decode,
    encode,
    parse,
)

MAX_BYTES = 1024
MAX_TEXT = 100


def parse_raw(raw: str | bytes) -> object:
    return parse(decode(raw, MAX_BYTES), MAX_TEXT)


def error_code(raw: str | bytes) -> str:
    with pytest.raises(StreamerError) as info:
        parse_raw(raw)
    return info.value.code


@pytest.mark.parametrize("binary", [False, True])
def test_every_client_message_parses_in_both_encodings(binary: bool) -> None:
    def wire(obj: dict[str, object]) -> str | bytes:
        return msgpack.packb(obj) if binary else orjson.dumps(obj).decode()

    assert parse_raw(wire({"type": "text", "text": "Hi", "flush": True, "id": 7})) == Text("Hi", True, 7)
    assert parse_raw(wire({"type": "flush", "id": "a"})) == Flush("a")
    assert parse_raw(wire({"type": "interrupt"})) == Interrupt()
    assert parse_raw(wire({"type": "end"})) == End(None)
    assert parse_raw(wire({"type": "ping", "id": 1})) == Ping(1)
    config = parse_raw(wire({"type": "config", "config": {"voice": "en-us", "speed": 1.5, "format": "mp3"}}))
    assert isinstance(config, Config)
    assert config.config.items() == {"voice": "en-us", "speed": 1.5, "format": "mp3"}
    start = parse_raw(
        wire({"type": "start", "protocol": 1, "config": {"engine": "espeak", "sample_rate": 16000}})
    )
    assert isinstance(start, Start)
    assert start.config.engine == "espeak" and start.config.sample_rate == 16000


def test_an_empty_string_in_a_config_is_a_value_not_unset() -> None:
    sent = {"engine": "", "language": "", "format": "", "voice": ""}
    for kind in ("config", "start"):
        message = parse_raw(orjson.dumps({"type": kind, "config": sent}).decode())
        assert isinstance(message, Config | Start)
        assert message.config.items() == sent  # the runtime refuses each by name


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    assert parse_raw('{"type": "text", "text": "x", "future": [1, 2]}') == Text("x")


def test_blend_voice_is_parsed_as_weights() -> None:
    message = parse_raw('{"type": "config", "config": {"voice": {"EN-US": 0.6, "EN-BR": 0.4}}}')
    assert isinstance(message, Config)
    assert message.config.voice == {"EN-US": 0.6, "EN-BR": 0.4}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "invalid_message"),
        ("[1, 2]", "invalid_message"),
        ('"text"', "invalid_message"),
        (b"\xc1", "invalid_message"),  # a byte msgpack never uses
        (msgpack.packb([1]), "invalid_message"),
        (b"\x81\xa4type\xa4\xff\xfe\xfd\xfc", "invalid_message"),  # msgpack str holding invalid UTF-8
        ('{"type": "shout"}', "unknown_type"),
        ('{"text": "no type"}', "invalid_field"),
        ('{"type": 3}', "invalid_field"),
        ('{"type": "text"}', "invalid_field"),
        ('{"type": "text", "text": 5}', "invalid_field"),
        ('{"type": "text", "text": "x", "flush": "yes"}', "invalid_field"),
        ('{"type": "text", "text": "x", "id": [1]}', "invalid_field"),
        ('{"type": "config"}', "invalid_field"),
        ('{"type": "config", "config": "fast"}', "invalid_field"),
        ('{"type": "config", "config": {"speed": 9}}', "invalid_field"),
        ('{"type": "config", "config": {"speed": true}}', "invalid_field"),
        ('{"type": "config", "config": {"sample_rate": 100}}', "invalid_field"),
        ('{"type": "config", "config": {"voice": 12}}', "invalid_field"),
        ('{"type": "config", "config": {"voice": {"A": "x"}}}', "invalid_field"),
        ('{"type": "start", "protocol": 2}', "unsupported_protocol"),
        ('{"type": "start", "session_id": "abc"}', "invalid_field"),
        ('{"type": "text", "text": "' + "x" * (MAX_TEXT + 1) + '"}', "text_too_long"),
        ('{"type": "text", "text": "' + "x" * MAX_BYTES + '"}', "message_too_large"),
    ],
)
def test_bad_input_gets_a_stable_code(raw: str | bytes, code: str) -> None:
    assert error_code(raw) == code


def test_only_unsupported_protocol_is_fatal_among_parse_errors() -> None:
    with pytest.raises(StreamerError) as info:
        parse_raw('{"type": "start", "protocol": 9}')
    assert info.value.fatal
    with pytest.raises(StreamerError) as info:
        parse_raw('{"type": "nope"}')
    assert not info.value.fatal


def test_size_limit_counts_utf8_bytes_not_characters() -> None:
    text = "é" * 400  # 800 bytes of text: with the JSON around it, over 1024? no: 800 + 28 < 1024
    assert parse(decode(orjson.dumps({"type": "text", "text": text}).decode(), MAX_BYTES), 1000) == Text(text)
    with pytest.raises(StreamerError) as info:
        decode(orjson.dumps({"type": "text", "text": "é" * 600}).decode(), MAX_BYTES)
    assert info.value.code == "message_too_large"


def test_encode_answers_in_either_encoding_and_audio_bytes_stay_bytes() -> None:
    event = {"type": "audio", "seq": 3, "data": b"\x00\x01"}
    assert msgpack.unpackb(encode(event, binary=True)) == event
    assert orjson.loads(encode({"type": "pong", "id": 1}, binary=False)) == {"type": "pong", "id": 1}


def test_rate_limiter_allows_bursts_then_refuses_then_recovers() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=10, burst=5, abuse_after=3, clock=lambda: now[0])
    assert all(limiter.allow() for _ in range(5))
    assert not limiter.allow()
    assert not limiter.abusive
    for _ in range(3):
        limiter.allow()
    assert limiter.abusive
    now[0] += 1.0  # ten tokens back, capped at the burst of five
    assert all(limiter.allow() for _ in range(5))
    assert not limiter.abusive
    assert not limiter.allow()
