"""`python -m streamer` is the `streamer` command."""

import sys

from .cli import main

sys.exit(main())
