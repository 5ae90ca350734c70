"""Building networks of DSO nodes: one node from its configuration, or many in one process."""

from dso.network.builder import (
    Network,
    NetworkSpec,
    SharedReads,
    build_network,
    make_store,
    node_account,
    node_paths,
    open_node,
)

__all__ = [
    "Network",
    "NetworkSpec",
    "SharedReads",
    "build_network",
    "make_store",
    "node_account",
    "node_paths",
    "open_node",
]
