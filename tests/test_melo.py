"""MeloTTS engine: melo's real loading, front end and model code, on random-weight assets built at test time.

Nothing here reaches a network: ``build_melo_assets`` writes a random-weight English MeloTTS model
(the real config layout and symbol/tone/language tables, a reduced geometry), a BERT with melo's
768-wide features and an uncased WordPiece vocab, and the nltk data the English front end reads.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pickle
import string
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Found, not imported: importing g2p_en would call nltk.download.
if not all(importlib.util.find_spec(name) for name in ("melo", "torch", "transformers", "g2p_en")):
    if os.environ.get("STREAMER_REQUIRE_MELO"):  # set by .ci/run: there a missing MeloTTS is a broken install
        pytest.fail("STREAMER_REQUIRE_MELO is set but MeloTTS is not installed", pytrace=False)
    pytest.skip("MeloTTS is not installed (bash scripts/install_melo.sh)", allow_module_level=True)

import torch

from streamer.engines.base import SynthesisRequest
from streamer.engines.catalog import Catalog
from streamer.engines.melo import MeloEngine
from streamer.errors import EngineError, InvalidField, UnknownEngine, UnknownVoice

from .conftest import start_server
from .helpers import Client, decode_audio, rms

ENGLISH_SPEAKERS = {"EN-US": 0, "EN-BR": 1, "EN_INDIA": 2, "EN-AU": 3, "EN-Default": 4}
DETERMINISTIC = {"noise_scale": 0.0, "noise_scale_w": 0.0, "sdp_ratio": 0.0}
SHORT = "Hello world. The quick brown fox jumps over the lazy dog."
LONG = (
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow "
    "of many beautiful colors"
)

# The upstream English config (myshell-ai/MeloTTS-English) minus training-only paths; "model" is
# replaced by a reduced geometry in tests, kept in the benchmark.
REAL_MODEL = {
    "use_spk_conditioned_encoder": True,
    "use_noise_scaled_mas": True,
    "use_mel_posterior_encoder": False,
    "use_duration_discriminator": True,
    "inter_channels": 192,
    "hidden_channels": 192,
    "filter_channels": 768,
    "n_heads": 2,
    "n_layers": 6,
    "n_layers_trans_flow": 3,
    "kernel_size": 3,
    "p_dropout": 0.1,
    "resblock": "1",
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "upsample_rates": [8, 8, 2, 2, 2],
    "upsample_initial_channel": 512,
    "upsample_kernel_sizes": [16, 16, 8, 2, 2],
    "n_layers_q": 3,
    "use_spectral_norm": False,
    "gin_channels": 256,
}
TINY_MODEL = {
    **REAL_MODEL,
    "inter_channels": 32,
    "hidden_channels": 32,
    "filter_channels": 64,
    "n_layers": 3,  # melo conditions the text encoder on the speaker at layer 2
    "upsample_initial_channel": 32,
    "gin_channels": 32,
}


def melo_config(real_geometry: bool) -> dict[str, Any]:
    import melo.text

    symbols = sys.modules["melo.text.symbols"].symbols  # melo.text.symbols is shadowed by the list
    assert len(symbols) == 219 and melo.text is not None
    return {
        "train": {"segment_size": 16384, "learning_rate": 0.0003, "batch_size": 6, "seed": 52},
        "data": {
            "max_wav_value": 32768.0,
            "sampling_rate": 44100,
            "filter_length": 2048,
            "hop_length": 512,
            "win_length": 2048,
            "n_mel_channels": 128,
            "mel_fmin": 0.0,
            "mel_fmax": None,
            "add_blank": True,
            "n_speakers": 256,
            "cleaned_text": True,
            "spk2id": ENGLISH_SPEAKERS,
        },
        "model": REAL_MODEL if real_geometry else TINY_MODEL,
        "num_languages": 8,
        "num_tones": 16,
        "symbols": list(symbols),
    }


def _cmudict() -> dict[str, list[list[str]]]:
    import melo

    with open(Path(melo.__file__).parent / "text" / "cmudict_cache.pickle", "rb") as file:
        data: dict[str, list[list[str]]] = pickle.load(file)
    return data


def _vocab(words: Iterable[str], size: int) -> list[str]:
    """An uncased WordPiece vocab: specials, characters and their ## pieces, then whole words."""
    base = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = dict.fromkeys(base + chars + ["##" + c for c in string.ascii_lowercase + string.digits])
    for word in words:
        if len(vocab) >= size:
            break
        vocab[word] = None
    return list(vocab)


def build_melo_assets(
    root: Path,
    *,
    real_geometry: bool = False,
    vocab_size: int = 3000,
    frames_per_token: float = 2.9,
    seed: int = 0,
) -> Path:
    """Write under ``root`` what the engine needs to speak English offline with random weights; a
    server or engine with ``engines.melo.model_dir: root`` loads it. Returns ``root``.

    - ``EN/config.json`` + ``EN/checkpoint.pth``: MeloTTS English, upstream config layout (219
      symbols, 16 tones, 8 languages, speakers EN-US...), real or reduced geometry. The duration
      predictor's last layer is set to ``frames_per_token`` latent frames per token (random
      weights would give about one); everything else is randomly initialised.
    - ``EN/bert/``: a BertForMaskedLM with hidden size 768 (melo's English features are 768 wide),
      2 small layers or the full bert-base geometry, and a WordPiece vocab of ``vocab_size`` entries
      (characters, then the shortest words of melo's CMU dictionary).
    - ``nltk_data/``: ``corpora/cmudict`` written from melo's bundled ``cmudict_cache.pickle``, and an
      ``averaged_perceptron_tagger_eng`` that tags every word NN (g2p_en only uses tags to choose
      between homograph pronunciations).
    """
    from transformers import BertConfig, BertForMaskedLM

    with warnings.catch_warnings():  # torch 2.13 deprecates the jit.script and weight_norm melo uses
        warnings.simplefilter("ignore", DeprecationWarning)
        import melo.models

    torch.manual_seed(seed)
    english = root / "EN"
    (english / "bert").mkdir(parents=True, exist_ok=True)
    config = melo_config(real_geometry)
    (english / "config.json").write_text(json.dumps(config, indent=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's weight_norm deprecation, in melo
        net = melo.models.SynthesizerTrn(
            len(config["symbols"]),
            config["data"]["filter_length"] // 2 + 1,
            config["train"]["segment_size"] // config["data"]["hop_length"],
            n_speakers=config["data"]["n_speakers"],
            num_tones=config["num_tones"],
            num_languages=config["num_languages"],
            **config["model"],
        )
    with torch.no_grad():
        net.dp.proj.weight.zero_()
        net.dp.proj.bias.fill_(math.log(frames_per_token))
    checkpoint = {"model": net.state_dict(), "iteration": 1, "optimizer": None, "learning_rate": 0.0003}
    torch.save(checkpoint, english / "checkpoint.pth")

    dictionary = _cmudict()
    words = sorted((w.lower() for w in dictionary if w.isalpha()), key=lambda w: (len(w), w))
    vocab = _vocab(words, vocab_size)
    (english / "bert" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer_config = {"do_lower_case": True, "tokenizer_class": "BertTokenizer", "model_max_length": 512}
    (english / "bert" / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    if real_geometry:
        bert_config = BertConfig(vocab_size=len(vocab))
    else:
        bert_config = BertConfig(
            vocab_size=len(vocab),
            hidden_size=768,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
    BertForMaskedLM(bert_config).save_pretrained(english / "bert")

    cmudict = root / "nltk_data" / "corpora" / "cmudict"
    cmudict.mkdir(parents=True, exist_ok=True)
    lines = (
        f"{word} 1 {' '.join(p for syllable in sounds for p in syllable)}"
        for word, sounds in dictionary.items()
    )
    (cmudict / "cmudict").write_text("\n".join(lines) + "\n")
    tagger = root / "nltk_data" / "taggers" / "averaged_perceptron_tagger_eng"
    tagger.mkdir(parents=True, exist_ok=True)
    for part, value in (("weights", {}), ("tagdict", {}), ("classes", ["NN"])):
        (tagger / f"averaged_perceptron_tagger_eng.{part}.json").write_text(json.dumps(value))
    return root


# ---- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def melo_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_melo_assets(tmp_path_factory.mktemp("melo-assets"))


def _engine(assets: Path, **settings: Any) -> MeloEngine:
    engine = MeloEngine({"model_dir": str(assets), "threads": 1, **DETERMINISTIC, **settings})
    engine.load()
    return engine


@pytest.fixture(scope="module")
def engine(melo_assets: Path) -> MeloEngine:
    return _engine(melo_assets)


@pytest.fixture(scope="module")
def one_pass(melo_assets: Path) -> MeloEngine:
    return _engine(melo_assets, streaming=False)


def speak(engine: MeloEngine, text: str, voice: Any = "EN-US", speed: float = 1.0) -> list[np.ndarray]:
    return list(engine.synthesize(SynthesisRequest(text, voice, speed), lambda: False))


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = np.sum((reference.astype(np.float64) - other) ** 2)
    return math.inf if noise == 0 else 10 * math.log10(np.sum(reference.astype(np.float64) ** 2) / noise)


# ---- listing and loading ----------------------------------------------------------------------------


def test_voices_are_the_speakers_of_the_config_and_listing_them_imports_no_torch(melo_assets: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from streamer.engines.melo import MeloEngine
        engine = MeloEngine({{"model_dir": {str(melo_assets)!r}}})
        print([(v.name, v.language, v.sample_rate) for v in engine.voices()], engine.available())
        assert "torch" not in sys.modules and "melo" not in sys.modules, "listing voices imported torch"
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    expected = [(name, "en", 44100) for name in ENGLISH_SPEAKERS]
    assert result.stdout.strip() == f"{expected} True"


def test_without_a_model_the_engine_is_unavailable_and_load_says_what_to_put_where(tmp_path: Path) -> None:
    engine = MeloEngine({"model_dir": str(tmp_path)})
    assert not engine.available() and engine.voices() == []
    with pytest.raises(EngineError) as info:
        engine.load()
    message = str(info.value)
    assert "config.json and checkpoint.pth" in message and str(tmp_path / "EN") in message
    assert "huggingface.co/myshell-ai/MeloTTS-English" in message


def test_an_empty_or_incomplete_model_dir_is_the_reason_melo_is_not_offered(
    melo_assets: Path, tmp_path: Path
) -> None:
    assert MeloEngine({"model_dir": str(melo_assets)}).unavailable_reason() is None
    empty = MeloEngine({"model_dir": str(tmp_path)}).unavailable_reason()
    assert empty is not None and empty.startswith(
        f"no MeloTTS EN model files in {tmp_path / 'EN'} (no such folder)"
    )
    assert "expected config.json and checkpoint.pth" in empty and "set engines.melo.model_dir" in empty
    (tmp_path / "EN").mkdir()
    (tmp_path / "EN" / "config.json").symlink_to(melo_assets / "EN" / "config.json")
    half = MeloEngine({"model_dir": str(tmp_path)}).unavailable_reason()
    assert half is not None and f"in {tmp_path / 'EN'} (checkpoint.pth missing)" in half

    catalog = Catalog({"melo": {"model_dir": str(tmp_path)}}, "auto")
    assert catalog.errors["melo"] == half and catalog.default_engine != "melo"
    assert catalog.describe_choice().startswith(f"auto chose {catalog.default_engine}: melo skipped ({half})")
    with pytest.raises(UnknownEngine) as info:
        Catalog({"melo": {"model_dir": str(tmp_path)}}, "melo")
    assert half in str(info.value)


def test_without_model_dir_or_a_cached_checkpoint_the_reason_says_how_to_supply_one(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        from streamer.engines.melo import MeloEngine
        from streamer.errors import EngineError
        print(MeloEngine({}).unavailable_reason())
        try:
            MeloEngine({"device": "cpu"}).load()  # tries the hub, which offline mode refuses
        except EngineError as exc:
            print(exc)
        """
    )
    # An empty Hugging Face cache, and no network for it.
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    reason, error = result.stdout.strip().splitlines()
    for message in (reason, error):
        assert message.startswith(f"no MeloTTS EN checkpoint in the Hugging Face cache ({tmp_path / 'hub'};")
        assert "MELO_DOWNLOAD_MODELS=en bash scripts/install_melo.sh" in message
        assert "set engines.melo.model_dir" in message
    assert "does not download models when it starts" in reason and "the hub could not be reached" in error


def test_a_missing_bert_names_it(melo_assets: Path, tmp_path: Path) -> None:
    (tmp_path / "EN").mkdir()
    for name in ("config.json", "checkpoint.pth"):
        (tmp_path / "EN" / name).symlink_to(melo_assets / "EN" / name)
    engine = MeloEngine({"model_dir": str(tmp_path), "bert_dir": str(tmp_path / "berts")})
    assert not engine.available()
    with pytest.raises(EngineError, match="bert-base-uncased"):
        engine.load()


def test_missing_nltk_data_names_it_before_melo_imports(melo_assets: Path, tmp_path: Path) -> None:
    (tmp_path / "EN").symlink_to(melo_assets / "EN")  # model and BERT, but no nltk_data beside them
    code = textwrap.dedent(
        """
        import sys
        import nltk
        try:
            nltk.data.find("corpora/cmudict")
            print("this machine has nltk's cmudict")
        except LookupError:
            from streamer.engines.melo import MeloEngine
            from streamer.errors import EngineError
            try:
                MeloEngine({"model_dir": sys.argv[1]}).load()
            except EngineError as exc:
                print(exc)
            assert "melo.text.english" not in sys.modules
        """
    )
    env = {**os.environ, "NLTK_DATA": str(tmp_path / "empty")}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    if "this machine has" in result.stdout:
        pytest.skip(result.stdout.strip())
    assert "cmudict" in result.stdout and "averaged_perceptron_tagger_eng" in result.stdout


def test_a_checkpoint_that_does_not_fit_its_config_is_refused(melo_assets: Path, tmp_path: Path) -> None:
    (tmp_path / "EN").mkdir()
    config = json.loads((melo_assets / "EN" / "config.json").read_text())
    config["model"]["hidden_channels"] = 48
    (tmp_path / "EN" / "config.json").write_text(json.dumps(config))
    (tmp_path / "EN" / "checkpoint.pth").symlink_to(melo_assets / "EN" / "checkpoint.pth")
    (tmp_path / "berts").mkdir()
    (tmp_path / "berts" / "EN").symlink_to(melo_assets / "EN" / "bert")
    settings = {"bert_dir": str(tmp_path / "berts"), "nltk_data": str(melo_assets / "nltk_data")}
    engine = MeloEngine({"model_dir": str(tmp_path), **settings})
    with pytest.raises(EngineError, match=r"does not fit its config\.json"):
        engine.load()


def test_only_the_configured_language_is_imported(engine: MeloEngine) -> None:
    from streamer.engines.melo.isolation import Placeholder

    for name in ("japanese", "chinese", "chinese_mix", "korean", "french", "spanish", "chinese_bert"):
        assert isinstance(sys.modules[f"melo.text.{name}"], Placeholder), name
    assert not isinstance(sys.modules["melo.text.english"], Placeholder)
    for library in ("MeCab", "jieba", "pypinyin", "pykakasi", "cn2an", "gruut"):
        assert library not in sys.modules, library
    assert engine.capabilities.streaming and engine.capabilities.blending


# ---- synthesis --------------------------------------------------------------------------------------


def test_synthesize_streams_float32_audio_of_plausible_length(engine: MeloEngine) -> None:
    blocks = speak(engine, SHORT)
    assert len(blocks) >= 3, "two sentences, the second decoded in windows, with a pause between"
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    audio = np.concatenate(blocks)
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    seconds = len(audio) / 44100
    # 11 words, about 40 phones with blanks between them, 3 frames of 11.6 ms each.
    assert 1.0 < seconds < 6.0, seconds
    assert rms(audio) > 1e-3


def test_speed_scales_the_duration(engine: MeloEngine) -> None:
    normal = sum(len(b) for b in speak(engine, SHORT))
    fast = sum(len(b) for b in speak(engine, SHORT, speed=2.0))
    slow = sum(len(b) for b in speak(engine, SHORT, speed=0.5))
    assert fast < 0.8 * normal < normal < 0.6 * slow


def test_one_pass_equals_melos_own_infer(one_pass: MeloEngine) -> None:
    model = one_pass._models[0]
    prepared = one_pass._prepare(model, "The quick brown fox.")
    with torch.inference_mode():
        reference = model.net.infer(
            prepared.phones.unsqueeze(0),
            torch.LongTensor([len(prepared.phones)]),
            torch.LongTensor([ENGLISH_SPEAKERS["EN-BR"]]),
            prepared.tones.unsqueeze(0),
            prepared.languages.unsqueeze(0),
            prepared.bert.unsqueeze(0),
            prepared.ja_bert.unsqueeze(0),
            sdp_ratio=0.0,
            noise_scale=0.0,
            noise_scale_w=0.0,
            length_scale=1.0,
        )[0][0, 0].numpy()
    (ours,) = speak(one_pass, "The quick brown fox.", voice="EN-BR")
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_windowed_decode_matches_one_pass_and_starts_early(engine: MeloEngine, one_pass: MeloEngine) -> None:
    windows = speak(engine, LONG)
    (whole,) = speak(one_pass, LONG)
    assert len(windows) >= 2 and len(windows[0]) < len(whole) / 3
    joined = np.concatenate(windows)
    assert len(joined) == len(whole)
    quality = snr_db(whole, joined)
    print(f"windowed vs one pass: SNR {quality:.1f} dB, max |diff| {np.abs(joined - whole).max():.2e}")
    assert quality >= 40


def test_windows_without_enough_context_still_join_closely(melo_assets: Path, one_pass: MeloEngine) -> None:
    narrow = _engine(melo_assets, window_frames=16, max_window_frames=16, overlap_frames=4)
    joined = np.concatenate(speak(narrow, LONG))
    (whole,) = speak(one_pass, LONG)
    assert len(joined) == len(whole) and snr_db(whole, joined) > 10


def test_windows_grow_to_what_the_audio_ahead_covers() -> None:
    from streamer.engines.melo.decoding import Pacer

    now = [0.0]
    rate, frame = 44100, 512
    pacer = Pacer(rate, first=32, largest=256, context=16, clock=lambda: now[0])
    assert pacer.window() == 32  # nothing measured yet: the configured first window
    pacer.decoded(48, 0.3)  # 6.25 ms per frame: slower than half real time (11.6 ms per frame)
    pacer.sent(28 * frame)  # 325 ms ahead covers 0.8 * 0.325 / 0.00625 = 41 frames, 9 beyond context
    assert pacer.window() == 64  # too little to fit even 32: one stall, then ahead for good
    now[0] = 0.6
    pacer.decoded(96, 0.6)
    pacer.sent(64 * frame)  # 1.07 s sent, 0.6 s played: 0.47 s ahead covers 59 frames, 27 beyond context
    assert pacer.window() == 128  # still short of 32: doubles again
    now[0] = 1.0
    pacer.sent(128 * frame)  # 2.55 s sent, 1 s played
    ahead = 220 * frame / rate - 1.0
    assert pacer.window() == int(0.8 * ahead / 0.00625) - 32 == 166
    pacer.decoded(100, 0.01)  # a fast machine: as large as allowed
    assert pacer.window() == 256


def test_should_stop_is_polled_between_windows(engine: MeloEngine) -> None:
    blocks = []
    for block in engine.synthesize(SynthesisRequest(LONG, "EN-US"), lambda: bool(blocks)):
        blocks.append(block)
    assert len(blocks) == 1


# ---- blends -----------------------------------------------------------------------------------------


def test_a_blend_of_one_speaker_is_that_speaker_and_a_mix_differs_from_both(engine: MeloEngine) -> None:
    pure = np.concatenate(speak(engine, SHORT, "EN-US"))
    assert np.array_equal(np.concatenate(speak(engine, SHORT, {"EN-US": 1.0})), pure)
    assert np.array_equal(np.concatenate(speak(engine, SHORT, {"EN-US": 3, "EN-BR": 0})), pure)
    other = np.concatenate(speak(engine, SHORT, "EN-BR"))
    mixed = np.concatenate(speak(engine, SHORT, {"EN-US": 0.5, "EN-BR": 0.5}))
    assert len(pure) == len(other) == len(mixed)  # durations come from the phones here, not the speaker
    apart = rms(other - pure)
    assert apart > 1e-6, "the two speakers sound alike"
    # Random weights make speakers differ only slightly; the mix sits between them, far from both.
    assert rms(mixed - pure) > 0.2 * apart and rms(mixed - other) > 0.2 * apart
    # Weights are normalised: 1:1 is 0.5/0.5.
    assert np.array_equal(np.concatenate(speak(engine, SHORT, {"EN-US": 2, "EN-BR": 2})), mixed)


@pytest.mark.parametrize(
    ("voice", "error"),
    [
        ("nobody", UnknownVoice),
        ({"EN-US": 0.5, "nobody": 0.5}, UnknownVoice),
        ({"EN-US": -0.5, "EN-BR": 1.5}, InvalidField),
        ({"EN-US": 0, "EN-BR": 0}, InvalidField),
        ({"EN-US": float("nan")}, InvalidField),
        ({"EN-US": "half"}, InvalidField),
        ({}, InvalidField),
    ],
)
def test_unknown_speakers_and_bad_weights_are_clear_errors(
    engine: MeloEngine, voice: Any, error: type
) -> None:
    with pytest.raises(error):
        speak(engine, "Hello.", voice)


def test_speed_must_be_positive(engine: MeloEngine) -> None:
    with pytest.raises(ValueError, match="speed"):
        speak(engine, "Hello.", speed=0)


# ---- batching ---------------------------------------------------------------------------------------


def test_synthesize_batch_equals_one_request_at_a_time(engine: MeloEngine) -> None:
    requests = [
        SynthesisRequest(SHORT, "EN-US"),
        SynthesisRequest("Hi.", "EN-AU", speed=1.3),
        SynthesisRequest(LONG, {"EN-BR": 0.7, "EN_INDIA": 0.3}, speed=0.9),
        SynthesisRequest("  ", "EN-US"),
    ]
    batch = engine.synthesize_batch(requests)
    assert len(batch) == len(requests) and len(batch[3]) == 0
    for request, audio in zip(requests[:3], batch, strict=False):
        single = np.concatenate(list(engine.synthesize(request, lambda: False)))
        assert audio.dtype == np.float32 and len(audio) == len(single)
        assert np.abs(audio - single).max() < 1e-4, request.text[:20]
    assert engine.synthesize_batch([]) == []


# ---- through the server -----------------------------------------------------------------------------


def _melo_server_config(assets: Path) -> dict[str, Any]:
    settings = {"model_dir": str(assets), **DETERMINISTIC}
    return {"tts": {"engine": "melo"}, "engines": {"melo": settings}, "pool": {"workers": 1}}


@pytest.fixture(scope="module")
def melo_server(melo_assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = start_server(
        tmp_path_factory.mktemp("melo-server"), _melo_server_config(melo_assets), ready_timeout=180
    )
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


async def test_a_melo_server_streams_decodable_speech(melo_server: Any, engine: MeloEngine) -> None:
    async with await Client.connect(melo_server.ws_url) as client:
        ready = await client.start(format="wav", voice="EN-BR")
        assert ready["engine"] == "melo" and ready["voice"] == "EN-BR"
        turn = await client.say(SHORT, timeout=60)
    assert turn.audio and not turn.of_type("error")
    samples, rate = decode_audio(turn.data)
    expected = sum(len(b) for b in speak(engine, SHORT, "EN-BR")) / 44100
    assert len(samples) / rate == pytest.approx(expected, rel=0.1)
    assert rms(samples) > 1e-3


def _worker_handles_blends() -> bool:
    from streamer.pool import worker

    class Listing:
        name = "melo-probe"

        def voices(self) -> list[Any]:
            return []

    try:
        worker._voice_rate(Listing(), {"EN-US": 1.0})  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


@pytest.mark.skipif(
    not _worker_handles_blends(),
    reason="the worker's _voice_rate keys its cache by (engine, voice): a blend (a dict) needs a name",
)
async def test_a_melo_server_speaks_a_blend(melo_server: Any) -> None:
    async with await Client.connect(melo_server.ws_url) as client:
        await client.start(format="pcm", voice={"EN-US": 0.6, "EN-BR": 0.4})
        turn = await client.say("A blended voice.", timeout=60)
    assert turn.audio and not turn.of_type("error")
    assert {frame["sample_rate"] for frame in turn.audio} == {24000}


# ---- batching in the pool -------------------------------------------------------------------------


async def _drain(job: Any) -> np.ndarray:
    blocks = [block async for _, block in job.blocks()]
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


async def test_the_pool_batches_waiting_chunks_of_different_sessions(
    melo_assets: Path, engine: MeloEngine
) -> None:
    from streamer.pool import WorkerPool

    settings = {"melo": {"model_dir": str(melo_assets), "threads": 1, **DETERMINISTIC}}
    pool = WorkerPool(workers=1, engines_settings=settings, preload=["melo"], max_queue=16, max_batch=4)
    await pool.start()
    try:
        assert await pool.wait_ready(120)
        blocker = pool.submit("s0", "melo", SynthesisRequest(SHORT, "EN-US"), first=True, batch_key="melo:en")
        texts = ["One chunk here.", "Another session speaks.", "A third one, cancelled.", "And a fourth."]
        jobs = [
            pool.submit(f"s{n}", "melo", SynthesisRequest(text, "EN-US"), first=False, batch_key="melo:en")
            for n, text in enumerate(texts, start=1)
        ]
        pool.cancel(jobs[2])  # still waiting: it never runs
        first = await _drain(blocker)
        assert pool.status()["worker_list"][0]["batch"] == 3, "the three waiting chunks go as one batch"
        pool.cancel(jobs[1])  # barge-in inside the batch: only that session's part is discarded
        results = [await _drain(jobs[0]), await _drain(jobs[3])]
        assert jobs[0].timings["batch"] == 3 and jobs[3].timings["batch"] == 3
        assert len(await _drain(jobs[1])) == 0, "a cancelled member of a batch gets no audio"
        for text, audio in zip([texts[0], texts[3]], results, strict=True):
            single = np.concatenate(list(engine.synthesize(SynthesisRequest(text, "EN-US"), lambda: False)))
            assert len(audio) == len(single) and np.abs(audio - single).max() < 1e-3
        assert len(first) > 0 and jobs[2].started_at is None
    finally:
        await pool.close()
