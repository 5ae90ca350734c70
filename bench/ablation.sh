#!/usr/bin/env bash
# Consensus ablations on the attack bench (dso bench byzantine: the consensus alone, 50 nodes, 3 rounds, seed 0),
# 30% Byzantine nodes; results in bench/results/ablation-*.json, each with its machine and settings inside:
#   acceptance threshold 0.15-0.55 under wrong advice, paraphrased wrong advice and confidence inflation:
#   poisoned lessons accepted against honest recall;
#   confidence rule median / trimmed mean / mean under confidence inflation: the accepted lessons' confidence.
set -euo pipefail
cd "$(dirname "$0")/.."
dso=.venv/bin/dso
for threshold in 0.15 0.25 0.35 0.45 0.55; do
  DSO_CONSENSUS_ACCEPTANCE_THRESHOLD=$threshold $dso bench byzantine --attack wrong --attack paraphrase \
    --attack inflation --fraction 0.3 --json > "bench/results/ablation-threshold-$threshold.json"
done
for rule in median trimmed_mean mean; do
  DSO_CONSENSUS_CONFIDENCE_RULE=$rule $dso bench byzantine --attack inflation --fraction 0 --fraction 0.3 --json \
    > "bench/results/ablation-confidence-$rule.json"
done
