#!/usr/bin/env bash
# The main job as `make demo` runs it (embedded defaults, qwen2.5-1.5b), its JSON stamped with the machine and
# this command into bench/results/demo.json: docs/results.md's main-job table and the README quote it.
set -euo pipefail
cd "$(dirname "$0")/.."
DSO=.venv/bin/dso
$DSO models pull qwen2.5-1.5b > /dev/null
mkdir -p runs
$DSO demo --run-dir runs/demo --json > runs/demo-result.json
.venv/bin/python -m dso.bench.common "bench/demo.sh" < runs/demo-result.json > bench/results/demo.json
