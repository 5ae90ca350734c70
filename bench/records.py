"""Records benchmark -> bench/results/records.json (same as `dso bench records`)."""

import sys

from dso.cli.main import main

sys.argv = ["dso", "bench", "records", "--output", "bench/results/records.json"]
main()
