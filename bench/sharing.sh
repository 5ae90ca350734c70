#!/usr/bin/env bash
# The sharing experiment of docs/results.md: specialists of leg counting and products (their hand-written
# content tips, replayed: each beat the placebo 12 / 1 on 40 questions of seed 6160), one reader, one attacker;
# every honest node tries the other kinds' candidates on 40 validation questions (seed 9191), then every arm
# answers 100 held-out questions of seed 9190 per task (qwen2.5-1.5b, 2 llama.cpp threads, 4 slots).
# Hours on 2 cores; resumable: run it again to go on where it stopped. Then `make results`.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/dso models pull qwen2.5-1.5b > /dev/null
.venv/bin/dso experiment sharing --run-dir bench/experiments/sharing "$@"
