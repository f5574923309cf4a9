"""One-shot synthesis end to end: POST /api/v1/synth, and /v1/audio/speech through the official OpenAI SDK."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai import OpenAI

from .conftest import HAS_PIPER, TIMESCALE, ServerProcess, running_server
from .helpers import decode_audio, rms

needs_piper = pytest.mark.skipif(not HAS_PIPER, reason="the [piper] extra is not installed")

TEXT = "The quick brown fox jumps over the lazy dog. Then it runs into the forest, far away from home."
SENTENCES = " ".join(
    f"This is sentence number {n}, and it is long enough to take the engine a moment to speak."
    for n in range(1, 9)
)
LONG = (
    "The committee met on Tuesday to discuss the budget for the coming year, and after a long debate about "
    "roads, schools and the new library, it agreed to postpone the decision until the spring. "
    "Nobody was entirely happy with the outcome, but everybody agreed that it was the best they could do. "
    "The mayor thanked the members for their patience and promised a shorter meeting next time. "
) * 4
MIME = {
    "pcm": "audio/l16",
    "wav": "audio/wav",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "aac": "audio/aac",
}
OPENAI_TO_OURS = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav", "pcm": "pcm"}


def synth(server: ServerProcess, body: Any, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{server.http_url}/api/v1/synth", json=body, timeout=timeout * TIMESCALE)


@pytest.fixture
def client() -> Iterator[Callable[[ServerProcess], OpenAI]]:
    """Makes OpenAI SDK clients for a server; each is closed (its sockets too) when the test ends."""
    made: list[OpenAI] = []

    def make(server: ServerProcess) -> OpenAI:
        made.append(OpenAI(base_url=f"{server.http_url}/v1", api_key="x", max_retries=0))
        return made[-1]

    yield make
    for sdk in made:
        sdk.close()


def status(server: ServerProcess) -> dict[str, Any]:
    return httpx.get(f"{server.http_url}/api/v1/status", timeout=5).json()


def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout * TIMESCALE
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def pool_idle(server: ServerProcess) -> bool:
    pool = status(server)["pool"]
    return pool["busy_workers"] == 0 and pool["queue_depth"] == 0


def oneshot_lines(server: ServerProcess) -> list[dict[str, Any]]:
    lines = []
    for raw in server.log().splitlines():
        if '"oneshot_finished"' in raw:
            lines.append(orjson.loads(raw))
    return lines


def seconds(data: bytes, fmt: str, sample_rate: int) -> float:
    samples, rate = decode_audio(data, fmt, sample_rate)
    return len(samples) / rate


# ---- POST /api/v1/synth ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["pcm", "wav", "ogg", "mp3", "flac", "aac"])
def test_synth_answers_a_whole_file_with_consistent_headers(espeak_server: ServerProcess, fmt: str) -> None:
    response = synth(espeak_server, {"text": TEXT, "format": fmt})
    assert response.status_code == 200, response.text
    headers = response.headers
    assert headers["content-type"].lower().startswith(MIME[fmt])
    assert headers["content-disposition"] == f"attachment; filename=synthesis.{fmt}"
    assert int(headers["x-audio-size"]) == len(response.content) > 0
    assert headers["x-engine-used"] == "espeak" and headers["x-voice-used"]
    rate = int(headers["x-audio-sample-rate"])
    samples, decoded_rate = decode_audio(response.content, fmt, rate)
    duration = float(headers["x-audio-duration"])
    assert duration > 3.0
    # Lossy codecs add a few tens of ms of priming and padding.
    assert abs(len(samples) / decoded_rate - duration) <= 0.1 + 0.03 * duration
    assert rms(samples) > 0.02, "decoded audio is silence"


def test_synth_wav_is_a_finished_file_with_real_sizes(espeak_server: ServerProcess) -> None:
    data = synth(espeak_server, {"text": "Hello there.", "format": "wav", "sample_rate": 16000}).content
    riff_size, data_size = struct.unpack_from("<I", data, 4)[0], struct.unpack_from("<I", data, 40)[0]
    assert (riff_size, data_size) == (len(data) - 8, len(data) - 44)
    _, rate = decode_audio(data, "wav")
    assert rate == 16000


def test_synth_defaults_to_ogg_and_honours_rate_lang_and_voice(espeak_server: ServerProcess) -> None:
    default = synth(espeak_server, {"text": TEXT})
    assert default.headers["content-type"] == "audio/ogg"
    assert default.headers["content-disposition"].endswith("synthesis.ogg")
    fast = synth(espeak_server, {"text": TEXT, "rate": 2.0, "pitch": 0})
    assert float(fast.headers["x-audio-duration"]) < 0.75 * float(default.headers["x-audio-duration"])
    spanish = synth(espeak_server, {"text": "Hola, ¿qué tal?", "lang": "es", "format": "wav"})
    assert spanish.headers["x-voice-used"].startswith("es")
    named = synth(espeak_server, {"text": "Hello.", "voice": "en-gb", "engine": "espeak", "format": "mp3"})
    assert named.status_code == 200 and named.headers["x-voice-used"] == "en-gb"


@needs_piper
def test_synth_without_engine_picks_the_engine_that_has_the_voice(espeak_server: ServerProcess) -> None:
    response = synth(espeak_server, {"text": "Hello.", "voice": "en_US-joe-medium", "format": "wav"}, 60)
    assert response.status_code == 200, response.text
    assert response.headers["x-engine-used"] == "piper"
    assert response.headers["x-voice-used"] == "en_US-joe-medium"


@pytest.mark.parametrize(
    ("body", "field", "error_type"),
    [
        ({}, "text", "invalid_field"),
        ({"text": ""}, "text", "invalid_field"),
        ({"text": "   \n"}, "text", "invalid_field"),
        ({"text": 5}, "text", "invalid_field"),
        ({"text": "a " * 5001}, "text", "invalid_field"),  # limits.max_text_chars: 10000
        ({"text": "Hi.", "voice": "nobody"}, "voice", "unknown_voice"),
        ({"text": "Hi.", "voice": {"en": 1.0}}, "voice", "invalid_field"),  # espeak cannot blend
        ({"text": "Hi.", "voice": ["en"]}, "voice", "invalid_field"),
        ({"text": "Hi.", "lang": "xx"}, "lang", "unknown_voice"),
        ({"text": "Hi.", "engine": "nope"}, "engine", "unknown_engine"),
        ({"text": "Hi.", "format": "wma"}, "format", "unsupported_format"),
        ({"text": "Hi.", "rate": 0.1}, "rate", "invalid_field"),
        ({"text": "Hi.", "rate": 5}, "rate", "invalid_field"),
        ({"text": "Hi.", "rate": "fast"}, "rate", "invalid_field"),
        ({"text": "Hi.", "pitch": 2}, "pitch", "invalid_field"),
        ({"text": "Hi.", "sample_rate": 1000}, "sample_rate", "invalid_field"),
        ({"text": "Hi.", "colour": "red"}, "colour", "invalid_field"),
    ],
)
def test_synth_rejects_bad_fields_with_422_naming_the_field(
    espeak_server: ServerProcess, body: dict[str, Any], field: str, error_type: str
) -> None:
    response = synth(espeak_server, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert set(error) == {"detail", "error_type", "request_id"}
    assert error["error_type"] == error_type
    assert error["request_id"] == response.headers["x-request-id"]
    assert error["detail"][0]["loc"] == ["body", field]
    assert isinstance(error["detail"][0]["msg"], str) and error["detail"][0]["msg"]


def test_synth_takes_speed_and_language_as_other_names_of_rate_and_lang(espeak_server: ServerProcess) -> None:
    default = synth(espeak_server, {"text": TEXT, "format": "wav"})
    fast = synth(espeak_server, {"text": TEXT, "format": "wav", "speed": 2.0})
    assert fast.status_code == 200, fast.text
    assert float(fast.headers["x-audio-duration"]) < 0.75 * float(default.headers["x-audio-duration"])
    spanish = synth(espeak_server, {"text": "Hola, ¿qué tal?", "language": "es", "format": "wav"})
    assert spanish.status_code == 200, spanish.text
    assert spanish.headers["x-voice-used"].startswith("es")


SAME = "'{}' and '{}' are the same field; send one of them"


@pytest.mark.parametrize(
    ("body", "field", "msg"),
    [
        ({"text": "Hi.", "rate": 1.0, "speed": 1.5}, "speed", SAME.format("rate", "speed")),
        ({"text": "Hi.", "language": "en", "lang": "es"}, "language", SAME.format("lang", "language")),
        ({"text": "Hi.", "voce": "en-gb"}, "voce", "unknown field 'voce'; did you mean 'voice'?"),
        ({"text": "Hi.", "sped": 1.5}, "sped", "unknown field 'sped'; did you mean 'speed'?"),
        ({"text": "Hi.", "colour": "red"}, "colour", "unknown field 'colour'"),
        ({"text": "Hi.", "speed": 9}, "speed", "Input should be less than or equal to 4"),
        ({"text": "Hi.", "rate": True}, "rate", "Input should be a valid number"),
        ({"text": "Hi.", "sample_rate": 16000.0}, "sample_rate", "Input should be a valid integer"),
    ],
)  # fmt: skip
def test_synth_names_its_fields_and_suggests_the_nearest_for_an_unknown_one(
    espeak_server: ServerProcess, body: dict[str, Any], field: str, msg: str
) -> None:
    response = synth(espeak_server, body)
    assert response.status_code == 422, response.text
    assert response.json()["error_type"] == "invalid_field"
    assert response.json()["detail"] == [{"loc": ["body", field], "msg": msg}]


def test_synth_rejects_a_body_that_is_not_json(espeak_server: ServerProcess) -> None:
    response = httpx.post(f"{espeak_server.http_url}/api/v1/synth", content=b"{nope", timeout=10)
    assert response.status_code == 400
    assert response.json()["error_type"] == "invalid_message"


# ---- POST /v1/audio/speech through the OpenAI SDK --------------------------------------------------


def test_speech_create_returns_audio_that_decodes(
    espeak_server: ServerProcess, client: Callable[[ServerProcess], OpenAI]
) -> None:
    response = client(espeak_server).audio.speech.create(model="tts-1", voice="alloy", input=TEXT)
    assert response.response.headers["content-type"] == "audio/mpeg"
    assert response.response.headers["x-model"] == "tts-1"
    assert response.response.headers["x-engine-used"] == "espeak"
    samples, _ = decode_audio(response.content, "mp3")
    assert rms(samples) > 0.02


@pytest.mark.parametrize("response_format", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_speech_every_response_format_decodes_at_24_khz(
    espeak_server: ServerProcess, response_format: str, client: Callable[[ServerProcess], OpenAI]
) -> None:
    sdk = client(espeak_server)
    response = sdk.audio.speech.create(
        model="tts-1-hd", voice="echo", input=TEXT, response_format=response_format, speed=1.0
    )
    fmt = OPENAI_TO_OURS[response_format]
    assert response.response.headers["content-type"].lower().startswith(MIME[fmt])
    samples, rate = decode_audio(response.content, fmt, 24000)
    if response_format == "pcm":
        assert len(response.content) % 2 == 0  # raw s16le, no header
        reference = sdk.audio.speech.create(model="tts-1", voice="echo", input=TEXT, response_format="wav")
        assert len(response.content) == pytest.approx(len(reference.content) - 44, rel=0.02)
    elif response_format == "opus":
        assert response.content[:4] == b"OggS" and b"OpusHead" in response.content[:64]
    else:
        assert rate == 24000
    assert 3.0 < len(samples) / rate < 10.0
    assert rms(samples) > 0.02


def test_speech_voices_openai_names_ours_and_custom_voice_objects(
    espeak_server: ServerProcess, client: Callable[[ServerProcess], OpenAI]
) -> None:
    sdk = client(espeak_server)

    def voice_used(voice: Any) -> str:
        response = sdk.audio.speech.create(model="tts-1", voice=voice, input="Hi.", response_format="wav")
        return response.response.headers["x-voice-used"]

    default = synth(espeak_server, {"text": "Hi."}).headers["x-voice-used"]
    assert voice_used("alloy") == voice_used("shimmer") == default  # unmapped OpenAI names
    assert voice_used("en-gb") == "en-gb"  # one of ours
    assert voice_used({"id": "en-gb"}) == "en-gb"  # OpenAI's custom-voice reference


def test_speech_accepts_and_ignores_instructions_and_reports_any_model(
    espeak_server: ServerProcess, client: Callable[[ServerProcess], OpenAI]
) -> None:
    response = client(espeak_server).audio.speech.create(
        model="my-own-model", voice="nova", input="Hi.", instructions="Speak like a pirate.", speed=1.5
    )
    assert response.response.headers["x-model"] == "my-own-model"
    assert len(response.content) > 0


def test_speech_unknown_voice_is_a_bad_request_with_our_code(
    espeak_server: ServerProcess, client: Callable[[ServerProcess], OpenAI]
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(espeak_server).audio.speech.create(model="tts-1", voice="nobody", input="Hi.")
    error = info.value
    assert error.status_code == 400
    assert (error.code, error.param, error.type) == ("unknown_voice", "voice", "invalid_request_error")
    body = error.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert "nobody" in body["error"]["message"]


@pytest.mark.parametrize(
    ("kwargs", "param", "code"),
    [
        ({"input": "x" * 4097}, "input", "invalid_field"),
        ({"input": ""}, "input", "invalid_field"),
        ({"response_format": "wma"}, "response_format", "unsupported_format"),
        ({"speed": 5.0}, "speed", "invalid_field"),
        ({"speed": 0.1}, "speed", "invalid_field"),
        ({"model": ""}, "model", "invalid_field"),
        ({"model": "tts-1\r\nX-Evil: 1"}, "model", "invalid_field"),
        ({"stream_format": "sse"}, "stream_format", "invalid_field"),
        ({"voice": {"en": 0.5, "en-gb": 0.5}}, "voice", "invalid_field"),  # espeak cannot blend
    ],
)
def test_speech_rejects_invalid_requests_as_bad_requests(
    espeak_server: ServerProcess,
    kwargs: dict[str, Any],
    param: str,
    code: str,
    client: Callable[[ServerProcess], OpenAI],
) -> None:
    request = {"model": "tts-1", "voice": "alloy", "input": "Hi.", **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        client(espeak_server).audio.speech.create(**request)
    assert (info.value.param, info.value.code) == (param, code)


def test_unknown_paths_and_methods_under_v1_answer_in_openai_shape(
    espeak_server: ServerProcess, client: Callable[[ServerProcess], OpenAI]
) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client(espeak_server).models.list()
    assert info.value.type == "invalid_request_error"
    response = httpx.get(f"{espeak_server.http_url}/v1/audio/speech", timeout=5)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    not_json = httpx.post(f"{espeak_server.http_url}/v1/audio/speech", content=b"{nope", timeout=5)
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_message"


# ---- streaming, disconnects and failures (piper: slow enough to watch) ----------------------------


@needs_piper
def test_speech_streams_while_it_synthesizes(
    piper_server: ServerProcess, client: Callable[[ServerProcess], OpenAI]
) -> None:
    sdk = client(piper_server)
    arrivals: list[float] = []
    data = b""
    started = time.perf_counter()
    with sdk.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=SENTENCES, response_format="pcm"
    ) as response:
        assert response.headers["x-engine-used"] == "piper"
        for chunk in response.iter_bytes():
            arrivals.append(time.perf_counter() - started)
            data += chunk
    assert len(arrivals) > 1
    # The first audio leaves after the first chunk is synthesized, not after the whole input.
    assert arrivals[0] < 0.5 * arrivals[-1], (arrivals[0], arrivals[-1])
    samples, rate = decode_audio(data, "pcm", 24000)
    assert len(samples) / rate > 20 and rms(samples) > 0.02


@needs_piper
def test_speech_client_disconnect_mid_stream_frees_its_pool_work(piper_server: ServerProcess) -> None:
    assert wait_for(lambda: pool_idle(piper_server), 30)
    before = len(oneshot_lines(piper_server))
    body = {"model": "tts-1", "voice": "alloy", "input": LONG, "response_format": "pcm"}
    with (
        httpx.Client(timeout=30 * TIMESCALE) as http,
        http.stream("POST", f"{piper_server.http_url}/v1/audio/speech", json=body) as response,
    ):
        assert response.status_code == 200
        next(response.iter_bytes())
    # The rest of LONG takes the engine many seconds; the abandoned work must stop at once.
    assert wait_for(lambda: pool_idle(piper_server), 2.0)
    assert wait_for(lambda: len(oneshot_lines(piper_server)) > before, 2.0)
    line = oneshot_lines(piper_server)[-1]
    assert line["outcome"] == "cancelled" and line["chunks"] > 4


@needs_piper
def test_synth_client_that_gives_up_frees_its_pool_work(piper_server: ServerProcess) -> None:
    assert wait_for(lambda: pool_idle(piper_server), 30)
    before = len(oneshot_lines(piper_server))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{piper_server.http_url}/api/v1/synth", json={"text": LONG}, timeout=0.5)
    assert wait_for(lambda: pool_idle(piper_server), 2.0)
    assert wait_for(lambda: len(oneshot_lines(piper_server)) > before, 2.0)
    assert oneshot_lines(piper_server)[-1]["outcome"] == "cancelled"


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One worker and a queue of one: a second synthesis is refused while a first is under way."""
    if not HAS_PIPER:
        pytest.skip("the [piper] extra is not installed")
    config = {
        "tts": {"engine": "piper"},
        "pool": {"workers": 1, "max_queue": 1},
        "openai": {"voices": {"alloy": "en-gb", "narrator": "en_US-joe-medium"}},
    }
    with running_server(tmp_path_factory.mktemp("tight"), config) as server:
        yield server


def test_speech_voice_table_maps_names_across_engines(
    tight_server: ServerProcess, client: Callable[[ServerProcess], OpenAI]
) -> None:
    sdk = client(tight_server)
    alloy = sdk.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", response_format="wav")
    assert (alloy.response.headers["x-engine-used"], alloy.response.headers["x-voice-used"]) == (
        "espeak",
        "en-gb",
    )
    narrator = sdk.audio.speech.create(model="tts-1", voice="narrator", input="Hi.", response_format="wav")
    assert narrator.response.headers["x-voice-used"] == "en_US-joe-medium"
    echo = sdk.audio.speech.create(model="tts-1", voice="echo", input="Hi.", response_format="wav")
    assert echo.response.headers["x-engine-used"] == "piper"  # unmapped: the default voice
    by_model = sdk.audio.speech.create(model="espeak", voice="echo", input="Hi.", response_format="wav")
    assert by_model.response.headers["x-engine-used"] == "espeak"  # a model named like an engine


def test_a_full_pool_answers_503_with_retry_after_on_both_routes(
    tight_server: ServerProcess, client: Callable[[ServerProcess], OpenAI]
) -> None:
    assert wait_for(lambda: pool_idle(tight_server), 30)
    body = {"model": "tts-1", "voice": "echo", "input": LONG, "response_format": "pcm"}

    def listen() -> int:
        with httpx.stream(
            "POST", f"{tight_server.http_url}/v1/audio/speech", json=body, timeout=60 * TIMESCALE
        ) as response:
            return sum(len(chunk) for chunk in response.iter_bytes())

    def refused(call: Any) -> Any:
        """The first answer that is a refusal: while the long text plays, its next chunk fills the queue."""
        for _ in range(100):
            answer = call()
            if answer is not None:
                return answer
            time.sleep(0.02)
        raise AssertionError("never refused")

    def synth_refusal() -> httpx.Response | None:
        response = synth(tight_server, {"text": "Hi."})
        return response if response.status_code == 503 else None

    def speech_refusal() -> openai.InternalServerError | None:
        try:
            client(tight_server).audio.speech.create(model="tts-1", voice="echo", input="Hi.")
        except openai.InternalServerError as exc:
            return exc
        return None

    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        listening = executor.submit(listen)
        assert wait_for(lambda: status(tight_server)["pool"]["queue_depth"] == 1, 10)
        response = refused(synth_refusal)
        assert response.headers["retry-after"] and response.json()["error_type"] == "overloaded"
        error = refused(speech_refusal)
        assert error.status_code == 503 and error.code == "overloaded"
        assert error.response.headers["retry-after"]
        assert listening.result() > 0  # the first synthesis was never disturbed


@pytest.fixture(scope="module")
def victim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if not HAS_PIPER:
        pytest.skip("the [piper] extra is not installed")
    config = {"tts": {"engine": "piper"}, "pool": {"workers": 2}}
    with running_server(tmp_path_factory.mktemp("victim"), config) as server:
        yield server


def busy_oneshot_workers(server: ServerProcess) -> list[dict[str, Any]]:
    workers = status(server)["pool"]["worker_list"]
    return [w for w in workers if (w["session"] or "").startswith("oneshot-")]


def test_a_worker_dying_mid_stream_ends_the_download_unfinished(victim_server: ServerProcess) -> None:
    assert wait_for(lambda: status(victim_server)["pool"]["ready_workers"] == 2, 30)
    body = {"model": "tts-1", "voice": "echo", "input": LONG, "response_format": "pcm"}
    killed = False
    with (
        httpx.Client(timeout=30 * TIMESCALE) as http,
        http.stream("POST", f"{victim_server.http_url}/v1/audio/speech", json=body) as response,
    ):
        assert response.status_code == 200
        # Not a short file that looks complete: the chunked body never ends properly.
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in response.iter_bytes():
                if not killed and (busy := busy_oneshot_workers(victim_server)):
                    os.kill(busy[0]["pid"], signal.SIGKILL)
                    killed = True
    assert killed
    assert wait_for(lambda: oneshot_lines(victim_server)[-1]["outcome"] == "failed", 5)
    assert oneshot_lines(victim_server)[-1]["error"] == "engine_error"


def test_a_worker_dying_during_synth_is_a_500_engine_error(victim_server: ServerProcess) -> None:
    assert wait_for(lambda: status(victim_server)["pool"]["ready_workers"] == 2, 30)
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        pending = executor.submit(synth, victim_server, {"text": LONG, "format": "mp3"}, 60)
        assert wait_for(lambda: bool(busy_oneshot_workers(victim_server)), 10)
        os.kill(busy_oneshot_workers(victim_server)[0]["pid"], signal.SIGKILL)
        response = pending.result()
    assert response.status_code == 500
    assert response.json()["error_type"] == "engine_error"
