#!/usr/bin/env bash
# A network of three nodes on this machine: anvil and an IPFS daemon on loopback, three keys, one registry
# with the three as members, one lesson per node, then rounds of syncs until every node holds all of them.
# Needs `make services` (anvil, js-ipfs). Nodes here skip learning (--no-learn) so that no model loads;
# drop it, and give each node a dataset, to have them learn with the embedded model.
set -euo pipefail
dir=${1:-runs/small-network}
export DSO_KEY_PASSWORD=${DSO_KEY_PASSWORD:-change-me}
export DSO_CONSENSUS_ACCEPTANCE_THRESHOLD=0.3   # three nodes, one lesson each: one supporter in three is enough
rm -rf "$dir" && mkdir -p "$dir"
dso chain up --port 8545 --workdir "$dir/chain" & chain=$!
dso ipfs up --port 5001 --workdir "$dir/ipfs" & ipfs=$!
trap 'kill $chain $ipfs 2>/dev/null' EXIT
until curl -sf -X POST http://127.0.0.1:5001/api/v0/id >/dev/null; do sleep 1; done
until curl -sf -H 'content-type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}' \
      http://127.0.0.1:8545 >/dev/null; do sleep 1; done

lessons=("When a question counts legs, multiply each animal's count by its number of legs before adding."
         "When two quantities use different units, convert both to one unit before comparing them."
         "When a word problem gives a rate and a time, multiply them to get the total.")
members=()
for n in 0 1 2; do
  dso node init --dir "$dir/node$n" --rpc http://127.0.0.1:8545 --ipfs http://127.0.0.1:5001 >/dev/null
  dso --config "$dir/node$n/dso.toml" library add "${lessons[$n]}" --domain math >/dev/null
  members+=(--member "$(python -c "import json,sys; print('0x' + json.load(open(sys.argv[1]))['address'])" \
                        "$dir/node$n/node-key.json")")
done
dso --config "$dir/node0/dso.toml" chain deploy "${members[@]}"
export DSO_CHAIN_REGISTRY=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['31337']['ExperienceRegistry'])" \
                            "$dir/node0/addresses.json")
for round in 1 2 3; do            # publish; vote on each other's batches; pull and merge what was accepted
  for n in 0 1 2; do dso node run --config "$dir/node$n/dso.toml" --no-learn --syncs 1; done
done
dso node global --config "$dir/node2/dso.toml"
