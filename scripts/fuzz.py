#!/usr/bin/env python3
"""The suite's fuzz and property tests, run longer than CI runs them.

    python scripts/fuzz.py [--examples 5000] [--api-examples 200]

``--examples``: hypothesis examples per property of tests/test_fuzz.py (the protocol decoder, the session
state machine, Wyoming framing and connections; CI: 150). ``--api-examples``: schemathesis examples per
REST operation against a real server on loopback (tests/test_openapi.py; CI: 20). Everything stays on
127.0.0.1 and stops by itself; the exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--examples", type=int, default=5000, help="per property (5000)")
    parser.add_argument("--api-examples", type=int, default=200, help="per REST operation (200)")
    args = parser.parse_args(argv)
    env = {
        **os.environ,
        "STREAMER_FUZZ_EXAMPLES": str(args.examples),
        "STREAMER_API_FUZZ_EXAMPLES": str(args.api_examples),
    }
    schemathesis = "tests/test_openapi.py::test_schemathesis_finds_no_server_error_and_no_schema_violation"
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "timeout=0",
        "tests/test_fuzz.py", schemathesis,
    ]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
