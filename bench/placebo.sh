#!/usr/bin/env bash
# The placebo: which generic instruction the solver's prompt carries, and what learned lessons add beyond it.
#   choose        candidate instructions side by side on 40 questions of each task, seed 5150 (kept for this
#                 choice: no run, gate or evaluation uses it); the winner is solver.v3's instruction
#   content       hand-written content tips (dso bench tips' TIPS) against the placebo on 40 questions of each
#                 candidate task, seed 6160 (kept for choosing tasks: no run, gate or evaluation uses it): where
#                 a tip's content beats the placebo, a learned lesson's can; ONLY=NAME limits it to one task
#   lessons-SEED  each committed learned library's lessons on 100 questions of an unseen seed, three arms:
#                 the bare prompt, the placebo alone, the placebo plus the lessons (dso bench tips --placebo);
#                 ONLY=RUN (e.g. ONLY=chain_sum) limits it to one learned library
# Results land in bench/results/placebo-*.json, stamped with the machine and the command.
set -euo pipefail
cd "$(dirname "$0")/.."
DSO=.venv/bin/dso
$DSO models pull qwen2.5-1.5b > /dev/null
LEGS="leg_counting:min_animals=1,max_animals=2,max_instances=4"
DECIMAL="decimal_chain_sum:min_decimal_places=1,max_decimal_places=1"
CANDIDATES=(
  "Think step by step, and check your work before you give the final answer."
  "Work through it one step at a time, write each intermediate result, then check the result."
  "Do not answer at once: show your working step by step, and double-check every calculation."
)
stamp() {  # stamp NAME: the JSON on stdin, with the machine and this command, into bench/results
  .venv/bin/python -m dso.bench.common "bench/placebo.sh $1" > "bench/results/placebo-$2.json"
}
lessons_file() {  # lessons_file RUN: the texts of a committed learned library, one per line (generated here)
  .venv/bin/python -c "import json,sys; d=json.load(open(sys.argv[1])); print('\n'.join(e['text'] for e in d['experiences']))" \
    "bench/results/learning-$1.library.json" > "bench/lessons/learned-$1.txt"
}
flags=()
for c in "${CANDIDATES[@]}"; do flags+=(--instruction "$c"); done
for case in "$@"; do
  case $case in
    choose)
      for task in chain_sum "$LEGS" "$DECIMAL"; do
        name=$(echo "$task" | cut -d: -f1)
        DSO_TRAIN_SEED=5150 $DSO bench tips "$task" --count 40 --max-tokens 256 "${flags[@]}" --json \
          | stamp choose "choice-$name"
      done ;;
    content)
      for task in "syllogism" "$LEGS" "products:min_digits=2,max_digits=3" "gcd"; do
        name=$(echo "$task" | cut -d: -f1)
        if [ -n "${ONLY:-}" ] && [ "$ONLY" != "$name" ]; then continue; fi
        DSO_TRAIN_SEED=6160 $DSO bench tips "$task" --count 40 --max-tokens 256 --placebo --json \
          | stamp content "content-$name"
      done ;;
    lessons-*)
      seed=${case#lessons-}
      for pair in "chain_sum chain_sum" "legs-solver2 $LEGS" "decimal_chain_sum-1place $DECIMAL"; do
        run=${pair%% *}; task=${pair#* }
        if [ -n "${ONLY:-}" ] && [ "$ONLY" != "$run" ]; then continue; fi
        lessons_file "$run"
        DSO_TRAIN_SEED=$seed $DSO bench tips "$task" --count 100 --max-tokens 256 --placebo \
          --lessons "bench/lessons/learned-$run.txt" --json | stamp "$case" "lessons-$run-seed$seed"
      done ;;
    *) echo "unknown case $case (choose, content, lessons-SEED)" >&2; exit 2 ;;
  esac
done
