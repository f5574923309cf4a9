#!/usr/bin/env python3
"""A/B of two commits with bench_stream: the same benchmark, the servers' code alternating, in one run.

This machine's speed drifts by 10-50 % over minutes, so two benchmark runs made one after the other
compare the machine as much as the code. Here the baseline commit is checked out in a temporary git
worktree, and ``scripts/bench_stream.py`` (this tree's copy, so both sides get the same client) runs
``--rounds`` times against each side in alternating order (A B, B A, A B, ...). The side's code is
chosen by ``PYTHONPATH``: the server the benchmark starts (``python -m streamer serve``) and its
engine-only runs import the side's package. Each figure is reported as the median over the rounds
of each side, and the ratio new ÷ old.

    python scripts/bench_ab.py --old e433de6 [--new WORKTREE] [--rounds 3] [--engines espeak,piper]
        [--full] [--json FILE]

Only 127.0.0.1 is contacted (bench_stream's own rule); the worktree is removed on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchlib import machine, print_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The figures compared, as bench_stream names them (lower is better unless listed in HIGHER_IS_BETTER).
FIGURES = (
    "first_audio_overhead_median_ms",
    "first_audio_overhead_p95_ms",
    "ttfa_median_ms",
    "interrupt_ack_p50_ms",
    "interrupt_ack_p99_ms",
    "stale_messages",
    "throughput_ratio_1",
    "throughput_ratio_4",
    "throughput_ratio_8",
    "loop_lag_p99_ms",
)
HIGHER_IS_BETTER = {"throughput_ratio_1", "throughput_ratio_4", "throughput_ratio_8"}


@contextlib.contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """``commit`` checked out in a temporary worktree of this repository, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="bench-ab-")) / "old"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=ROOT, check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)


def run_side(tree: Path, engines: str, full: bool, out: Path) -> dict[str, Any]:
    command = [sys.executable, str(HERE / "bench_stream.py"), "--engines", engines, "--json", str(out)]
    if not full:
        command.append("--quick")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(command, cwd=tree, env=env, check=False, stdout=subprocess.DEVNULL)
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--old", required=True, help="the baseline commit")
    parser.add_argument("--new", type=Path, default=ROOT, help="the tree measured against it (this one)")
    parser.add_argument("--rounds", type=int, default=3, help="benchmark runs per side (3)")
    parser.add_argument("--engines", default="espeak,piper")
    parser.add_argument("--full", action="store_true", help="bench_stream's full plan (default: --quick)")
    parser.add_argument("--json", type=Path, help="write every run's figures to this file")
    args = parser.parse_args(argv)

    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    with worktree(args.old) as old_tree, tempfile.TemporaryDirectory(prefix="bench-ab-runs-") as tmp:
        trees = {"old": old_tree, "new": args.new.resolve()}
        for round_ in range(args.rounds):
            order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
            for side in order:
                print(f"round {round_ + 1}/{args.rounds}: {side}", flush=True)
                report = run_side(trees[side], args.engines, args.full, Path(tmp) / f"{side}-{round_}.json")
                runs[side].append({e: out.get("figures", {}) for e, out in report["engines"].items()})

    summary: dict[str, dict[str, dict[str, float | None]]] = {}
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        rows = []
        summary[engine] = {}
        for figure in FIGURES:
            medians = {}
            for side in ("old", "new"):
                values = [r[engine][figure] for r in runs[side] if r.get(engine, {}).get(figure) is not None]
                medians[side] = statistics.median(values) if values else None
            old, new = medians["old"], medians["new"]
            ratio = new / old if old and new is not None else None
            summary[engine][figure] = {"old": old, "new": new, "new_over_old": ratio}
            better = "higher" if figure in HIGHER_IS_BETTER else "lower"
            rows.append(
                (
                    figure,
                    "-" if old is None else f"{old:.3g}",
                    "-" if new is None else f"{new:.3g}",
                    "-" if ratio is None else f"{ratio:.2f}",
                    f"{better} is better",
                )
            )
        print_table(
            f"{engine}: median of {args.rounds} alternating runs per side ({args.old} vs {args.new})",
            ("figure", "old", "new", "new ÷ old", ""),
            rows,
        )
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine(), "old": args.old, "summary": summary, "runs": runs}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
