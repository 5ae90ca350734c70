"""The relay: many nodes' signed batches in one registry transaction, and a node's way out when it censors."""

from __future__ import annotations

from pathlib import Path

from dso.config import DSOConfig
from dso.embed import Embedder
from dso.network import NetworkSpec, build_network
from dso.node.relay import RELAY_TRIES, Relay

LESSON = "When two units differ, convert both to the smaller unit before comparing."


def test_a_relay_registers_the_nodes_batches_and_a_node_the_relay_drops_submits_itself(
    tmp_path: Path, embedder: Embedder
) -> None:
    spec = NetworkSpec(nodes=4, members=(0, 1, 2), chain="memory")
    network = build_network(DSOConfig(), tmp_path, spec, embedder=embedder)
    relay = Relay(network.registry)
    for node in network.nodes:
        node.ctx.relay = relay
        node.library.add(LESSON, domain="units")
    network.sync(range(4))
    assert network.registry.batch_count() == 0  # handed over, not yet sent
    relay_before = network.registry.sent.transactions
    assert relay.flush() == 4 and network.registry.sent.transactions == relay_before + 1
    assert network.registry.batch_count() == 4
    assert all(n.ctx.state.unfinished_outbox() for n in network.nodes)  # not done until the registry has it
    network.sync(range(4))
    for node in network.nodes:  # the next sync sees its batch registered: the round is done
        assert node.ctx.state.unfinished_outbox() == []

    # a relay that never flushes: after RELAY_TRIES syncs the node submits its batch itself
    censoring = Relay(network.registry)
    node = network.nodes[3]
    node.ctx.relay = censoring
    node.library.add("When a length is given in inches, convert it to centimetres first.", domain="units")
    for _ in range(RELAY_TRIES):
        node.sync()
        assert network.registry.batch_count() == 4 and node.ctx.state.unfinished_outbox()
    node.sync()
    assert network.registry.batch_count() == 5 and node.ctx.state.unfinished_outbox() == []
    network.close()
