"""streamer.client against a real server: turns, token streams, barge-in, events, msgpack, resume, REST."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from streamer.client import (
    AsyncRestClient,
    AudioFrame,
    ClientError,
    HandshakeRefused,
    RestClient,
    RestError,
    ServerError,
    StreamerClient,
)

from .conftest import TIMESCALE, ServerProcess, running_server
from .helpers import decode_audio, rms

PARAGRAPH = (
    "Once upon a time, in a kingdom by the sea, there lived a princess who loved to read. "
    "Every morning she walked to the library, picked a book at random, and read it aloud to the birds. "
    "The birds, for their part, preferred songs, but they listened politely all the same. "
    "One day a stranger arrived with a book that had no words in it at all."
)
TURN_TIMEOUT = 30 * TIMESCALE


def assert_speech(data: bytes, fmt: str | None = None, rate: int | None = None, min_s: float = 0.3) -> float:
    samples, sample_rate = decode_audio(data, fmt, rate)
    seconds = len(samples) / sample_rate
    assert seconds >= min_s, seconds
    assert rms(samples) > 0.01, "silence"
    return seconds


def assert_gap_free(frames: list[AudioFrame]) -> None:
    seqs = [frame.seq for frame in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


async def tokens(text: str, delay: float = 0.0, sent: list[str] | None = None) -> AsyncIterator[str]:
    for word in text.split(" "):
        if delay:
            await asyncio.sleep(delay)
        if sent is not None:
            sent.append(word)
        yield word + " "


async def test_say_returns_decodable_audio_and_timings(espeak_server: ServerProcess) -> None:
    async with StreamerClient.connect(espeak_server.ws_url, format="ogg") as session:
        assert session.ready is not None and session.ready["generation"] == 0
        assert session.audio_format == {"format": "ogg", "sample_rate": 24000, "channels": 1}
        turn = await session.say("Hello there. How are you today?", timeout=TURN_TIMEOUT)
    assert turn.completed and not turn.rejected and turn.interrupted is None
    assert turn.done is not None and turn.done["id"] == turn.id and turn.done["generation"] == 0
    assert turn.format == "ogg" and turn.sample_rate == 24000
    seconds = assert_speech(turn.audio, min_s=0.8)
    assert abs(seconds * 1000 - turn.done["audio_ms"]) < 100  # the codec pads a little
    assert turn.ttfa_ms is not None and 0 < turn.ttfa_ms < 5000 * TIMESCALE
    assert_gap_free(turn.frames)
    assert turn.events[0].type == "chunk_start"


async def test_say_pcm_turns_keep_one_generation_and_continue_seq(espeak_server: ServerProcess) -> None:
    async with StreamerClient.connect(espeak_server.ws_url) as session:
        first = await session.say("The first turn.", timeout=TURN_TIMEOUT)
        second = await session.say("And the second one.", timeout=TURN_TIMEOUT)
    assert first.format == "pcm"
    assert_speech(first.audio, "pcm", first.sample_rate)
    assert abs(first.audio_ms - first.done["audio_ms"]) < 1  # type: ignore[index]
    assert second.frames[0].seq == first.frames[-1].seq + 1
    assert {f.generation for f in first.frames + second.frames} == {0}
    assert session.last_seq == second.frames[-1].seq


async def test_stream_of_token_pieces_is_one_turn(espeak_server: ServerProcess) -> None:
    async with StreamerClient.connect(espeak_server.ws_url) as session:
        turn = await session.stream(tokens(PARAGRAPH, delay=0.002), timeout=TURN_TIMEOUT)
        listed = await session.stream(["Sync ", "pieces ", "work ", "too."], timeout=TURN_TIMEOUT)
    assert turn.completed and turn.text == PARAGRAPH + " "
    spoken = [e["text"] for e in turn.events if e.type == "chunk_start"]
    assert len(spoken) >= 3 and " ".join(spoken) == PARAGRAPH
    assert_speech(turn.audio, "pcm", turn.sample_rate, min_s=8)
    assert_gap_free(turn.frames)
    assert listed.completed and listed.text == "Sync pieces work too."
    assert_speech(listed.audio, "pcm", listed.sample_rate)


async def test_a_failing_text_source_raises_and_the_session_goes_on(espeak_server: ServerProcess) -> None:
    async def broken() -> AsyncIterator[str]:
        yield "Hello "
        raise ValueError("the model crashed")

    async with StreamerClient.connect(espeak_server.ws_url) as session:
        with pytest.raises(ClientError) as info:
            await session.stream(broken(), timeout=TURN_TIMEOUT)
        assert isinstance(info.value.__cause__, ValueError)
        turn = await session.say("Still here.", timeout=TURN_TIMEOUT)
    assert turn.completed and turn.frames


async def test_interrupt_stops_a_token_stream_and_nothing_stale_follows(espeak_server: ServerProcess) -> None:
    async with StreamerClient.connect(espeak_server.ws_url) as session:
        for _ in range(3):
            sent: list[str] = []
            streaming = asyncio.create_task(
                session.stream(tokens(PARAGRAPH, 0.01 * TIMESCALE, sent), timeout=TURN_TIMEOUT)
            )
            await asyncio.sleep(0.4 * TIMESCALE)
            generation = session.generation
            ack = await session.interrupt()
            turn = await streaming
            assert ack["generation"] == generation + 1 == session.generation
            assert ack.latency_ms is not None and ack.latency_ms < 2000 * TIMESCALE
            assert turn.interrupted is not None and turn.interrupted["generation"] == ack["generation"]
            assert turn.done is None and not turn.completed
            assert len(sent) < len(PARAGRAPH.split(" ")), "the source was not stopped"
            assert all(f.generation == generation and f.seq <= ack["last_seq"] for f in turn.frames)
            after = await session.say("All clear.", timeout=TURN_TIMEOUT)
            assert after.completed and {f.generation for f in after.frames} == {ack["generation"]}
            assert after.frames[0].seq == ack["last_seq"] + 1
    assert session.stats.stale_after_ack == 0


async def test_interrupt_drops_queued_audio_of_a_slow_consumer(espeak_server: ServerProcess) -> None:
    """A consumer reading at playing pace has audio queued: the interrupt drops it, and only it."""
    async with StreamerClient.connect(espeak_server.ws_url, max_queue=16) as session:
        for round_ in range(4):
            await session.send_text(PARAGRAPH, flush=True)
            events = session.events()
            for _ in range(3 + round_ * 5):
                message = await anext(events)
                await asyncio.sleep(0.01)
            old = session.generation
            ack = await session.interrupt()
            assert session.stats.dropped > 0
            message = await anext(events)
            assert message.type == "interrupted" and message["generation"] == ack["generation"] == old + 1
            answer_id = await session.send_text("Go on.", flush=True)
            async for message in events:
                assert message.type == "interrupted" or (message.generation or 0) >= ack["generation"]
                if message.type == "done" and message["id"] == answer_id:
                    break
    assert session.stats.stale_after_ack == 0


async def test_events_iteration_in_order(espeak_server: ServerProcess) -> None:
    async with StreamerClient.connect(espeak_server.ws_url) as session:
        message_id = await session.send_text("One sentence here. Then another sentence.", flush=True)
        received: list[Any] = []
        async for message in session.events():
            received.append(message)
            if message.type == "done":
                break
        kinds = [m.type for m in received]
        assert kinds[0] == "chunk_start" and kinds[-1] == "done" and "audio" in kinds
        assert kinds.count("chunk_start") == kinds.count("chunk_end") >= 1
        assert received[-1]["id"] == message_id
        assert_gap_free([m for m in received if isinstance(m, AudioFrame)])

        # One reader at a time: a second one while another waits is a programming error.
        reader = asyncio.create_task(anext(session.events()))
        await asyncio.sleep(0)  # the task now waits for a message
        with pytest.raises(RuntimeError, match="already reading"):
            await session.say("Two readers at once.", timeout=TURN_TIMEOUT)
        assert (await reader).type == "chunk_start"


async def test_msgpack_control_messages(espeak_server: ServerProcess) -> None:
    async with StreamerClient.connect(espeak_server.ws_url, binary=True, format="wav") as session:
        kinds: list[type] = []
        dispatch = session._dispatch

        async def spy(raw: str | bytes) -> None:
            kinds.append(type(raw))
            await dispatch(raw)

        session._dispatch = spy  # type: ignore[method-assign]
        pong = await session.ping()
        assert pong.latency_ms is not None and pong["id"]
        configured = await session.config(speed=1.5)
        assert configured["speed"] == 1.5
        turn = await session.say("Spoken over msgpack.", timeout=TURN_TIMEOUT)
    assert set(kinds) == {bytes}, "the server answers msgpack in kind"
    assert turn.completed and turn.format == "wav"
    assert_speech(turn.audio)


async def test_config_changes_voice_and_format_mid_session(espeak_server: ServerProcess) -> None:
    async with StreamerClient.connect(espeak_server.ws_url, voice="en-us") as session:
        before = await session.say("In raw samples.", timeout=TURN_TIMEOUT)
        configured = await session.config(format="mp3", voice="en-gb")
        assert configured["voice"] == "en-gb" and configured["audio"]["format"] == "mp3"
        assert session.audio_format["format"] == "mp3"
        after = await session.say("Now in MP3.", timeout=TURN_TIMEOUT)
    assert before.format == "pcm" and after.format == "mp3"
    assert_speech(after.audio)


async def test_resume_continues_the_session(espeak_server: ServerProcess) -> None:
    async with StreamerClient.connect(espeak_server.ws_url) as first:
        turn = await first.say("Before the network dropped.", timeout=TURN_TIMEOUT)
        session_id, token, generation = first.session_id, first.resume_token, first.generation
    async with StreamerClient.connect(
        espeak_server.ws_url_on_http_port, session_id=session_id, resume_token=token
    ) as second:
        assert second.session_id == session_id
        assert second.generation == generation + 1  # a resumed session speaks in a new generation
        assert second.ready is not None and second.ready["last_seq"] == turn.frames[-1].seq
        again = await second.say("And after it came back.", timeout=TURN_TIMEOUT)
    assert again.frames[0].seq == turn.frames[-1].seq + 1
    assert {f.generation for f in again.frames} == {generation + 1}
    with pytest.raises(ServerError) as info:
        await StreamerClient.connect(espeak_server.ws_url, session_id=session_id, resume_token=token + "x")
    assert info.value.code == "invalid_token"


async def test_errors_answer_the_request_and_the_session_goes_on(espeak_server: ServerProcess) -> None:
    with pytest.raises(ServerError) as info:
        await StreamerClient.connect(espeak_server.ws_url, voice="no-such-voice")
    assert info.value.code == "unknown_voice" and not info.value.fatal
    with pytest.raises(TypeError, match="unknown session setting"):
        StreamerClient.connect(espeak_server.ws_url, colour="blue")
    async with StreamerClient.connect(espeak_server.ws_url) as session:
        with pytest.raises(ServerError) as info:
            await session.config(voice="no-such-voice")
        assert info.value.code == "unknown_voice"
        with pytest.raises(ServerError) as info:
            await session.say("x" * 10_001, timeout=TURN_TIMEOUT)
        assert info.value.code == "text_too_long"
        turn = await session.say("Still speaking.", timeout=TURN_TIMEOUT)
        assert turn.completed


async def test_a_rest_interrupt_ends_the_turn(espeak_server: ServerProcess) -> None:
    async with StreamerClient.connect(espeak_server.ws_url, max_queue=8) as session:
        await session.send_text(PARAGRAPH, flush=True)
        events = session.events()
        while not isinstance(await anext(events), AudioFrame):
            pass
        with RestClient(espeak_server.http_url) as rest:
            answer = rest.interrupt(session.session_id)
        assert answer["generation"] == 1
        message = await anext(events)
        while message.type != "interrupted":  # what the server sent before it heard of the interrupt
            assert message.generation == 0
            message = await anext(events)
        assert message.type == "interrupted" and message["generation"] == 1
        assert session.generation == 1
        turn = await session.say("After the REST interrupt.", timeout=TURN_TIMEOUT)
    assert {f.generation for f in turn.frames} == {1}
    assert session.stats.stale_after_ack == 0


async def test_end_speaks_what_is_buffered_then_closes(espeak_server: ServerProcess) -> None:
    async with StreamerClient.connect(espeak_server.ws_url) as session:
        await session.send_text("These are the last words")
        turn = await session.end(timeout=TURN_TIMEOUT)
        assert turn.completed and turn.frames
        assert session.closed and session.close_code == 1000
        with pytest.raises(ClientError):
            await session.say("Too late.")


async def test_api_key_in_header_or_query(tmp_path: Path) -> None:
    config = {"tts": {"engine": "espeak"}, "pool": {"workers": 1}, "security": {"api_keys": ["sesame"]}}
    with running_server(tmp_path, config) as server:
        with pytest.raises(HandshakeRefused) as info:
            await StreamerClient.connect(server.ws_url)
        assert info.value.status == 401
        for where in ("header", "query"):
            async with StreamerClient.connect(server.ws_url, api_key="sesame", api_key_in=where) as session:
                assert (await session.say("Open.", timeout=TURN_TIMEOUT)).completed
        with RestClient(server.http_url) as anonymous, pytest.raises(RestError) as refused:
            anonymous.get_config()
        assert refused.value.status == 401 and refused.value.error_type == "unauthorized"
        with RestClient(server.http_url, api_key="sesame") as rest:
            assert rest.get_config()["security"]["api_keys"]


def test_rest_client_every_helper(espeak_server: ServerProcess) -> None:
    with RestClient(espeak_server.http_url) as rest:
        assert rest.health()["status"] == "healthy"
        assert rest.ready()["status"] == "ready"
        assert rest.status()["tts_engine"]["engine"] == "espeak"
        assert "total_requests" in rest.metrics()
        try:
            assert "streamer" in rest.prometheus_metrics()
        except RestError as exc:  # the Prometheus route is optional
            assert exc.status == 404

        config = rest.get_config()
        assert config["tts"]["engine"] == "espeak"
        updated = rest.update_config({"tts": {"default_speed": 1.0}})
        assert updated["status"] == "success"
        assert rest.reload_config()["status"] == "success"
        assert Path(rest.save_config()["path"]).name == "config.yaml"
        with pytest.raises(RestError) as info:
            rest.update_config({"tts": {"default_speed": 99}})
        assert info.value.status == 422 and info.value.request_id

        groups = rest.voices(language="en")
        assert groups and groups[0]["code"] == "en" and groups[0]["speakers"]
        assert any(v["name"] == "en-us" for v in rest.engine_voices("espeak", language="en"))
        assert "en" in rest.languages()["supported_languages"]
        assert "espeak" in [e["name"] for e in rest.engines(available_only=True)]
        assert len(rest.engines()) >= len(rest.engines(available_only=True))
        assert rest.engine("espeak")["available"]
        assert "wav" in rest.formats()["formats"]

        created = rest.create_session({"language": "en", "voice_id": 0}, format="wav")
        session_id = created["session_id"]
        assert created["config"]["format"] == "wav" and created["resume_token"] and created["ws_url"]
        assert rest.get_session(session_id)["connected"] is False
        assert session_id in [s["session_id"] for s in rest.list_sessions()["sessions"]]
        page = rest.list_sessions(limit=1)
        assert len(page["sessions"]) == 1 and page["total"] >= 1 and page["limit"] == 1
        assert rest.interrupt(session_id)["generation"] == 1
        assert rest.interrupt_all()["interrupted"] >= 1
        assert rest.delete_session(session_id)["status"] == "success"
        with pytest.raises(RestError) as info:
            rest.get_session(session_id)
        assert info.value.status == 404 and info.value.error_type == "session_not_found"

        audio = rest.synth("Hello from the REST client.", format="wav")
        assert_speech(audio)


async def test_async_rest_client_and_a_rest_session_attached(espeak_server: ServerProcess) -> None:
    async with AsyncRestClient(espeak_server.http_url) as rest:
        assert (await rest.health())["status"] == "healthy"
        created = await rest.create_session(language="en", format="flac")
        async with StreamerClient.connect(
            created["ws_url"], session_id=created["session_id"], resume_token=created["resume_token"]
        ) as session:
            turn = await session.say("Attached to a REST session.", timeout=TURN_TIMEOUT)
        assert turn.format == "flac"
        assert_speech(turn.audio)
        assert (await rest.get_session(created["session_id"]))["chunks_done"] >= 1
        await rest.delete_session(created["session_id"])


def test_connect_refuses_a_url_that_is_not_a_websocket_naming_the_one_meant() -> None:
    from streamer.client import InvalidURL

    with pytest.raises(InvalidURL, match=r"the stream is at ws://127\.0\.0\.1:8080/api/v1/stream"):
        StreamerClient.connect("http://127.0.0.1:8080")
    with pytest.raises(ValueError, match="is not a WebSocket URL"):  # InvalidURL is a ValueError too
        StreamerClient.connect("127.0.0.1:8081")
