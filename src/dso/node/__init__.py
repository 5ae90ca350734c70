"""The DSO node: learn locally, publish signed batches, vote, pull and merge what the network accepted."""

from dso.node.node import Node, node_paths, open_node
from dso.node.share import GlobalExperience, SharedRecord, global_library
from dso.node.state import NodeState
from dso.node.trainer import DSOTrainer

__all__ = [
    "DSOTrainer",
    "GlobalExperience",
    "Node",
    "NodeState",
    "SharedRecord",
    "global_library",
    "node_paths",
    "open_node",
]
