#!/usr/bin/env bash
# The network at scale, reports into bench/results (each with its date, machine and settings inside):
#   1,000 nodes on the embedded chain and block store, 30% Byzantine (coordinated wrong advice);
#   100 nodes on anvil and a js-ipfs daemon started here on loopback (needs `make services`);
#   every attack at 30% Byzantine on 20 nodes with a 7-member committee (forged certificates: with light nodes);
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/services.sh
dso=.venv/bin/dso
for attack in none junk wrong paraphrase inflation injection retrieval-hijack vote-collusion specialist placebo-claim; do
  $dso simulate --nodes 20 --byzantine 0.3 --attack $attack --rounds 2 --committee 7 \
       --force --output bench/results/simulate-attack-$attack.json > /dev/null
done
# a captured committee (5 of its 7 members Byzantine) certifying a poison to light nodes, which audit 1 in 20 syncs
$dso simulate --nodes 20 --byzantine 0.3 --attack forged-certificate --rounds 2 --committee 7 --light --relay \
     --force --output bench/results/simulate-attack-forged-certificate.json > /dev/null
$dso simulate --nodes 1000 --byzantine 0.3 --attack wrong --rounds 3 \
     --force --output bench/results/simulate-1000-embedded.json --plots docs/figures/simulate-1000
services 8547 5003
$dso simulate --nodes 100 --byzantine 0.3 --attack wrong --rounds 3 --chain http://127.0.0.1:8547 \
     --store http://127.0.0.1:5003 --force --output bench/results/simulate-100-anvil-ipfs.json
# the scale table and the comparison with federated learning: bench/scale.sh (it reads these runs too)
