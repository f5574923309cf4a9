#!/usr/bin/env bash
# Installs the MeloTTS engine into the current Python: streamer's [melo] extra, then MeloTTS itself.
#
#     bash scripts/install_melo.sh                  # code only (models: engines.melo.model_dir, or below)
#     MELO_DOWNLOAD_MODELS=en bash scripts/install_melo.sh   # also fetch the English model + BERT (network)
#
# Why a script: PyPI's only MeloTTS release, melotts==0.1.1, is an sdist whose setup.py reads a
# requirements.txt the archive lacks, and whose declared pins (torch<2.0, transformers==4.27.4,
# librosa==0.9.1, mecab-python3==1.0.5) do not resolve on Python 3.11 with torch 2.13. So pip never
# sees those pins: the sdist is fetched by name, given an empty requirements.txt and installed with
# --no-deps; what its English path really imports comes from the [melo] extra:
#   torch==2.13.0            melo.models / melo.utils
#   transformers             the BERT tokenizer and model (english.py, english_bert.py)
#   g2p_en (nltk, inflect)   English grapheme-to-phoneme for words missing from melo's CMU dict
#   inflect                  melo.text.english_utils (numbers, times)
#   scipy, librosa           imported at the top of melo.utils (training helpers; unused at inference)
# Not installed: torchaudio (no build matches torch 2.13; the engine stubs it, melo uses it only for
# training), MeCab/unidic/pykakasi/jieba/pypinyin/cn2an/g2pkk/eng_to_ipa/num2words (the front ends
# of JP/ZH/KR/ES/FR, which the engine never imports unless engines.melo.languages names them),
# cached_path/soundfile/txtsplit/tqdm (melo.api and melo.download_utils, which the engine does not use).
#
# Environment:
#   PYTHON               interpreter to install into (default: python3)
#   MELO_TORCH_INDEX     a package index for torch, e.g. https://download.pytorch.org/whl/cpu on a
#                        machine with internet and no GPU (PyPI's Linux torch is the CUDA build)
#   MELO_DOWNLOAD_MODELS comma-separated languages (en, es, fr, zh, jp, kr) whose official checkpoint
#                        and BERT to fetch into the Hugging Face cache (needs huggingface.co)
set -euo pipefail

PYTHON=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MELOTTS=melotts==0.1.1
pip=("$PYTHON" -m pip install --disable-pip-version-check)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$SECONDS

# 1. torch first, pinned, so nothing later can pull another build.
if [[ -n "${MELO_TORCH_INDEX:-}" ]]; then
    "${pip[@]}" --index-url "$MELO_TORCH_INDEX" --extra-index-url https://pypi.org/simple torch==2.13.0
else
    "${pip[@]}" torch==2.13.0
fi

# 2. streamer with the [melo] extra: MeloTTS's real inference dependencies.
"${pip[@]}" -e "$ROOT[melo]"

# 3. MeloTTS itself, unless this exact release is already there.
if "$PYTHON" -m pip show melotts 2>/dev/null | grep -qx "Version: 0.1.1" \
    && "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('melo.models') is None)"; then
    echo "melotts 0.1.1 already installed"
else
    # pip download runs the sdist's setup.py to read its metadata; that fails on the missing
    # requirements.txt, so the step is expected to fail: --no-clean keeps the unpacked source.
    mkdir -p "$work/tmp" "$work/dl"
    if TMPDIR="$work/tmp" "$PYTHON" -m pip download --disable-pip-version-check --no-deps \
        --no-binary :all: --no-build-isolation --no-clean "$MELOTTS" -d "$work/dl" >"$work/download.log" 2>&1; then
        echo "note: pip download of $MELOTTS succeeded (metadata fixed upstream?)"
    fi
    src=$(find "$work/tmp" -maxdepth 3 -type f -name setup.py -path '*melotts*' -printf '%h\n' | head -n 1)
    archive=$(find "$work/dl" -maxdepth 1 -name 'melotts-0.1.1.tar.gz' | head -n 1)
    if [[ -z "$src" && -n "$archive" ]]; then
        tar -xzf "$archive" -C "$work" && src="$work/melotts-0.1.1"
    fi
    if [[ -z "$src" || ! -f "$src/melo/models.py" ]]; then
        cat "$work/download.log" >&2
        echo "error: could not fetch the $MELOTTS source from the package index" >&2
        exit 1
    fi
    : >"$src/requirements.txt"
    # --no-deps: the declared pins are never resolved (the requirements file is empty anyway).
    "${pip[@]}" --no-deps "$src"
fi

# 4. Check the engine's import path: melo's modules load without the all-language front end.
"$PYTHON" - <<'EOF'
from streamer.engines import melo

print("melo engine ready to load:", melo.installed_versions())
EOF

# 5. Optional: the official checkpoints and BERTs into the Hugging Face cache.
if [[ -n "${MELO_DOWNLOAD_MODELS:-}" ]]; then
    "$PYTHON" -c "import sys; from streamer.engines.melo import download; download(sys.argv[1].split(','))" \
        "$MELO_DOWNLOAD_MODELS"
fi

echo "MeloTTS installed in $((SECONDS - started)) s"
