"""Run the foundation benchmark and store its figures under bench/results/.

Usage: .venv/bin/python bench/foundation.py [--model NAME ...]
Same as `dso bench foundation --output bench/results/foundation.json`.
"""

import sys

from dso.cli.main import main

sys.argv = [
    "dso",
    "bench",
    "foundation",
    "--output",
    "bench/results/foundation.json",
    *[arg for name in (sys.argv[1:] or ["smollm2-135m", "qwen2.5-0.5b", "qwen2.5-1.5b"]) for arg in ("--model", name)],
]
main()
