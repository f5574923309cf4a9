"""End to end: a real server on free loopback ports, a real `websockets` client, audio decoded with PyAV."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from streamer.audio import PHRASE_GAP_MS, s16le_to_float
from streamer.engines import create_engine
from streamer.engines.base import SynthesisRequest

from .conftest import HAS_PIPER, ServerProcess
from .helpers import Client, decode_audio, rms

TEXT = "The quick brown fox jumps over the lazy dog. Then it runs into the forest, far away from home."


def engine_seconds(engine: str, voice: str, text: str) -> float:
    """The engine's own output duration for the text, synthesized in this process."""
    instance = create_engine(engine, {})
    instance.load()
    rate = next(v.sample_rate for v in instance.voices() if v.name == voice)
    samples = sum(len(b) for b in instance.synthesize(SynthesisRequest(text, voice), lambda: False))
    return samples / rate


@pytest.mark.parametrize("fmt", ["pcm", "wav", "ogg", "mp3", "flac", "aac"])
async def test_every_format_decodes_to_speech_of_the_engine_length(
    espeak_server: ServerProcess, fmt: str
) -> None:
    async with await Client.connect(espeak_server.ws_url) as client:
        ready = await client.start(format=fmt)
        assert ready["audio"]["format"] == fmt
        turn = await client.say(TEXT)
    assert turn.audio, "no audio frames"
    assert all(frame["format"] == fmt for frame in turn.audio)
    samples, rate = decode_audio(turn.data, fmt, ready["audio"]["sample_rate"])
    seconds = len(samples) / rate
    expected = engine_seconds("espeak", ready["voice"], TEXT)
    assert abs(seconds - expected) <= 0.25 * expected, (seconds, expected)
    assert rms(samples) > 0.02, "decoded audio is silence"
    # Opus always decodes at 48 kHz: compare durations, not sample counts.
    announced = sum(f["samples"] / f["sample_rate"] for f in turn.audio)
    assert announced == pytest.approx(seconds, rel=0.1)
    seqs = [frame["seq"] for frame in turn.audio]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert turn.done["seq_last"] == seqs[-1]


async def test_ready_event_and_chunk_events_carry_the_contract_fields(espeak_server: ServerProcess) -> None:
    async with await Client.connect(espeak_server.ws_url) as client:
        ready = await client.start(engine="espeak", voice="en-us", speed=1.2, sample_rate=16000)
        for key in ("session_id", "resume_token", "protocol", "generation", "engine", "voice", "audio"):
            assert key in ready
        assert ready["protocol"] == 1 and ready["generation"] == 0
        assert ready["audio"] == {"format": "pcm", "sample_rate": 16000, "channels": 1}
        turn = await client.say("Hello there. General Kenobi!", timeout=20)
    starts, ends = turn.of_type("chunk_start"), turn.of_type("chunk_end")
    assert len(starts) == len(ends) >= 2
    for start in starts:
        assert start["text"] == "Hello there. General Kenobi!"[start["text_start"] : start["text_end"]]
    for end in ends:
        assert {"generation", "chunk", "seq_last", "audio_ms", "synth_ms"} <= set(end)
    for frame in turn.audio:
        assert {
            "generation",
            "seq",
            "format",
            "sample_rate",
            "samples",
            "text_start",
            "text_end",
            "data",
        } <= set(frame)
        assert frame["sample_rate"] == 16000
    assert turn.done["audio_ms"] > 500


async def test_text_streamed_in_tiny_pieces_sounds_as_long_as_one_message(
    espeak_server: ServerProcess,
) -> None:
    async with await Client.connect(espeak_server.ws_url) as client:
        await client.start()
        whole = await client.say(TEXT)
        rng = random.Random(7)
        position = 0
        while position < len(TEXT):
            size = rng.randint(1, 3)
            await client.send({"type": "text", "text": TEXT[position : position + size]})
            position += size
        await client.send({"type": "flush", "id": "pieces"})
        pieces = await client.until("done")
    assert pieces.done["id"] == "pieces"
    whole_samples = sum(f["samples"] for f in whole.audio)
    piece_samples = sum(f["samples"] for f in pieces.audio)
    assert piece_samples == pytest.approx(whole_samples, rel=0.10)
    spoken = "".join(e["text"] for e in pieces.of_type("chunk_start"))
    assert spoken.replace(" ", "") == TEXT.replace(" ", "")


async def test_both_ports_serve_the_stream_and_msgpack_control_is_answered_in_kind(
    espeak_server: ServerProcess,
) -> None:
    async with await Client.connect(espeak_server.ws_url_on_http_port, binary=True) as client:
        await client.start()
        raw = None
        await client.send({"type": "ping", "id": 5})
        raw = await asyncio.wait_for(client.ws.recv(), 5)
        assert isinstance(raw, bytes), "a msgpack ping must get a msgpack pong"
        turn = await client.say("Binary works too.")
        assert turn.audio and turn.done["type"] == "done"
        await client.send({"type": "ping", "id": 6}, binary=False)
        assert isinstance(await asyncio.wait_for(client.ws.recv(), 5), str)


async def test_first_text_starts_a_session_with_defaults(espeak_server: ServerProcess) -> None:
    async with await Client.connect(espeak_server.ws_url) as client:
        await client.send({"type": "text", "text": "No start message.", "flush": True})
        ready = await client.expect("ready")
        turn = await client.until("done")
    assert ready["engine"] == "espeak" and turn.audio


async def test_empty_flush_gets_done_at_once_and_ids_are_echoed(espeak_server: ServerProcess) -> None:
    async with await Client.connect(espeak_server.ws_url) as client:
        await client.start()
        await client.send({"type": "flush", "id": "nothing"})
        done = await client.expect("done")
        assert done["id"] == "nothing" and done["audio_ms"] == 0 and done["seq_last"] is None
        await client.send({"type": "ping", "id": "p1"})
        assert (await client.expect("pong"))["id"] == "p1"


async def test_idle_flush_speaks_complete_words_without_done(espeak_server: ServerProcess) -> None:
    async with await Client.connect(espeak_server.ws_url) as client:
        await client.start()
        await client.send({"type": "text", "text": "waiting for the model's next tok"})
        start = await client.expect("chunk_start", timeout=5)
        assert start["text"] == "waiting for the model's next"  # the half word "tok" waits
        turn = await client.until("chunk_end")
        assert turn.audio
        await client.send({"type": "text", "text": "en arrives.", "flush": True})
        rest = await client.until("done")
        assert "token arrives." in rest.of_type("chunk_start")[0]["text"]


async def test_config_changes_voice_from_the_next_chunk_and_format_from_the_next_turn(
    espeak_server: ServerProcess,
) -> None:
    async with await Client.connect(espeak_server.ws_url) as client:
        await client.start(voice="en-us")
        await client.send({"type": "config", "config": {"voice": "de", "format": "mp3", "speed": 1.5}})
        configured = await client.expect("configured")
        assert configured["voice"] == "de" and configured["audio"]["format"] == "mp3"
        turn = await client.say("Guten Tag.")
        assert {f["format"] for f in turn.audio} == {"mp3"}
        samples, _ = decode_audio(turn.data)
        assert rms(samples) > 0.02


async def test_end_finishes_the_buffered_text_then_closes_normally(espeak_server: ServerProcess) -> None:
    async with await Client.connect(espeak_server.ws_url) as client:
        await client.start()
        await client.send({"type": "text", "text": "Last words before the end"})
        await client.send({"type": "end", "id": "bye"})
        turn = await client.until("done")
        assert turn.done["id"] == "bye" and turn.audio
        with pytest.raises(ConnectionClosed):
            await client.recv(timeout=5)
        assert client.ws.close_code == 1000


async def test_four_concurrent_sessions_each_get_their_own_complete_audio(
    espeak_server: ServerProcess,
) -> None:
    texts = [
        f"Session number {n} says hello. It keeps on talking for a while, sentence after sentence."
        for n in range(4)
    ]

    async def one(text: str) -> tuple[str, float, int]:
        async with await Client.connect(espeak_server.ws_url) as client:
            ready = await client.start(format="pcm")
            turn = await client.say(text)
            samples, rate = decode_audio(turn.data, "pcm", ready["audio"]["sample_rate"])
            return ready["session_id"], len(samples) / rate, len(turn.of_type("error"))

    results = await asyncio.gather(*(one(t) for t in texts))
    assert len({r[0] for r in results}) == 4
    for _, seconds, errors in results:
        assert seconds > 2.0 and errors == 0


async def test_resume_continues_seq_and_offsets_in_a_new_generation(espeak_server: ServerProcess) -> None:
    async with await Client.connect(espeak_server.ws_url) as client:
        ready = await client.start(format="pcm")
        first = await client.say("Before the network dropped.")
    last_seq = first.done["seq_last"]
    async with await Client.connect(espeak_server.ws_url) as client:
        await client.send(
            {"type": "start", "session_id": ready["session_id"], "resume_token": ready["resume_token"]}
        )
        resumed = await client.expect("ready")
        assert resumed["session_id"] == ready["session_id"]
        assert resumed["generation"] == ready["generation"] + 1
        assert resumed["last_seq"] == last_seq
        assert resumed["text_offset"] == len("Before the network dropped.")
        turn = await client.say("After it came back.")
    assert turn.audio[0]["seq"] == last_seq + 1
    assert turn.audio[0]["generation"] == resumed["generation"]
    start = turn.of_type("chunk_start")[0]
    assert start["text_start"] == resumed["text_offset"]


@pytest.mark.piper
@pytest.mark.skipif(not HAS_PIPER, reason="the [piper] extra is not installed")
async def test_piper_session_streams_neural_speech(piper_server: ServerProcess) -> None:
    async with await Client.connect(piper_server.ws_url) as client:
        ready = await client.start(format="ogg")
        assert ready["engine"] == "piper" and ready["voice"] == "en_US-joe-medium"
        turn = await client.say("Neural speech, streamed as Opus in Ogg.")
    samples, rate = decode_audio(turn.data)
    expected = engine_seconds("piper", "en_US-joe-medium", "Neural speech, streamed as Opus in Ogg.")
    assert abs(len(samples) / rate - expected) <= 0.25 * expected
    assert rms(samples) > 0.02
    assert np.isfinite(samples).all()


@pytest.mark.piper
@pytest.mark.skipif(not HAS_PIPER, reason="the [piper] extra is not installed")
async def test_a_first_chunk_cut_inside_a_phrase_loses_its_sentence_pause(
    piper_server: ServerProcess,
) -> None:
    text = "It is twelve degrees and cloudy in Amsterdam right now, with light rain."
    async with await Client.connect(piper_server.ws_url) as client:
        await client.start(format="pcm", sample_rate=22050)  # the voice's own rate: no resampling
        turn = await client.say(text)
    starts = turn.of_type("chunk_start")
    assert [s["text"] for s in starts] == ["It is twelve degrees", text[21:]]

    def chunk_audio(start: int) -> np.ndarray:
        data = b"".join(f["data"] for f in turn.audio if f["text_start"] == start)
        return s16le_to_float(data)

    def trailing_quiet_ms(samples: np.ndarray) -> float:
        loud = np.flatnonzero(np.abs(samples) >= 10 ** (-45 / 20))
        return (len(samples) - loud[-1] - 1) * 1000 / 22050

    first, last = chunk_audio(0), chunk_audio(starts[1]["text_start"])
    assert rms(first) > 0.02 and rms(last) > 0.02
    # piper ends every chunk with a sentence's pause (about 140 ms after "degrees", 80-200 ms after a
    # real sentence end); cut inside a phrase, the first keeps only a short gap between words; the last,
    # a sentence end, keeps its pause
    assert trailing_quiet_ms(first) <= PHRASE_GAP_MS + 5
    assert trailing_quiet_ms(last) > PHRASE_GAP_MS + 15


async def test_resume_with_new_audio_settings_applies_them_at_once(espeak_server: ServerProcess) -> None:
    async with await Client.connect(espeak_server.ws_url) as client:
        ready = await client.start(format="pcm")
    async with await Client.connect(espeak_server.ws_url) as client:
        await client.send(
            {
                "type": "start",
                "session_id": ready["session_id"],
                "resume_token": ready["resume_token"],
                "config": {"format": "mp3", "sample_rate": 16000},
            }
        )
        resumed = await client.expect("ready")
        assert resumed["audio"] == {"format": "mp3", "sample_rate": 16000, "channels": 1}
        turn = await client.say("The first turn after resuming is already mp3.")
    assert {f["format"] for f in turn.audio} == {"mp3"}


@pytest.mark.piper
@pytest.mark.skipif(not HAS_PIPER, reason="the [piper] extra is not installed")
async def test_a_voice_name_alone_finds_its_engine(piper_server: ServerProcess) -> None:
    async with await Client.connect(piper_server.ws_url) as client:
        ready = await client.start(voice="en-us")  # an espeak voice; the default engine is piper
        assert ready["engine"] == "espeak" and ready["voice"] == "en-us"
        await client.send({"type": "config", "config": {"voice": "en_US-joe-medium"}})
        configured = await client.expect("configured")
        assert configured["engine"] == "piper"


async def test_a_format_change_announced_before_a_disconnect_survives_the_resume(
    espeak_server: ServerProcess,
) -> None:
    async with await Client.connect(espeak_server.ws_url) as client:
        ready = await client.start(format="pcm")
        await client.send({"type": "text", "text": "Half a turn"})
        await client.send({"type": "config", "config": {"format": "flac"}})
        assert (await client.until("configured")).events[-1]["audio"]["format"] == "flac"
    async with await Client.connect(espeak_server.ws_url) as client:
        await client.send(
            {"type": "start", "session_id": ready["session_id"], "resume_token": ready["resume_token"]}
        )
        resumed = await client.expect("ready")
        assert resumed["audio"]["format"] == "flac"
