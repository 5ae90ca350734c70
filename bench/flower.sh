#!/usr/bin/env bash
# DSO on Flower beside dso simulate: the same network (seed, committee, Byzantine nodes, lessons) on one anvil
# chain started here, by each engine; reports (with date, machine and settings) into bench/results.
#   NODES=10 (default) and NODES=100: bench/results/flower-NODES.json and simulate-anvil-NODES.json.
# Needs `make services` (anvil) and `make flower` (.venv-flower).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/services.sh
nodes=${NODES:-10}
committee=$(( nodes < 9 ? nodes : 9 ))
settings=(--nodes "$nodes" --committee "$committee" --byzantine 0.3 --attack wrong --rounds 2 --seed 3)
services 8549
.venv/bin/dso simulate "${settings[@]}" --chain http://127.0.0.1:8549 --force \
     --output "bench/results/simulate-anvil-$nodes.json" > /dev/null
rm -f "bench/results/flower-$nodes.json"
.venv-flower/bin/dso flower simulate "${settings[@]}" --rpc http://127.0.0.1:8549 --run-dir "$work/flower" \
     --output "bench/results/flower-$nodes.json" > /dev/null
.venv/bin/python - "$nodes" <<'PY'
import json, sys
n = sys.argv[1]
alone = json.load(open(f"bench/results/simulate-anvil-{n}.json"))
flower = json.load(open(f"bench/results/flower-{n}.json"))
same = [a["global_digest"] == f["global_digest"] for a, f in zip(alone["rounds"], flower["rounds"], strict=True)]
print(f"{n} nodes: dso simulate {alone['seconds']} s, on Flower {flower['seconds']} s; same global library each round: {same}")
PY
