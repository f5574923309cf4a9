"""Where a MeloTTS model's files are: a local model_dir, else the Hugging Face cache; and what is missing.

One model per language in ``engines.melo.languages``. Its files, first found wins:
``model_dir/<LANG>/config.json`` + ``checkpoint.pth`` (LANG = EN, EN_V2, EN_NEWEST, ES, FR, ZH, JP,
KR) when ``model_dir`` is set, and only there; otherwise the official repo
(``myshell-ai/MeloTTS-English``...) from the local Hugging Face cache, else fetched from the hub when
the network allows (at load only: listing voices never downloads). The BERT its front end runs:
``bert_dir/<LANG>``, else ``model_dir/<LANG>/bert``, else the hub id melo names
(``bert-base-uncased``...) from the cache or the hub. The English front end also needs nltk's
``cmudict`` and perceptron tagger, searched in ``nltk_data``, else ``model_dir/nltk_data``, plus
nltk's own path. ``MELO_DOWNLOAD_MODELS=en bash scripts/install_melo.sh`` (or :func:`download`)
fetches all of it where the network allows. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from streamer.errors import EngineError

from .languages import BERT_FILES, INSTALL_HINT, Language, find_language

MODEL_FILES = ("config.json", "checkpoint.pth")


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
    patterns = [name for name in [*BERT_FILES, weights] if name in files] + ["*.model"]
    return Path(snapshot_download(repo, allow_patterns=patterns))


def download(languages: Iterable[str]) -> None:
    """Fetch the official checkpoints of ``languages``, their BERTs and nltk's English data into the
    Hugging Face and nltk caches, where the engine finds them when ``model_dir`` is null. Network."""
    import nltk
    from huggingface_hub import hf_hub_download

    chosen = [find_language(code) for code in languages]
    for language in chosen:
        for filename in MODEL_FILES:
            print(hf_hub_download(language.repo, filename))
        for repo in ModelFiles.bert_repos(language):
            print(_fetch_bert(repo))
    if any("english" in language.modules for language in chosen):
        for resource in ("cmudict", "averaged_perceptron_tagger_eng"):
            if not nltk.download(resource, quiet=True):
                raise EngineError(f"nltk could not download {resource}")


def _download_hint(language: Language) -> str:
    return f"MELO_DOWNLOAD_MODELS={language.key.lower()} {INSTALL_HINT}"


class ModelFiles:
    """The files of each language's model and BERT, from the settings' folders or the hub's cache."""

    def __init__(self, model_dir: Path | None, bert_dir: Path | None, nltk_data: Path | None) -> None:
        self.model_dir = model_dir
        self.bert_dir = bert_dir
        self.nltk_data = nltk_data

    def model(self, language: Language, allow_download: bool) -> tuple[Path, Path] | None:
        """(config.json, checkpoint.pth) of ``language``, or None where they are not found."""
        if self.model_dir is not None:
            folder = self.model_dir / language.key
            config, checkpoint = (folder / name for name in MODEL_FILES)
            return (config, checkpoint) if config.is_file() and checkpoint.is_file() else None
        config_file = _hub_file(language.repo, "config.json", allow_download)
        checkpoint_file = config_file and _hub_file(language.repo, "checkpoint.pth", allow_download)
        return (config_file, checkpoint_file) if config_file and checkpoint_file else None

    @staticmethod
    def bert_repos(language: Language) -> list[str]:
        """Hub ids of every BERT or tokenizer the language's front end reads."""
        return list(dict.fromkeys((*language.tokenizers, language.bert[1])))

    def bert(self, language: Language, repo: str, allow_download: bool) -> Path | None:
        if repo == language.bert[1]:
            if self.bert_dir is not None:
                folder = self.bert_dir / language.key
                return folder if (folder / "config.json").is_file() else None
            if (
                self.model_dir is not None
                and (self.model_dir / language.key / "bert" / "config.json").is_file()
            ):
                return self.model_dir / language.key / "bert"
        return _hub_snapshot(repo, allow_download)

    def nltk_paths(self) -> list[Path]:
        if self.nltk_data is not None:
            return [self.nltk_data]
        if self.model_dir is not None and (self.model_dir / "nltk_data").is_dir():
            return [self.model_dir / "nltk_data"]
        return []

    def local_config(self, language: Language) -> Path:
        """The config file of a language whose model and BERTs are all here, without downloading;
        else EngineError saying what is missing and what to do."""
        files = self.model(language, allow_download=False)
        if files is None:
            raise self.missing_model(language)
        for repo in self.bert_repos(language):
            if self.bert(language, repo, allow_download=False) is None:
                raise self.missing_bert(language, repo)
        return files[0]

    def missing_model(self, language: Language, cause: BaseException | None = None) -> EngineError:
        """What to do when the model's files are not where the settings say (``cause``: the hub's
        error, when a download was tried)."""
        expected = f"{' and '.join(MODEL_FILES)} from https://huggingface.co/{language.repo}"
        if self.model_dir is not None:
            folder = self.model_dir / language.key
            if folder.is_dir():
                missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
                state = f"{' and '.join(missing)} missing"
            else:
                state = "no such folder"
            return EngineError(
                f"no MeloTTS {language.key} model files in {folder} ({state}): expected {expected}; "
                f"put them there, or set engines.melo.model_dir to the folder that holds {language.key}/"
            )
        from huggingface_hub.constants import HF_HUB_CACHE

        if cause is None:
            # Listing voices never downloads: a server starts as fast offline as online.
            why = f"{HF_HUB_CACHE}; streamer does not download models when it starts"
        else:
            why = f"{HF_HUB_CACHE}; the hub could not be reached: {type(cause).__name__}: {cause}"
        return EngineError(
            f"no MeloTTS {language.key} checkpoint in the Hugging Face cache ({why}): "
            f"run `{_download_hint(language)}` where the network allows, or put {expected} in "
            f"<folder>/{language.key}/ and set engines.melo.model_dir to <folder>"
        )

    def missing_bert(self, language: Language, repo: str) -> EngineError:
        if self.bert_dir is not None:
            where = f"{self.bert_dir / language.key}/"
        elif self.model_dir is not None:
            where = f"{self.model_dir / language.key / 'bert'}/ or the Hugging Face cache"
        else:
            where = "the Hugging Face cache"
        return EngineError(
            f"MeloTTS {language.key}: BERT {repo} not found in {where}: download it from "
            f"https://huggingface.co/{repo} (config.json, vocab and weights), or run "
            f"`{_download_hint(language)}`"
        )
