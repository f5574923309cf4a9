"""MeloTTS's languages: the model folder, hub repository, front-end modules and BERT of each.

One model per language in ``engines.melo.languages`` (en, en_v2, en_newest, es, fr, zh, jp, kr; a
few aliases such as ``ja`` and ``ko`` too). ``key`` names its folder under ``model_dir`` (EN, EN_V2,
EN_NEWEST, ES, FR, ZH, JP, KR), as in upstream's download table.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass

from streamer.errors import EngineError

INSTALL_HINT = "bash scripts/install_melo.sh"
PACKAGES = ("melo", "torch", "transformers")  # what the engine imports to load a model
BERT_FILES = [
    "config.json",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
]


@dataclass(frozen=True, slots=True)
class Language:
    key: str  # model_dir sub-folder, as in upstream's download table
    text: str  # melo's front-end language
    code: str  # Voice.language
    repo: str  # the official checkpoint on the Hugging Face hub
    modules: tuple[str, ...]  # melo.text submodules its front end imports
    bert: tuple[str, str]  # (melo.text module running it, hub id) of the BERT whose features it uses
    tokenizers: tuple[str, ...]  # hub ids of every tokenizer its modules load at import


_EN_MODULES = ("english", "english_bert")
_EN_BERT = ("english_bert", "bert-base-uncased")
LANGUAGES = {
    "en": Language("EN", "EN", "en", "myshell-ai/MeloTTS-English", _EN_MODULES, _EN_BERT, (_EN_BERT[1],)),
    "en_v2": Language(
        "EN_V2", "EN", "en", "myshell-ai/MeloTTS-English-v2", _EN_MODULES, _EN_BERT, (_EN_BERT[1],)
    ),
    "en_newest": Language(
        "EN_NEWEST", "EN", "en", "myshell-ai/MeloTTS-English-v3", _EN_MODULES, _EN_BERT, (_EN_BERT[1],)
    ),
    "es": Language(
        "ES", "ES", "es", "myshell-ai/MeloTTS-Spanish", ("spanish", "spanish_bert"),
        ("spanish_bert", "dccuchile/bert-base-spanish-wwm-uncased"),
        ("dccuchile/bert-base-spanish-wwm-uncased",),
    ),
    "fr": Language(
        "FR", "FR", "fr", "myshell-ai/MeloTTS-French", ("french", "french_bert"),
        ("french_bert", "dbmdz/bert-base-french-europeana-cased"),
        ("dbmdz/bert-base-french-europeana-cased",),
    ),
    "zh": Language(
        "ZH", "ZH_MIX_EN", "zh", "myshell-ai/MeloTTS-Chinese",
        ("english", "chinese", "chinese_mix", "chinese_bert"),
        ("chinese_bert", "bert-base-multilingual-uncased"),
        ("bert-base-uncased", "bert-base-multilingual-uncased"),
    ),
    "jp": Language(
        "JP", "JP", "ja", "myshell-ai/MeloTTS-Japanese", ("japanese", "japanese_bert"),
        ("japanese_bert", "tohoku-nlp/bert-base-japanese-v3"), ("tohoku-nlp/bert-base-japanese-v3",),
    ),
    "kr": Language(
        "KR", "KR", "ko", "myshell-ai/MeloTTS-Korean", ("korean", "japanese_bert"),
        ("japanese_bert", "kykim/bert-kor-base"), ("kykim/bert-kor-base",),
    ),
}  # fmt: skip
ALIASES = {"ja": "jp", "ko": "kr", "sp": "es", "en_v3": "en_newest", "en_us": "en", "zh_mix_en": "zh"}
# Every melo.text module that imports a language's dependencies (melo.text.get_bert imports all of them).
TEXT_MODULES = ("english", "japanese", "chinese", "chinese_mix", "korean", "french", "spanish")
BERT_MODULES = ("english_bert", "japanese_bert", "chinese_bert", "spanish_bert", "french_bert")


def find_language(code: str) -> Language:
    """The language of a code of engines.melo.languages (aliases too); EngineError for an unknown one."""
    key = code.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in LANGUAGES:
        raise EngineError(f"melo has no language {code!r}; known: {', '.join(LANGUAGES)}")
    return LANGUAGES[key]


def missing_packages() -> list[str]:
    """The packages of PACKAGES this Python lacks (found, not imported: importing melo is costly)."""
    return [name for name in PACKAGES if importlib.util.find_spec(name) is None]


def not_installed() -> str:
    """Why the engine cannot run when missing_packages() names any, and what to do."""
    missing = ", ".join(missing_packages()) or "none"
    return f"MeloTTS is not installed (missing: {missing}): run `{INSTALL_HINT}`"


def installed_versions() -> dict[str, str]:
    """Versions of melotts and torch (install checks)."""
    return {name: importlib.metadata.version(name) for name in ("melotts", "torch", "transformers")}
