"""The DSO node: learn locally, publish signed batches, vote, pull and merge what the network accepted."""

from dso.node.node import Node
from dso.node.reports import MergeReport, NodeStatus, PullReport, SyncReport, Traffic, VoteCast
from dso.node.share import GlobalExperience, SharedRecord, global_library
from dso.node.state import NodeState
from dso.node.trainer import DSOTrainer

__all__ = [
    "DSOTrainer",
    "GlobalExperience",
    "MergeReport",
    "Node",
    "NodeState",
    "NodeStatus",
    "PullReport",
    "SharedRecord",
    "SyncReport",
    "Traffic",
    "VoteCast",
    "global_library",
]
