"""Importing melo without its import-time side effects: only the configured languages, no network.

melo 0.1.1 imports every language when any of it is imported: ``melo.utils`` imports
``melo.text.cleaner``, which imports the seven front ends, each loading its BERT tokenizer from the
hub at import; ``english`` imports ``japanese`` (MeCab) for one helper; ``g2p_en`` calls
``nltk.download`` at import; ``melo.utils`` imports ``torchaudio`` (no build matches torch 2.13; melo
uses it only for training). So before melo's first import, :func:`import_melo` puts placeholders in
``sys.modules``: for the front-end and BERT modules of languages not configured (calling into one
raises EngineError), for ``torchaudio`` when it is absent (only while ``melo.utils`` imports, so no
other library takes it for the real one), and for ``melo.text.japanese`` one that carries
``distribute_phone``, the pure helper english.py takes from it. The configured front ends then import
with ``AutoTokenizer.from_pretrained`` redirected from melo's hub ids to the local folders the engine
resolved (anything else is read with ``local_files_only``) and ``nltk.download`` made a no-op:
nothing touches the network at import. A language configured later in the same process replaces its
placeholders with the real modules. melo's modules are process-wide: a tokenizer comes from the
engine that first imports its front end, and the BERT from the one that loaded last (a worker holds
one MeloEngine). Only the English front end is tested here; the others need libraries
scripts/install_melo.sh leaves out.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from streamer.errors import EngineError

from .languages import BERT_MODULES, INSTALL_HINT, TEXT_MODULES, Language


class Placeholder(types.ModuleType):
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
    g2p_module: Any = sys.modules.get("g2p_en.g2p")  # untyped, as all of melo's and g2p_en's modules
    if g2p_module is not None:
        g2p_module.pos_tag = tagger.tag


@contextlib.contextmanager
def quiet_melo() -> Iterator[None]:
    # melo's modules use torch.jit.script and torch.nn.utils.weight_norm, both announced deprecated by
    # torch 2.13 (DeprecationWarning, FutureWarning), and g2p_en reads its homograph table without
    # closing the file (ResourceWarning); all harmless, and not ours to fix.
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        yield


def import_melo(
    languages: list[Language], tokenizer_sources: Mapping[str, str], nltk_paths: list[Path]
) -> Any:
    """melo with the front ends of ``languages`` only; returns ``melo.utils``. Process-wide."""
    with _import_lock, quiet_melo():
        import nltk

        for path in nltk_paths:
            if str(path) not in nltk.data.path:
                nltk.data.path.insert(0, str(path))
        text_package = importlib.import_module("melo.text")  # its __init__ imports symbols only
        wanted = {name for language in languages for name in language.modules}
        for name in TEXT_MODULES + BERT_MODULES:
            full = f"melo.text.{name}"
            current = sys.modules.get(full)
            if name in wanted and isinstance(current, Placeholder):
                del sys.modules[full]
                text_package.__dict__.pop(name, None)
            elif name not in wanted and current is None:
                extra = {"distribute_phone": _distribute_phone} if name == "japanese" else {}
                reason = "its language is not in engines.melo.languages"
                placeholder = Placeholder(full, reason, **extra)
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
                    f"{exc}); {INSTALL_HINT} installs the English one only"
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
        sys.modules["torchaudio"] = Placeholder(
            "torchaudio", "not installed (melo uses it for training only)"
        )
        try:
            return importlib.import_module("melo.utils")
        finally:
            del sys.modules["torchaudio"]
