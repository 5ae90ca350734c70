"""Building networks of DSO nodes: one node from its configuration, or many in one process."""

from dso.network.builder import (
    Deployment,
    Network,
    NetworkSpec,
    SharedReads,
    build_network,
    close_epoch,
    deploy_network,
    make_store,
    network_node,
    node_account,
    node_paths,
    open_node,
)

__all__ = [
    "Deployment",
    "Network",
    "NetworkSpec",
    "SharedReads",
    "build_network",
    "close_epoch",
    "deploy_network",
    "make_store",
    "network_node",
    "node_account",
    "node_paths",
    "open_node",
]
