#!/usr/bin/env python3
"""MeloTTS engine benchmark on CPU: real-time factor, time to first audio with and without windowed
decoding, memory per worker, and how closely windowed decoding matches one decoder pass.

The model has the real English geometry (51.9 M parameters, a full-size 109.5 M BERT) with random
weights, built by ``tests/test_melo.py``'s ``build_melo_assets``; its duration predictor is set to
``--frames-per-token`` latent frames per token (real English speech runs near 2.9), so durations,
and with them every cost, are those of real speech. Nothing is downloaded.

Each thread count runs in its own process, as a pool worker would, loading the engine once:

- load: importing melo's English front end plus loading the synthesizer and BERT, and warmup;
- per sentence (short, medium, long), median of ``--repeat`` runs: time to the first block with
  ``streaming`` on and off, their ratio, total synthesis time and the real-time factor, and the
  stall a listener playing each block as it arrives would hear with ``streaming`` on;
- windowed against one-pass decoding of the same latent: SNR and largest absolute difference;
- ``synthesize_batch`` of four requests against the same four one after the other;
- RSS after loading and after warmup, and the peak RSS after the windowed runs, the one-pass runs
  and the batch (run in that order: each peak covers what ran before it).

    python scripts/bench_melo.py [--threads 1,2] [--repeat 3] [--assets DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = {
    "short": "Hello there, how are you today?",
    "medium": "The quick brown fox jumps over the lazy dog, and then it runs far away into the quiet forest.",
    "long": (
        "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow, which is "
        "a division of white light into many beautiful colors that take the shape of a long round arch."
    ),
}


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _speak(engine: Any, text: str, sample_rate: int) -> tuple[float, float, int, float]:
    """Time to the first block, total time, samples, and the stall of a listener who plays each
    block as it arrives."""
    from streamer.engines.base import SynthesisRequest

    begin = time.perf_counter()
    first = None
    samples = 0
    stall = 0.0
    played_until = 0.0
    for block in engine.synthesize(SynthesisRequest(text, "EN-US"), lambda: False):
        now = time.perf_counter() - begin
        first = first or now
        if samples:
            stall += max(0.0, now - played_until)
        played_until = max(now, played_until) + len(block) / sample_rate
        samples += len(block)
    return first or 0.0, time.perf_counter() - begin, samples, stall


def _measure(assets: Path, threads: int, repeat: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from streamer.engines.base import SynthesisRequest
    from streamer.engines.melo import MeloEngine
    from streamer.engines.melo.decoding import Pacer, decode, decode_windows, latent

    started = time.perf_counter()
    engine = MeloEngine({"model_dir": str(assets), "threads": threads})
    engine.load()
    loaded = time.perf_counter()
    rss_loaded = _rss_mib()
    engine.warmup()
    warmed = time.perf_counter()
    model = engine._models[0]
    settings = engine._settings
    result: dict[str, Any] = {
        "threads": threads,
        "load_s": round(loaded - started, 2),
        "warmup_s": round(warmed - loaded, 2),
        "rss_after_load_mib": round(rss_loaded),
        "rss_after_warmup_mib": round(_rss_mib()),
        "sentences": {},
    }

    # Phases in this order, so each peak belongs to the mode run before it.
    runs: dict[tuple[str, bool], list[tuple[float, float, int, float]]] = {}
    for streaming in (True, False):
        settings.streaming = streaming
        for label, text in SENTENCES.items():
            runs[label, streaming] = [_speak(engine, text, model.sample_rate) for _ in range(repeat)]
        result["peak_rss_windowed_mib" if streaming else "peak_rss_one_pass_mib"] = round(_peak_mib())

    for label, text in SENTENCES.items():
        windowed, one_pass = runs[label, True], runs[label, False]
        audio_s = statistics.median(r[2] for r in windowed) / model.sample_rate
        ttfa_on = statistics.median(r[0] for r in windowed)
        ttfa_off = statistics.median(r[0] for r in one_pass)
        prepared = engine._prepare(model, text)
        g = engine._speaker("EN-US")[1]
        z, _ = latent(model, [prepared], g, torch.ones(1, 1, 1), settings)
        whole = decode(model, z, g)
        pacer = Pacer(
            model.sample_rate, settings.window_frames, settings.max_window_frames, settings.overlap_frames
        )
        windows = np.concatenate(
            list(decode_windows(model, z, g, pacer, lambda: False, settings.overlap_frames))
        )
        reference = whole.astype(np.float64)
        noise = float(np.sum((reference - windows) ** 2))
        snr = math.inf if noise == 0 else 10 * math.log10(float(np.sum(reference**2)) / noise)
        result["sentences"][label] = {
            "chars": len(text),
            "tokens": len(prepared.phones),
            "frames_per_token": round(z.shape[-1] / len(prepared.phones), 2),
            "audio_s": round(audio_s, 2),
            "ttfa_windowed_ms": round(ttfa_on * 1000),
            "ttfa_one_pass_ms": round(ttfa_off * 1000),
            "ttfa_ratio": round(ttfa_off / ttfa_on, 2),
            "stall_windowed_ms": round(statistics.median(r[3] for r in windowed) * 1000),
            "rtf_windowed": round(statistics.median(r[1] for r in windowed) / audio_s, 3),
            "rtf_one_pass": round(statistics.median(r[1] for r in one_pass) / audio_s, 3),
            "windowed_snr_db": round(snr, 1),
            "windowed_max_abs_diff": float(f"{np.abs(whole - windows).max():.3g}"),
        }

    requests = [SynthesisRequest(text, "EN-US") for text in SENTENCES.values()] + [
        SynthesisRequest(SENTENCES["medium"], {"EN-BR": 0.5, "EN-AU": 0.5})
    ]
    begin = time.perf_counter()
    for request in requests:
        for _ in engine.synthesize(request, lambda: False):
            pass
    result["sequential4_s"] = round(time.perf_counter() - begin, 2)
    begin = time.perf_counter()
    engine.synthesize_batch(requests)
    result["batch4_s"] = round(time.perf_counter() - begin, 2)
    result["peak_rss_batch_mib"] = round(_peak_mib())
    return result


def _print(results: list[dict[str, Any]]) -> None:
    for result in results:
        print(
            f"\nthreads={result['threads']}  load {result['load_s']} s, warmup {result['warmup_s']} s; "
            f"RSS MiB: loaded {result['rss_after_load_mib']}, warm {result['rss_after_warmup_mib']}, "
            f"peak windowed {result['peak_rss_windowed_mib']}, "
            f"peak one-pass {result['peak_rss_one_pass_mib']}, "
            f"peak with batch {result['peak_rss_batch_mib']}; batch of 4 {result['batch4_s']} s, "
            f"one by one {result['sequential4_s']} s"
        )
        header = (
            f"{'sentence':8} {'tokens':>6} {'fr/tok':>6} {'audio s':>7} {'TTFA win':>8} {'TTFA 1-pass':>11} "
            f"{'ratio':>5} {'stall':>6} {'RTF win':>7} {'RTF 1-pass':>10} {'SNR dB':>7} {'max|diff|':>9}"
        )
        print(header)
        for label, row in result["sentences"].items():
            print(
                f"{label:8} {row['tokens']:>6} {row['frames_per_token']:>6} {row['audio_s']:>7} "
                f"{row['ttfa_windowed_ms']:>6}ms {row['ttfa_one_pass_ms']:>9}ms {row['ttfa_ratio']:>5} "
                f"{row['stall_windowed_ms']:>4}ms "
                f"{row['rtf_windowed']:>7} {row['rtf_one_pass']:>10} {row['windowed_snr_db']:>7} "
                f"{row['windowed_max_abs_diff']:>9}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--frames-per-token", type=float, default=2.9)
    parser.add_argument("--assets", type=Path, help="reuse (or build into) this folder")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    if args.worker:
        print(json.dumps(_measure(args.assets, int(args.threads), args.repeat)))
        return

    with tempfile.TemporaryDirectory(prefix="bench-melo-") as scratch:
        assets = args.assets or Path(scratch)
        if not (assets / "EN" / "checkpoint.pth").is_file():
            from tests.test_melo import build_melo_assets

            begin = time.perf_counter()
            build_melo_assets(
                assets, real_geometry=True, vocab_size=30522, frames_per_token=args.frames_per_token
            )
            print(f"built real-geometry random-weight assets in {time.perf_counter() - begin:.1f} s")
        results = []
        for threads in args.threads.split(","):
            command = [sys.executable, __file__, "--worker", "--assets", str(assets), "--threads", threads]
            command += ["--repeat", str(args.repeat)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"measuring with {threads} thread(s) failed:\n{done.stderr}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    _print(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
