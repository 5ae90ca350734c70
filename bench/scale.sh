#!/usr/bin/env bash
# Rounds that scale, reports into bench/results (each with its date, machine and settings inside): light nodes
# (the nodes outside the 9-member committee read its certificate instead of every batch) and a relay (one
# submitBatches transaction per hundred batches), 30% Byzantine nodes sending coordinated wrong advice, 2 rounds:
#   10, 100 and 1,000 nodes on the embedded chain and block store;
#   1,000 nodes on anvil and a js-ipfs daemon started here on loopback (needs `make services`);
# then the scale table and plot against federated learning, beside the runs where every node pulls every batch
# (bench/simulate.sh, bench/flower.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/services.sh
dso=.venv/bin/dso
flags=(--byzantine 0.3 --attack wrong --rounds 2 --light --relay --force)
audit() {  # a light node's chance to audit a certificate: about ten audits a round from 1,000 nodes up
  if [ "$1" -ge 1000 ]; then echo 0.01; else echo 0.05; fi
}
for nodes in ${SIZES:-10 100 1000}; do
  $dso simulate --nodes "$nodes" "${flags[@]}" --audit-rate "$(audit "$nodes")" \
       --output "bench/results/simulate-light-$nodes-embedded.json" > /dev/null
done
if [ -z "${SKIP_ANVIL:-}" ]; then
  services 8551 5007
  $dso simulate --nodes 1000 "${flags[@]}" --audit-rate "$(audit 1000)" --chain http://127.0.0.1:8551 --store http://127.0.0.1:5007 \
       --output bench/results/simulate-light-1000-anvil-ipfs.json > /dev/null
fi
full=(bench/results/simulate-anvil-10.json bench/results/simulate-anvil-100.json bench/results/simulate-1000-embedded.json)
light=(bench/results/simulate-light-*.json)
$dso bench communication "${full[@]/#/--simulation=}" "${light[@]/#/--simulation=}" \
     --output bench/results/communication.json --plot docs/figures/communication-nodes.png
