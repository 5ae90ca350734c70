# Sourced by the bench scripts: `services CHAIN_PORT [IPFS_PORT]` starts anvil (and a js-ipfs daemon) on loopback
# through dso, waits until they answer, and stops them and removes their folders when the script exits.
services() {
  local chain_port=$1 ipfs_port=${2:-}
  work=$(mktemp -d)
  .venv/bin/dso chain up --port "$chain_port" --workdir "$work/chain" > /dev/null & local chain=$!
  local pids="$chain"
  if [ -n "$ipfs_port" ]; then
    .venv/bin/dso ipfs up --port "$ipfs_port" --workdir "$work/ipfs" > /dev/null & pids="$pids $!"
  fi
  # shellcheck disable=SC2064  # the pids and folder are fixed now
  trap "kill $pids 2>/dev/null; rm -rf '$work'" EXIT
  if [ -n "$ipfs_port" ]; then
    until curl -sf -X POST "http://127.0.0.1:$ipfs_port/api/v0/id" > /dev/null; do sleep 1; done
  fi
  until curl -sf -H 'content-type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}' \
        "http://127.0.0.1:$chain_port" > /dev/null; do sleep 1; done
}
