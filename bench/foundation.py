"""Foundation benchmark -> bench/results/foundation.json (same as `dso bench foundation`)."""

import sys

from dso.cli.main import main

models = sys.argv[1:] or ["smollm2-135m", "qwen2.5-0.5b", "qwen2.5-1.5b"]
sys.argv = ["dso", "bench", "foundation", "--output", "bench/results/foundation.json"]
sys.argv += [arg for name in models for arg in ("--model", name)]
main()
