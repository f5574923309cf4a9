"""MeloTTS (VITS2 + BERT on torch): multi-speaker neural voices, speaker blends, audio inside a sentence.

Models
    One model per language in ``languages`` (en, en_v2, en_newest, es, fr, zh, jp, kr). Its files,
    first found wins: ``model_dir/<LANG>/config.json`` + ``checkpoint.pth`` (LANG = EN, EN_V2,
    EN_NEWEST, ES, FR, ZH, JP, KR) when ``model_dir`` is set, and only there; otherwise the official
    repo (``myshell-ai/MeloTTS-English``...) from the local Hugging Face cache, else fetched from the
    hub when the network allows. The BERT its front end runs: ``bert_dir/<LANG>``, else
    ``model_dir/<LANG>/bert``, else the hub id melo names (``bert-base-uncased``...) from the cache or
    the hub. The English front end also needs nltk's ``cmudict`` and perceptron tagger, searched in
    ``nltk_data``, else ``model_dir/nltk_data``, plus nltk's own path. ``MELO_DOWNLOAD_MODELS=en bash
    scripts/install_melo.sh`` (or :func:`download`) fetches all of it where the network allows.

    The speakers of a model (``hps.data.spk2id``: EN-US, EN-BR, EN_INDIA, EN-AU, EN-Default) are
    the voices. ``voices()`` and ``available()`` read config files and caches only: no torch.

Import isolation
    melo 0.1.1 imports every language when any of it is imported: ``melo.utils`` imports
    ``melo.text.cleaner``, which imports the seven front ends, each loading its BERT tokenizer from
    the hub at import; ``english`` imports ``japanese`` (MeCab) for one helper; ``g2p_en`` calls
    ``nltk.download`` at import; ``melo.utils`` imports ``torchaudio`` (no build matches torch 2.13;
    melo uses it only for training). So before melo's first import this module puts placeholders
    in ``sys.modules``: for the front-end and BERT modules of languages not configured (calling into
    one raises EngineError), for ``torchaudio`` when it is absent (only while ``melo.utils``
    imports, so no other library takes it for the real one), and for ``melo.text.japanese`` one
    that carries ``distribute_phone``, the pure helper english.py takes from it. The configured front
    ends then import with ``AutoTokenizer.from_pretrained`` redirected from melo's hub ids to the
    local folders resolved above (anything else is read with ``local_files_only``) and
    ``nltk.download`` made a no-op: nothing touches the network at import. A language configured
    later in the same process replaces its placeholders with the real modules. melo's modules are
    process-wide: a tokenizer comes from the engine that first imports its front end, and the BERT
    from the one that loaded last (a worker holds one MeloEngine). Only the English front end is
    tested here; the others need libraries scripts/install_melo.sh leaves out. Checkpoints load
    the way ``melo.api.TTS`` loads them (``SynthesizerTrn`` from ``get_hparams_from_file``, then the
    ``model`` state dict), with missing or mis-shaped weights reported; ``melo.utils.load_checkpoint``
    is not used because it keeps random weights for missing keys with only a log line, and requires
    training keys (``iteration``, ``learning_rate``) a released checkpoint need not carry.

Synthesis
    Text is split into sentences; each runs melo's front end (``melo.utils.get_text_for_tts_infer``:
    normalisation, g2p, BERT features), then the text encoder, duration predictors and flow once
    (the steps of ``SynthesizerTrn.infer``) to the latent z. With ``streaming`` the decoder runs on
    windows of z, each decoded with ``overlap_frames`` of context on both sides and joined to the
    previous one by a raised-cosine crossfade over the middle quarter of the span they share. The decoder
    sees about 10 frames either way, so with 16 frames of context the joins are exact to float
    rounding. The first window is ``window_frames`` long, so the first block leaves after one small
    decode rather than the whole sentence; later windows are as large as the audio already yielded
    covers at the measured decode speed (up to ``max_window_frames``), so the stream stays ahead of
    playback where the machine allows. ``should_stop`` is polled between windows and sentences.
    A voice may be a blend ``{"EN-US": 0.6, "EN-BR": 0.4}``: the speaker vectors of ``emb_g`` are
    mixed with the normalised weights into the conditioning vector g. ``speed`` scales durations
    (length_scale = 1 / speed). ``synthesize_batch`` runs the sentences of several requests of one
    model through one padded forward pass and one batched decoder pass (for GPUs: on a CPU it is
    slower than one request after the other).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import math
import re
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
from pydantic import ValidationError

from streamer.config import MeloSettings
from streamer.engines.base import Capabilities, ShouldStop, SynthesisRequest, Voice, check_speed
from streamer.errors import EngineError, InvalidField, UnknownVoice
from streamer.protocol import fields

if TYPE_CHECKING:
    import torch

log = structlog.get_logger(__name__)

_INSTALL_HINT = "bash scripts/install_melo.sh"
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")
_MAX_SENTENCE_CHARS = 300  # melo's BERTs read at most 512 tokens
_PAUSE_S = 0.05  # between sentences, as melo.api.TTS puts them
_BERT_FILES = [
    "config.json",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
]


@dataclass(frozen=True, slots=True)
class _Language:
    key: str  # model_dir sub-folder, as in upstream's download table
    text: str  # melo's front-end language
    code: str  # Voice.language
    repo: str  # the official checkpoint on the Hugging Face hub
    modules: tuple[str, ...]  # melo.text submodules its front end imports
    bert: tuple[str, str]  # (melo.text module running it, hub id) of the BERT whose features it uses
    tokenizers: tuple[str, ...]  # hub ids of every tokenizer its modules load at import


_EN_MODULES = ("english", "english_bert")
_EN_BERT = ("english_bert", "bert-base-uncased")
_LANGUAGES = {
    "en": _Language("EN", "EN", "en", "myshell-ai/MeloTTS-English", _EN_MODULES, _EN_BERT, (_EN_BERT[1],)),
    "en_v2": _Language(
        "EN_V2", "EN", "en", "myshell-ai/MeloTTS-English-v2", _EN_MODULES, _EN_BERT, (_EN_BERT[1],)
    ),
    "en_newest": _Language(
        "EN_NEWEST", "EN", "en", "myshell-ai/MeloTTS-English-v3", _EN_MODULES, _EN_BERT, (_EN_BERT[1],)
    ),
    "es": _Language(
        "ES", "ES", "es", "myshell-ai/MeloTTS-Spanish", ("spanish", "spanish_bert"),
        ("spanish_bert", "dccuchile/bert-base-spanish-wwm-uncased"),
        ("dccuchile/bert-base-spanish-wwm-uncased",),
    ),
    "fr": _Language(
        "FR", "FR", "fr", "myshell-ai/MeloTTS-French", ("french", "french_bert"),
        ("french_bert", "dbmdz/bert-base-french-europeana-cased"),
        ("dbmdz/bert-base-french-europeana-cased",),
    ),
    "zh": _Language(
        "ZH", "ZH_MIX_EN", "zh", "myshell-ai/MeloTTS-Chinese",
        ("english", "chinese", "chinese_mix", "chinese_bert"),
        ("chinese_bert", "bert-base-multilingual-uncased"),
        ("bert-base-uncased", "bert-base-multilingual-uncased"),
    ),
    "jp": _Language(
        "JP", "JP", "ja", "myshell-ai/MeloTTS-Japanese", ("japanese", "japanese_bert"),
        ("japanese_bert", "tohoku-nlp/bert-base-japanese-v3"), ("tohoku-nlp/bert-base-japanese-v3",),
    ),
    "kr": _Language(
        "KR", "KR", "ko", "myshell-ai/MeloTTS-Korean", ("korean", "japanese_bert"),
        ("japanese_bert", "kykim/bert-kor-base"), ("kykim/bert-kor-base",),
    ),
}  # fmt: skip
_ALIASES = {"ja": "jp", "ko": "kr", "sp": "es", "en_v3": "en_newest", "en_us": "en", "zh_mix_en": "zh"}
# Every melo.text module that imports a language's dependencies (melo.text.get_bert imports all of them).
_TEXT_MODULES = ("english", "japanese", "chinese", "chinese_mix", "korean", "french", "spanish")
_BERT_MODULES = ("english_bert", "japanese_bert", "chinese_bert", "spanish_bert", "french_bert")


def _language(code: str) -> _Language:
    key = code.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _LANGUAGES:
        raise EngineError(f"melo has no language {code!r}; known: {', '.join(_LANGUAGES)}")
    return _LANGUAGES[key]


def _melo_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("melo", "torch", "transformers"))


def installed_versions() -> dict[str, str]:
    """Versions of melotts and torch (install checks)."""
    return {name: importlib.metadata.version(name) for name in ("melotts", "torch", "transformers")}


# ---- import isolation ---------------------------------------------------------------------------


class _Placeholder(types.ModuleType):
    """Stands in for a module the engine keeps melo from importing; calling into it raises EngineError."""

    def __init__(self, name: str, reason: str, **attributes: Any) -> None:
        super().__init__(name, f"placeholder for {name}: {reason}")
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)  # find_spec() must not fail on it
        self.__dict__["_reason"] = reason
        self.__dict__.update(attributes)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        message = f"{self.__name__}.{attribute} is not loaded: {self.__dict__['_reason']}"

        def refuse(*_args: Any, **_kwargs: Any) -> Any:
            raise EngineError(message)

        return refuse


def _distribute_phone(n_phone: int, n_word: int) -> list[int]:
    # melo.text.japanese.distribute_phone, the one helper english.py imports from japanese.py: a
    # word's phones spread over its word pieces, the first pieces taking one more when they don't divide.
    base, extra = divmod(n_phone, n_word)
    return [base + 1] * extra + [base] * (n_word - extra)


_import_lock = threading.Lock()
_NLTK_HINT = (
    "the English front end needs nltk's cmudict and averaged_perceptron_tagger_eng: run "
    "`python -m nltk.downloader cmudict averaged_perceptron_tagger_eng` where the network allows, or "
    "put them in engines.melo.nltk_data (or <model_dir>/nltk_data)"
)


def _swap_class_attribute(cls: type, name: str, value: Any) -> Callable[[], None]:
    had, old = name in cls.__dict__, cls.__dict__.get(name)
    setattr(cls, name, value)
    return lambda: setattr(cls, name, old) if had else delattr(cls, name)


@contextlib.contextmanager
def _offline_imports(tokenizer_sources: Mapping[str, str]) -> Iterator[None]:
    """melo's import-time tokenizer loads read local folders; g2p_en's nltk downloads do nothing."""
    import nltk
    from transformers import AutoTokenizer

    original = AutoTokenizer.from_pretrained

    def from_pretrained(name: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(name, str) and name in tokenizer_sources:
            return original(tokenizer_sources[name], *args, **kwargs)
        kwargs.setdefault("local_files_only", True)
        return original(name, *args, **kwargs)

    restore = _swap_class_attribute(AutoTokenizer, "from_pretrained", staticmethod(from_pretrained))
    download = nltk.download
    nltk.download = lambda *_args, **_kwargs: False
    try:
        yield
    finally:
        nltk.download = download
        restore()


_tagger: Any = None  # nltk's perceptron tagger, loaded once per process


def _english_nltk_data() -> Any:
    """The tagger g2p_en will use, after checking that nltk's cmudict is there; EngineError if not."""
    global _tagger
    import nltk

    try:
        nltk.data.find("corpora/cmudict")
        if _tagger is None:
            from nltk.tag.perceptron import PerceptronTagger

            _tagger = PerceptronTagger()
    except (LookupError, OSError, ValueError) as exc:
        raise EngineError(f"melo: {_NLTK_HINT}") from exc
    return _tagger


def _share_tagger(tagger: Any) -> None:
    # nltk >= 3.9 rebuilds its perceptron tagger from JSON on every pos_tag() call, and g2p_en calls
    # pos_tag for every word melo's dictionary lacks: one tagger, loaded once, serves them all.
    g2p_module = sys.modules.get("g2p_en.g2p")
    if g2p_module is not None:
        g2p_module.pos_tag = tagger.tag


@contextlib.contextmanager
def _quiet_melo() -> Iterator[None]:
    # melo's modules use torch.jit.script and torch.nn.utils.weight_norm, both announced deprecated by
    # torch 2.13 (DeprecationWarning, FutureWarning), and g2p_en reads its homograph table without
    # closing the file (ResourceWarning); all harmless, and not ours to fix.
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        yield


def _import_melo(
    languages: list[_Language], tokenizer_sources: Mapping[str, str], nltk_paths: list[Path]
) -> Any:
    """melo with the front ends of ``languages`` only; returns ``melo.utils``. Process-wide."""
    with _import_lock, _quiet_melo():
        import nltk

        for path in nltk_paths:
            if str(path) not in nltk.data.path:
                nltk.data.path.insert(0, str(path))
        text_package = importlib.import_module("melo.text")  # its __init__ imports symbols only
        wanted = {name for language in languages for name in language.modules}
        for name in _TEXT_MODULES + _BERT_MODULES:
            full = f"melo.text.{name}"
            current = sys.modules.get(full)
            if name in wanted and isinstance(current, _Placeholder):
                del sys.modules[full]
                text_package.__dict__.pop(name, None)
            elif name not in wanted and current is None:
                extra = {"distribute_phone": _distribute_phone} if name == "japanese" else {}
                reason = "its language is not in engines.melo.languages"
                placeholder = _Placeholder(full, reason, **extra)
                sys.modules[full] = placeholder
                setattr(text_package, name, placeholder)
        for language in languages:
            tagger = _english_nltk_data() if "english" in language.modules else None
            todo = [name for name in language.modules if f"melo.text.{name}" not in sys.modules]
            if not todo:
                continue
            try:
                with _offline_imports(tokenizer_sources):
                    for name in todo:
                        importlib.import_module(f"melo.text.{name}")
            except EngineError:
                raise
            except Exception as exc:
                raise EngineError(
                    f"melo {language.key}: its text front end cannot be imported ({type(exc).__name__}: "
                    f"{exc}); {_INSTALL_HINT} installs the English one only"
                ) from exc
            if tagger is not None:
                _share_tagger(tagger)
        cleaner = importlib.import_module("melo.text.cleaner")
        for key, module in list(cleaner.language_module_map.items()):
            current = sys.modules.get(module.__name__)  # a placeholder replaced since cleaner's import
            if current is not None and current is not module:
                cleaner.language_module_map[key] = current
        importlib.import_module("melo.models")
        if "melo.utils" in sys.modules or importlib.util.find_spec("torchaudio") is not None:
            return importlib.import_module("melo.utils")
        # Present only while melo.utils imports, so nothing else takes it for the real library.
        sys.modules["torchaudio"] = _Placeholder(
            "torchaudio", "not installed (melo uses it for training only)"
        )
        try:
            return importlib.import_module("melo.utils")
        finally:
            del sys.modules["torchaudio"]


# ---- files ----------------------------------------------------------------------------------------


def _hub_file(repo: str, filename: str, allow_download: bool) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo, filename)
    if isinstance(cached, str):
        return Path(cached)
    if not allow_download:
        return None
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo, filename))


def _hub_snapshot(repo: str, allow_download: bool) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo, local_files_only=True))
        if (folder / "config.json").is_file():
            return folder
    except (LocalEntryNotFoundError, OSError, ValueError):  # not cached, or not a valid cache entry
        pass
    if not allow_download:
        return None
    return _fetch_bert(repo)


def _fetch_bert(repo: str) -> Path:
    from huggingface_hub import HfApi, snapshot_download

    files = set(HfApi().list_repo_files(repo))
    weights = "model.safetensors" if "model.safetensors" in files else "pytorch_model.bin"
    patterns = [name for name in [*_BERT_FILES, weights] if name in files] + ["*.model"]
    return Path(snapshot_download(repo, allow_patterns=patterns))


def download(languages: Iterable[str]) -> None:
    """Fetch the official checkpoints of ``languages``, their BERTs and nltk's English data into the
    Hugging Face and nltk caches, where the engine finds them when ``model_dir`` is null. Network."""
    import nltk
    from huggingface_hub import hf_hub_download

    chosen = [_language(code) for code in languages]
    for language in chosen:
        for filename in ("config.json", "checkpoint.pth"):
            print(hf_hub_download(language.repo, filename))
        for repo in dict.fromkeys((*language.tokenizers, language.bert[1])):
            print(_fetch_bert(repo))
    if any("english" in language.modules for language in chosen):
        for resource in ("cmudict", "averaged_perceptron_tagger_eng"):
            if not nltk.download(resource, quiet=True):
                raise EngineError(f"nltk could not download {resource}")


# ---- the model ---------------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Model:
    language: _Language
    net: Any  # melo.models.SynthesizerTrn
    hps: Any  # melo.utils.HParams
    symbol_to_id: dict[str, int]
    speakers: dict[str, int]
    sample_rate: int
    hop: int  # audio samples per latent frame


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One sentence through melo's front end: symbol, tone and language ids plus BERT features."""

    phones: torch.Tensor
    tones: torch.Tensor
    languages: torch.Tensor
    bert: torch.Tensor  # [1024, n]: zeros except for Chinese
    ja_bert: torch.Tensor  # [768, n]: the other languages' features


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


@cache
def _fade_in(samples: int) -> np.ndarray:
    # Raised cosine: fade_in + fade_out == 1, right for joining two copies of the same signal.
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(samples) + 0.5) / samples)
    return ramp.astype(np.float32)


class _Pacer:
    """Sizes the decoder windows of one synthesis so that, once audio flows, the audio already
    yielded lasts while the next window decodes.

    The first window is ``first`` frames (time to first audio). Each later one is the largest the
    audio still ahead of the listener covers (at the decode speed last measured, with a margin),
    up to ``largest``; where even ``first`` frames would not fit, it doubles instead, so the stall
    that cannot be avoided happens once rather than at every join.
    """

    _MARGIN = 0.8

    def __init__(
        self,
        sample_rate: int,
        first: int,
        largest: int,
        context: int,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.first, self.largest = first, max(first, largest)
        self.context = context  # frames decoded on each side beyond a window's span
        self._sample_rate, self._clock = sample_rate, clock
        self._started: float | None = None  # when the first block was handed over
        self._sent_s = 0.0
        self._seconds_per_frame: float | None = None
        self._last = first

    def window(self) -> int:
        if self._started is None or self._seconds_per_frame is None:
            size = self.first
        else:
            ahead = self._sent_s - (self._clock() - self._started)
            fit = int(self._MARGIN * ahead / self._seconds_per_frame) - 2 * self.context
            size = min(fit, self.largest) if fit >= self.first else min(2 * self._last, self.largest)
        self._last = size
        return size

    def decoded(self, frames: int, seconds: float) -> None:
        self._seconds_per_frame = seconds / max(frames, 1)

    def sent(self, samples: int) -> None:
        if self._started is None:
            self._started = self._clock()
        self._sent_s += samples / self._sample_rate


class MeloEngine:
    """MeloTTS voices (see the module docstring for files, settings and how melo is imported).

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
        self._languages = list(dict.fromkeys(_language(code) for code in languages))
        self._model_dir = Path(self._settings.model_dir).expanduser() if self._settings.model_dir else None
        self._bert_dir = Path(self._settings.bert_dir).expanduser() if self._settings.bert_dir else None
        self.capabilities = Capabilities(streaming=self._settings.streaming, speed=True, blending=True)
        self._voices: list[Voice] | None = None
        self._models: list[_Model] = []
        self._speakers: dict[str, tuple[_Model, int]] = {}
        self._device: Any = None
        self._load_lock = threading.Lock()

    # ---- files, without torch ------------------------------------------------------------------

    def _model_files(self, language: _Language, allow_download: bool) -> tuple[Path, Path] | None:
        if self._model_dir is not None:
            folder = self._model_dir / language.key
            config, checkpoint = folder / "config.json", folder / "checkpoint.pth"
            return (config, checkpoint) if config.is_file() and checkpoint.is_file() else None
        config_file = _hub_file(language.repo, "config.json", allow_download)
        checkpoint_file = config_file and _hub_file(language.repo, "checkpoint.pth", allow_download)
        return (config_file, checkpoint_file) if config_file and checkpoint_file else None

    def _bert_folder(self, language: _Language, repo: str, allow_download: bool) -> Path | None:
        if repo == language.bert[1]:
            if self._bert_dir is not None:
                folder = self._bert_dir / language.key
                return folder if (folder / "config.json").is_file() else None
            if (
                self._model_dir is not None
                and (self._model_dir / language.key / "bert" / "config.json").is_file()
            ):
                return self._model_dir / language.key / "bert"
        return _hub_snapshot(repo, allow_download)

    def _nltk_paths(self) -> list[Path]:
        if self._settings.nltk_data:
            return [Path(self._settings.nltk_data).expanduser()]
        if self._model_dir is not None and (self._model_dir / "nltk_data").is_dir():
            return [self._model_dir / "nltk_data"]
        return []

    def _complete(self, language: _Language) -> Path | None:
        """The config file of a language whose model and BERTs are all present locally."""
        files = self._model_files(language, allow_download=False)
        if files is None:
            return None
        repos = dict.fromkeys((*language.tokenizers, language.bert[1]))
        if any(self._bert_folder(language, repo, allow_download=False) is None for repo in repos):
            return None
        return files[0]

    def available(self) -> bool:
        return bool(self.voices())

    def voices(self) -> list[Voice]:
        if self._voices is None:
            voices: dict[str, Voice] = {}
            if _melo_installed():
                for language in self._languages:
                    config = self._complete(language)
                    if config is None:
                        continue
                    try:
                        data = json.loads(config.read_text(encoding="utf-8"))
                        rate = int(data["data"]["sampling_rate"])
                        speakers = sorted(data["data"]["spk2id"].items(), key=lambda item: item[1])
                    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
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
            self._voices = list(voices.values())
        return list(self._voices)

    # ---- loading -----------------------------------------------------------------------------------

    def _missing(self, language: _Language, what: str) -> EngineError:
        if what == "model":
            files = f"config.json and checkpoint.pth from https://huggingface.co/{language.repo}"
            if self._model_dir is not None:
                folder = self._model_dir / language.key
                return EngineError(f"MeloTTS {language.key} model not found: put {files} in {folder}/")
            return EngineError(
                f"MeloTTS {language.key} model not found in the Hugging Face cache and not downloadable: "
                f"run `MELO_DOWNLOAD_MODELS={language.key.lower()} {_INSTALL_HINT}` where the network "
                f"allows, or put {files} in <folder>/{language.key}/ and set engines.melo.model_dir"
            )
        if self._bert_dir is not None:
            where = f"{self._bert_dir / language.key}/"
        elif self._model_dir is not None:
            where = f"{self._model_dir / language.key / 'bert'}/ or the Hugging Face cache"
        else:
            where = "the Hugging Face cache"
        return EngineError(
            f"MeloTTS {language.key}: BERT {what} not found in {where}: download it from "
            f"https://huggingface.co/{what} (config.json, vocab and weights), or run "
            f"`MELO_DOWNLOAD_MODELS={language.key.lower()} {_INSTALL_HINT}`"
        )

    def _resolve_device(self) -> Any:
        import torch

        wanted = self._settings.device
        cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
        if wanted == "auto":
            wanted = "cuda" if cuda else "mps" if mps else "cpu"
        if wanted.startswith("cuda") and not cuda:
            raise EngineError(
                f"engines.melo.device is {wanted} but torch {torch.__version__} sees no CUDA device"
            )
        if wanted == "mps" and not mps:
            raise EngineError("engines.melo.device is mps but torch sees no MPS device")
        return torch.device(wanted)

    def load(self) -> None:
        with self._load_lock:
            if self._models:
                return
            if not _melo_installed():
                raise EngineError(f"MeloTTS is not installed: {_INSTALL_HINT}")
            import torch

            if self._settings.threads:  # 0: the server sets it (cores ÷ workers); else torch's default
                torch.set_num_threads(self._settings.threads)
            with contextlib.suppress(RuntimeError):  # only possible before torch's first parallel work
                torch.set_num_interop_threads(1)
            self._device = self._resolve_device()
            allow_download = not self._model_dir
            files: dict[str, tuple[Path, Path]] = {}
            berts: dict[str, Path] = {}  # language key -> the BERT its features come from
            tokenizer_sources: dict[str, str] = {}  # hub id -> local folder, for melo's import-time loads
            for language in self._languages:
                try:
                    found = self._model_files(language, allow_download)
                    if found is None:
                        raise self._missing(language, "model")
                    files[language.key] = found
                    for repo in dict.fromkeys((*language.tokenizers, language.bert[1])):
                        folder = self._bert_folder(language, repo, allow_download)
                        if folder is None:
                            raise self._missing(language, repo)
                        if repo == language.bert[1]:
                            berts[language.key] = folder
                        tokenizer_sources.setdefault(repo, str(folder))
                except EngineError:
                    raise
                except Exception as exc:  # huggingface_hub's errors: offline, not found, refused
                    raise self._missing(language, "model") from exc
            utils = _import_melo(self._languages, tokenizer_sources, self._nltk_paths())
            import melo.models

            models = [
                self._load_model(language, *files[language.key], berts[language.key], utils, melo.models)
                for language in self._languages
            ]
            speakers: dict[str, tuple[_Model, int]] = {}
            for model in models:
                for speaker, sid in model.speakers.items():
                    speakers.setdefault(speaker, (model, sid))
            self._models, self._speakers = models, speakers
            log.info("melo_loaded", languages=[m.language.key for m in models], device=str(self._device))

    def _load_model(
        self, language: _Language, config: Path, checkpoint: Path, bert: Path, utils: Any, models: Any
    ) -> _Model:
        import torch

        try:
            hps = utils.get_hparams_from_file(str(config))
        except (OSError, ValueError) as exc:
            raise EngineError(f"MeloTTS {language.key}: cannot read {config}: {exc}") from exc
        try:
            hop = int(hps.data.hop_length)
            symbols = list(hps.symbols)
            with _quiet_melo():
                net = models.SynthesizerTrn(
                    len(symbols),
                    hps.data.filter_length // 2 + 1,
                    hps.train.segment_size // hop,
                    n_speakers=hps.data.n_speakers,
                    num_tones=hps.num_tones,
                    num_languages=hps.num_languages,
                    **hps.model,
                )
            speakers = {str(name): int(sid) for name, sid in hps.data.spk2id.items()}
            rate = int(hps.data.sampling_rate)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"MeloTTS {language.key}: {config} is not a MeloTTS config ({exc!r})") from exc
        if not isinstance(getattr(net, "emb_g", None), torch.nn.Embedding):
            raise EngineError(
                f"MeloTTS {language.key}: single-speaker (reference encoder) models are not supported"
            )
        bad = [name for name, sid in speakers.items() if not 0 <= sid < net.emb_g.num_embeddings]
        if bad:
            raise EngineError(f"MeloTTS {language.key}: speakers {bad} lie outside the model's speaker table")
        self._load_weights(language, net, checkpoint)
        net.eval().to(self._device)
        self._load_bert(language, bert)
        return _Model(language, net, hps, {s: i for i, s in enumerate(symbols)}, speakers, rate, hop)

    def _load_weights(self, language: _Language, net: Any, checkpoint: Path) -> None:
        import torch

        try:
            try:
                saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # a legacy (non-zip) file cannot be memory-mapped
                saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises unpickling, zip and OS errors alike
            raise EngineError(f"MeloTTS {language.key}: cannot read checkpoint {checkpoint}: {exc}") from exc
        state = saved.get("model") if isinstance(saved, dict) else None
        if not isinstance(state, dict):
            raise EngineError(f"MeloTTS {language.key}: {checkpoint} holds no 'model' state dict")
        expected = net.state_dict()
        missing = [key for key in expected if key not in state]
        wrong = [
            key for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
        ]
        if missing or wrong:
            raise EngineError(
                f"MeloTTS {language.key}: {checkpoint} does not fit its config.json: "
                f"{len(missing)} weights missing {missing[:3]}, {len(wrong)} of another shape {wrong[:3]}"
            )
        net.load_state_dict({key: state[key] for key in expected}, strict=True)

    def _load_bert(self, language: _Language, folder: Path) -> None:
        # Loaded here rather than on the first sentence (melo loads it lazily, from the hub id).
        from transformers import AutoModelForMaskedLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        module_name, repo = language.bert
        module = sys.modules[f"melo.text.{module_name}"]
        try:
            bert = AutoModelForMaskedLM.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:  # transformers raises OSError, ValueError and its own errors
            raise EngineError(f"MeloTTS {language.key}: cannot load the BERT in {folder}: {exc}") from exc
        bert = bert.to(self._device).eval()
        if hasattr(module, "models"):  # chinese_bert / japanese_bert keep one model per hub id
            module.models[repo] = bert
            module.tokenizers[repo] = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        else:
            module.model = bert

    def warmup(self) -> None:
        # The first sentence runs the BERT and allocates the decoder's buffers; do it before a client waits.
        for model in self._models:
            speaker = next(iter(model.speakers))
            for _ in self.synthesize(SynthesisRequest(text="Ready.", voice=speaker), lambda: False):
                pass

    # ---- synthesis ---------------------------------------------------------------------------------

    def _speaker(self, voice: fields.Voice) -> tuple[_Model, torch.Tensor]:
        """The model a voice speaks with and its conditioning vector g, [1, gin_channels, 1]."""
        import torch

        if isinstance(voice, str):
            model, sid = self._find(voice)
            with torch.inference_mode():
                return model, model.net.emb_g.weight[sid].view(1, -1, 1).clone()
        if not isinstance(voice, Mapping):
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

    def _find(self, name: str) -> tuple[_Model, int]:
        found = self._speakers.get(name)
        if found is None:
            wanted = name.lower()
            found = next((v for k, v in self._speakers.items() if k.lower() == wanted), None)
        if found is None:
            known = ", ".join(self._speakers) or "none"
            raise UnknownVoice(f"melo has no speaker {name!r}; loaded: {known}", voice=name)
        return found

    def _prepare(self, model: _Model, sentence: str) -> _Prepared:
        import melo.utils

        if model.language.text in ("EN", "ZH_MIX_EN"):
            sentence = re.sub(r"([a-z])([A-Z])", r"\1 \2", sentence)  # as melo.api.TTS does
        try:
            bert, ja_bert, phones, tones, languages = melo.utils.get_text_for_tts_infer(
                sentence, model.language.text, model.hps, self._device, model.symbol_to_id
            )
        except EngineError:
            raise
        except Exception as exc:  # the front ends raise whatever their libraries raise
            raise EngineError(
                f"melo text front end failed on {sentence!r}: {type(exc).__name__}: {exc}"
            ) from exc
        return _Prepared(phones, tones, languages, bert, ja_bert)

    def _latent(
        self, model: _Model, items: list[_Prepared], g: torch.Tensor, length_scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The steps of SynthesizerTrn.infer up to the decoder, for a padded batch: z [b, c, t] and
        each item's frame count. ``g`` is [b, gin, 1], ``length_scale`` [b, 1, 1]."""
        import melo.commons as commons
        import torch

        net, device, settings = model.net, self._device, self._settings
        size, longest = len(items), max(len(item.phones) for item in items)
        x = torch.zeros(size, longest, dtype=torch.long)
        tones, languages = torch.zeros_like(x), torch.zeros_like(x)
        bert, ja_bert = torch.zeros(size, 1024, longest), torch.zeros(size, 768, longest)
        for row, item in enumerate(items):
            n = len(item.phones)
            x[row, :n], tones[row, :n], languages[row, :n] = item.phones, item.tones, item.languages
            bert[row, :, :n], ja_bert[row, :, :n] = item.bert, item.ja_bert
        lengths = torch.tensor([len(item.phones) for item in items], dtype=torch.long)
        with torch.inference_mode():
            x, tones, languages, bert, ja_bert, lengths = (
                t.to(device) for t in (x, tones, languages, bert, ja_bert, lengths)
            )
            g = g.to(device)
            h, m_p, logs_p, x_mask = net.enc_p(
                x, lengths, tones, languages, bert, ja_bert, g=None if net.use_vc else g
            )
            logw = net.dp(h, x_mask, g=g) * (1 - settings.sdp_ratio)
            if settings.sdp_ratio > 0:
                sdp = net.sdp(h, x_mask, g=g, reverse=True, noise_scale=settings.noise_scale_w)
                logw = sdp * settings.sdp_ratio + logw
            w = torch.exp(logw) * x_mask * length_scale.to(device)
            w_ceil = torch.ceil(w)
            y_lengths = torch.clamp_min(torch.sum(w_ceil, [1, 2]), 1).long()
            y_mask = torch.unsqueeze(commons.sequence_mask(y_lengths, None), 1).to(x_mask.dtype)
            attn_mask = torch.unsqueeze(x_mask, 2) * torch.unsqueeze(y_mask, -1)
            attn = commons.generate_path(w_ceil, attn_mask)
            m_p = torch.matmul(attn.squeeze(1), m_p.transpose(1, 2)).transpose(1, 2)
            logs_p = torch.matmul(attn.squeeze(1), logs_p.transpose(1, 2)).transpose(1, 2)
            z_p = m_p + torch.randn_like(m_p) * torch.exp(logs_p) * settings.noise_scale
            z = net.flow(z_p, y_mask, g=g, reverse=True) * y_mask
        return z, y_lengths.cpu()

    def _decode(self, model: _Model, z: torch.Tensor, g: torch.Tensor) -> np.ndarray:
        import torch

        with torch.inference_mode():
            audio = model.net.dec(z, g=g.to(z.device))
        return audio[0, 0].float().cpu().numpy()

    def _decode_windows(
        self, model: _Model, z: torch.Tensor, g: torch.Tensor, pacer: _Pacer, should_stop: ShouldStop
    ) -> Iterator[np.ndarray]:
        """Decode z [1, c, t] in windows with context, joined by crossfades (module docstring)."""
        frames, hop = z.shape[-1], model.hop
        context = self._settings.overlap_frames
        half = (context // 4) * hop  # the crossfade spans ``half`` samples either side of a join
        start = 0
        carry: np.ndarray | None = None  # the previous window's samples around the coming join
        while start < frames:
            if start > 0 and should_stop():
                return
            window = pacer.window()
            end = min(frames, start + window)
            if frames - end < window // 2:
                end = frames  # no stub of a last window
            low, high = max(0, start - context), min(frames, end + context)
            began = time.perf_counter()
            audio = self._decode(model, z[:, :, low:high], g)
            pacer.decoded(high - low, time.perf_counter() - began)
            first = start * hop - (half if start > 0 else 0) - low * hop
            last = end * hop + (half if end < frames else 0) - low * hop
            piece = audio[first:last]
            if carry is not None:
                fade = _fade_in(len(carry))
                piece[: len(carry)] = carry * (1 - fade) + piece[: len(carry)] * fade
            carry = None
            if end < frames and half:
                carry, piece = piece[-2 * half :].copy(), piece[: -2 * half]
            pacer.sent(len(piece))
            yield piece
            start = end

    def _pause(self, model: _Model, speed: float) -> np.ndarray:
        return np.zeros(int(model.sample_rate * _PAUSE_S / speed), dtype=np.float32)

    def synthesize(self, request: SynthesisRequest, should_stop: ShouldStop) -> Iterator[np.ndarray]:
        import torch

        speed = check_speed(request.speed)
        if not self._models:
            self.load()
        model, g = self._speaker(request.voice)
        length_scale = torch.full((1, 1, 1), 1.0 / speed)
        settings = self._settings
        pacer = _Pacer(
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
            z, _ = self._latent(model, [prepared], g, length_scale)
            if settings.streaming:
                yield from self._decode_windows(model, z, g, pacer, should_stop)
            else:
                yield self._decode(model, z, g)
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
        items: list[_Prepared] = []
        for index, request in enumerate(requests):
            for sentence in _sentences(request.text):
                owners.append(index)
                items.append(self._prepare(model, sentence))
        parts: list[list[np.ndarray]] = [[] for _ in requests]
        if items:
            g = torch.cat([voices[owner][1] for owner in owners])
            scales = torch.tensor([1.0 / speeds[owner] for owner in owners]).view(-1, 1, 1)
            z, lengths = self._latent(model, items, g, scales)
            for owner, audio in zip(owners, self._decode_batch(model, z, lengths, g), strict=True):
                if parts[owner]:
                    parts[owner].append(self._pause(model, speeds[owner]))
                parts[owner].append(audio)
        return [np.concatenate(p) if p else np.zeros(0, dtype=np.float32) for p in parts]

    def _decode_batch(
        self, model: _Model, z: torch.Tensor, lengths: torch.Tensor, g: torch.Tensor
    ) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            audio = model.net.dec(z, g=g.to(z.device))[:, 0].float().cpu().numpy()
        hop, longest = model.hop, z.shape[-1]
        # Past its end, a shorter item's padding is not silence to the decoder (its first layer adds a
        # bias and the speaker term), so its last frames are decoded again alone, with context.
        tail = max(self._settings.overlap_frames, 1)
        results = []
        for row, length in enumerate(int(n) for n in lengths):
            item = audio[row, : length * hop].copy()
            if length < longest:
                low = max(0, length - 2 * tail)
                redo = self._decode(model, z[row : row + 1, :, low:length], g[row : row + 1])
                if low == 0:
                    item = redo
                else:
                    item[-tail * hop :] = redo[-tail * hop :]
            results.append(item)
        return results
