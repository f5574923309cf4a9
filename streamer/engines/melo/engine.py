"""The MeloTTS engine: voices from config files alone, models loaded in workers, audio a window at a time.

The speakers of a model (``hps.data.spk2id``: EN-US, EN-BR, EN_INDIA, EN-AU, EN-Default) are the
voices; ``voices()`` and ``unavailable_reason()`` read config files and caches only, never torch.
Text is split into sentences; each runs melo's front end (``melo.utils.get_text_for_tts_infer``:
normalisation, g2p, BERT features), then :mod:`.decoding` turns it into audio, in windows with
``streaming``. ``should_stop`` is polled between windows and sentences. A voice may be a blend
``{"EN-US": 0.6, "EN-BR": 0.4}``: the speaker vectors of ``emb_g`` are mixed with the normalised
weights into the conditioning vector g. ``speed`` scales durations (length_scale = 1 / speed).
``synthesize_batch`` runs the sentences of several requests of one model through one padded forward
pass and one batched decoder pass.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
from pydantic import ValidationError

from streamer.config import MeloSettings
from streamer.engines.base import Capabilities, ShouldStop, SynthesisRequest, Voice, check_speed
from streamer.errors import EngineError, InvalidField, UnknownVoice
from streamer.protocol import fields

from .decoding import Pacer, Prepared, decode, decode_batch, decode_windows, latent
from .files import ModelFiles
from .isolation import import_melo
from .languages import find_language, missing_packages, not_installed
from .loading import Model, load_model, resolve_device

if TYPE_CHECKING:
    import torch

log = structlog.get_logger(__name__)

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")
_MAX_SENTENCE_CHARS = 300  # melo's BERTs read at most 512 tokens
_PAUSE_S = 0.05  # between sentences, as melo.api.TTS puts them


def _sentences(text: str) -> list[str]:
    # english.g2p joins word pieces starting with "#" to the previous word and fails on a leading
    # one, so a literal "#" is spoken as the pause it would be anyway.
    text = text.replace("#", " ")
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = " ".join(sentence.split())
        while len(sentence) > _MAX_SENTENCE_CHARS:
            cut = sentence.rfind(" ", 0, _MAX_SENTENCE_CHARS)
            cut = cut if cut > 0 else _MAX_SENTENCE_CHARS
            pieces.append(sentence[:cut])
            sentence = sentence[cut:].strip()
        pieces.append(sentence)
    return [piece for piece in pieces if any(char.isalnum() for char in piece)]


def _blend_weights(blend: Mapping[Any, Any]) -> dict[str, float]:
    # Checked again here, not only by the session: a request may come from the CLI or a script.
    if not blend:
        raise InvalidField("a voice blend names at least one speaker", field="voice")
    for name, weight in blend.items():
        if not isinstance(name, str):
            raise InvalidField(f"blend speaker names are strings, got {name!r}", field="voice")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise InvalidField(f"blend weight of {name!r} must be a number, got {weight!r}", field="voice")
        if weight < 0:
            raise InvalidField(f"blend weight of {name!r} is negative ({weight})", field="voice")
    total = float(sum(blend.values()))
    if total <= 0:
        raise InvalidField("blend weights must have a positive sum", field="voice")
    return {name: float(weight) / total for name, weight in blend.items()}


class MeloEngine:
    """MeloTTS voices (see the package's modules for files, settings and how melo is imported).

    Settings: those of ``MeloSettings`` in streamer.config (``engines.melo`` in the config file).
    """

    name = "melo"

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        try:
            self._settings = MeloSettings.model_validate(settings or {})
        except ValidationError as exc:
            raise EngineError(f"invalid engines.melo settings: {exc}") from exc
        # The server fills `languages` from tts.preload_languages when the config leaves it null.
        languages = self._settings.languages or ["en"]
        self._languages = list(dict.fromkeys(find_language(code) for code in languages))
        folders = (self._settings.model_dir, self._settings.bert_dir, self._settings.nltk_data)
        self._files = ModelFiles(*(Path(folder).expanduser() if folder else None for folder in folders))
        self.capabilities = Capabilities(streaming=self._settings.streaming, speed=True, blending=True)
        self._voices: list[Voice] | None = None
        self._problems: dict[str, str] = {}  # language key -> why it has no voices
        self._models: list[Model] = []
        self._speakers: dict[str, tuple[Model, int]] = {}
        self._load_lock = threading.Lock()

    # ---- voices, without torch ---------------------------------------------------------------------

    def available(self) -> bool:
        return self.unavailable_reason() is None

    def unavailable_reason(self) -> str | None:
        if missing_packages():
            return not_installed()
        if self.voices():
            return None
        return "; ".join(self._problems.values()) or "no language configured in engines.melo.languages"

    def voices(self) -> list[Voice]:
        if self._voices is None:
            voices: dict[str, Voice] = {}
            problems: dict[str, str] = {}
            if not missing_packages():
                for language in self._languages:
                    try:
                        config = self._files.local_config(language)
                    except EngineError as exc:
                        problems[language.key] = str(exc)
                        continue
                    try:
                        data = json.loads(config.read_text(encoding="utf-8"))
                        rate = int(data["data"]["sampling_rate"])
                        speakers = sorted(data["data"]["spk2id"].items(), key=lambda item: item[1])
                    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                        problems[language.key] = f"MeloTTS {language.key}: {config} is unreadable ({exc!r})"
                        log.warning("melo_config_unreadable", config=str(config), reason=repr(exc))
                        continue
                    for speaker, _ in speakers:
                        if speaker in voices:
                            log.warning("melo_speaker_shadowed", speaker=speaker, language=language.key)
                            continue
                        voices[speaker] = Voice(
                            name=speaker,
                            engine=self.name,
                            language=language.code,
                            sample_rate=rate,
                            quality="high",
                            description=f"MeloTTS {language.key} speaker {speaker}",
                        )
            if voices:
                # The engine is offered without these languages: say so, or they go missing quietly.
                for key, reason in problems.items():
                    log.warning("melo_language_unavailable", language=key, reason=reason)
            self._voices, self._problems = list(voices.values()), problems
        return list(self._voices)

    # ---- loading -----------------------------------------------------------------------------------

    def load(self) -> None:
        with self._load_lock:
            if self._models:
                return
            if missing_packages():
                raise EngineError(not_installed())
            import torch

            if self._settings.threads:  # 0: the server sets it (cores ÷ workers); else torch's default
                torch.set_num_threads(self._settings.threads)
            with contextlib.suppress(RuntimeError):  # only possible before torch's first parallel work
                torch.set_num_interop_threads(1)
            device = resolve_device(self._settings.device)
            files = self._files
            allow_download = files.model_dir is None
            checkpoints: dict[str, tuple[Path, Path]] = {}
            berts: dict[str, Path] = {}  # language key -> the BERT its features come from
            tokenizer_sources: dict[str, str] = {}  # hub id -> local folder, for melo's import-time loads
            for language in self._languages:
                try:
                    found = files.model(language, allow_download)
                    if found is None:
                        raise files.missing_model(language)
                    checkpoints[language.key] = found
                    for repo in files.bert_repos(language):
                        folder = files.bert(language, repo, allow_download)
                        if folder is None:
                            raise files.missing_bert(language, repo)
                        if repo == language.bert[1]:
                            berts[language.key] = folder
                        tokenizer_sources.setdefault(repo, str(folder))
                except EngineError:
                    raise
                except Exception as exc:  # huggingface_hub's errors: offline, not found, refused
                    raise files.missing_model(language, exc) from exc
            utils = import_melo(self._languages, tokenizer_sources, files.nltk_paths())
            models = [
                load_model(language, *checkpoints[language.key], berts[language.key], device, utils)
                for language in self._languages
            ]
            speakers: dict[str, tuple[Model, int]] = {}
            for model in models:
                for speaker, sid in model.speakers.items():
                    speakers.setdefault(speaker, (model, sid))
            self._models, self._speakers = models, speakers
            log.info("melo_loaded", languages=[m.language.key for m in models], device=str(device))

    def warmup(self) -> None:
        # The first sentence runs the BERT and allocates the decoder's buffers; do it before a client waits.
        for model in self._models:
            speaker = next(iter(model.speakers))
            for _ in self.synthesize(SynthesisRequest(text="Ready.", voice=speaker), lambda: False):
                pass

    # ---- synthesis ---------------------------------------------------------------------------------

    def _speaker(self, voice: fields.Voice) -> tuple[Model, torch.Tensor]:
        """The model a voice speaks with and its conditioning vector g, [1, gin_channels, 1]."""
        import torch

        if isinstance(voice, str):
            model, sid = self._find(voice)
            with torch.inference_mode():
                return model, model.net.emb_g.weight[sid].view(1, -1, 1).clone()
        if not isinstance(voice, Mapping):  # the request crossed a pipe: its type is not checked there
            raise InvalidField(
                f"a voice is a speaker name or a blend, got {type(voice).__name__}", field="voice"
            )
        weights = _blend_weights(voice)
        found = [(*self._find(name), weight) for name, weight in weights.items()]
        model = found[0][0]
        if any(other is not model for other, _, _ in found):
            raise InvalidField("a blend mixes speakers of one language's model", field="voice")
        with torch.inference_mode():
            table = model.net.emb_g.weight
            g = sum((weight * table[sid] for _, sid, weight in found), torch.zeros_like(table[0]))
            return model, g.view(1, -1, 1)

    def _find(self, name: str) -> tuple[Model, int]:
        found = self._speakers.get(name)
        if found is None:
            wanted = name.lower()
            found = next((v for k, v in self._speakers.items() if k.lower() == wanted), None)
        if found is None:
            known = ", ".join(self._speakers) or "none"
            raise UnknownVoice(f"melo has no speaker {name!r}; loaded: {known}", voice=name)
        return found

    def _prepare(self, model: Model, sentence: str) -> Prepared:
        import melo.utils

        if model.language.text in ("EN", "ZH_MIX_EN"):
            sentence = re.sub(r"([a-z])([A-Z])", r"\1 \2", sentence)  # as melo.api.TTS does
        try:
            bert, ja_bert, phones, tones, languages = melo.utils.get_text_for_tts_infer(
                sentence, model.language.text, model.hps, model.device, model.symbol_to_id
            )
        except EngineError:
            raise
        except Exception as exc:  # the front ends raise whatever their libraries raise
            raise EngineError(
                f"melo text front end failed on {sentence!r}: {type(exc).__name__}: {exc}"
            ) from exc
        return Prepared(phones, tones, languages, bert, ja_bert)

    def _pause(self, model: Model, speed: float) -> np.ndarray:
        return np.zeros(int(model.sample_rate * _PAUSE_S / speed), dtype=np.float32)

    def synthesize(self, request: SynthesisRequest, should_stop: ShouldStop) -> Iterator[np.ndarray]:
        import torch

        speed = check_speed(request.speed)
        if not self._models:
            self.load()
        model, g = self._speaker(request.voice)
        length_scale = torch.full((1, 1, 1), 1.0 / speed)
        settings = self._settings
        pacer = Pacer(
            model.sample_rate, settings.window_frames, settings.max_window_frames, settings.overlap_frames
        )
        spoken = False
        for sentence in _sentences(request.text):
            if should_stop():
                return
            prepared = self._prepare(model, sentence)
            if spoken:
                pause = self._pause(model, speed)
                pacer.sent(len(pause))
                yield pause
            z, _ = latent(model, [prepared], g, length_scale, settings)
            if settings.streaming:
                yield from decode_windows(model, z, g, pacer, should_stop, settings.overlap_frames)
            else:
                yield decode(model, z, g)
            spoken = True

    def synthesize_batch(self, requests: list[SynthesisRequest]) -> list[np.ndarray]:
        """The whole audio of each request, as ``synthesize`` would join it, computed together: the
        sentences of all requests go through one padded forward pass and one batched decoder pass.
        Every request must speak with the same language's model (InvalidField otherwise)."""
        import torch

        if not requests:
            return []
        if not self._models:
            self.load()
        voices = [self._speaker(request.voice) for request in requests]
        speeds = [check_speed(request.speed) for request in requests]
        model = voices[0][0]
        if any(other is not model for other, _ in voices):
            raise InvalidField("a batch speaks with one language's model", field="voice")
        owners: list[int] = []
        items: list[Prepared] = []
        for index, request in enumerate(requests):
            for sentence in _sentences(request.text):
                owners.append(index)
                items.append(self._prepare(model, sentence))
        parts: list[list[np.ndarray]] = [[] for _ in requests]
        if items:
            g = torch.cat([voices[owner][1] for owner in owners])
            scales = torch.tensor([1.0 / speeds[owner] for owner in owners]).view(-1, 1, 1)
            z, lengths = latent(model, items, g, scales, self._settings)
            audios = decode_batch(model, z, lengths, g, self._settings.overlap_frames)
            for owner, audio in zip(owners, audios, strict=True):
                if parts[owner]:
                    parts[owner].append(self._pause(model, speeds[owner]))
                parts[owner].append(audio)
        return [np.concatenate(p) if p else np.zeros(0, dtype=np.float32) for p in parts]
