"""Building a MeloTTS model on torch from its files: the synthesizer, its checkpoint's weights, its BERT.

Checkpoints load the way ``melo.api.TTS`` loads them (``SynthesizerTrn`` from
``get_hparams_from_file``, then the ``model`` state dict), with missing or mis-shaped weights
reported; ``melo.utils.load_checkpoint`` is not used because it keeps random weights for missing keys
with only a log line, and requires training keys (``iteration``, ``learning_rate``) a released
checkpoint need not carry. Call these only after :func:`.isolation.import_melo`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamer.errors import EngineError

from .isolation import quiet_melo
from .languages import Language

if TYPE_CHECKING:
    import torch


@dataclass(eq=False, slots=True)
class Model:
    """One language's loaded model: its network, hyper-parameters, symbols and speakers."""

    language: Language
    net: Any  # melo.models.SynthesizerTrn
    hps: Any  # melo.utils.HParams
    symbol_to_id: dict[str, int]
    speakers: dict[str, int]
    sample_rate: int
    hop: int  # audio samples per latent frame
    device: torch.device


def resolve_device(wanted: str) -> torch.device:
    """The torch device engines.melo.device names (``auto``: CUDA, else MPS, else the CPU)."""
    import torch

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


def load_model(
    language: Language, config: Path, checkpoint: Path, bert: Path, device: torch.device, utils: Any
) -> Model:
    """The model of ``language`` on ``device``, its BERT loaded into melo's front end. ``utils`` is
    ``melo.utils`` as import_melo returned it."""
    import melo.models
    import torch

    try:
        hps = utils.get_hparams_from_file(str(config))
    except (OSError, ValueError) as exc:
        raise EngineError(f"MeloTTS {language.key}: cannot read {config}: {exc}") from exc
    try:
        hop = int(hps.data.hop_length)
        symbols = list(hps.symbols)
        with quiet_melo():
            net = melo.models.SynthesizerTrn(
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
    _load_weights(language, net, checkpoint)
    net.eval().to(device)
    _load_bert(language, bert, device)
    return Model(language, net, hps, {s: i for i, s in enumerate(symbols)}, speakers, rate, hop, device)


def _load_weights(language: Language, net: Any, checkpoint: Path) -> None:
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


def _load_bert(language: Language, folder: Path, device: torch.device) -> None:
    # Loaded here rather than on the first sentence (melo loads it lazily, from the hub id).
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    module_name, repo = language.bert
    module: Any = sys.modules[f"melo.text.{module_name}"]  # melo's modules are untyped
    try:
        bert = AutoModelForMaskedLM.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError and its own errors
        raise EngineError(f"MeloTTS {language.key}: cannot load the BERT in {folder}: {exc}") from exc
    bert = bert.to(device).eval()
    if hasattr(module, "models"):  # chinese_bert / japanese_bert keep one model per hub id
        module.models[repo] = bert
        module.tokenizers[repo] = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    else:
        module.model = bert
