"""Codec and retrieval benchmarks -> bench/results/{codec,retrieval}.json."""

import sys

from dso.cli.main import main

for name in ("codec", "retrieval"):
    sys.argv = ["dso", "bench", name, "--output", f"bench/results/{name}.json"]
    try:
        main()
    except SystemExit as exit_:
        if exit_.code:
            raise
