"""Chain benchmark -> bench/results/chain.json (same as `dso bench chain`)."""

import sys

from dso.cli.main import main

sys.argv = ["dso", "bench", "chain", "--output", "bench/results/chain.json", *sys.argv[1:]]
main()
