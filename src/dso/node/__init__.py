"""The DSO node: learn locally, publish signed batches, vote, pull and merge what the network accepted."""

from dso.node.node import Node
from dso.node.reports import MergeReport, NodeStatus, PullReport, SyncReport, Traffic, VoteCast
from dso.node.share import GlobalExperience, SharedRecord, global_library
from dso.node.state import NodeState
from dso.node.trainer import DSOTrainer
from dso.node.trial import GateTrial, LessonTrial, TrialReport, TrialVerdict, gate_trial

__all__ = [
    "DSOTrainer",
    "GateTrial",
    "GlobalExperience",
    "LessonTrial",
    "MergeReport",
    "Node",
    "NodeState",
    "NodeStatus",
    "PullReport",
    "SharedRecord",
    "SyncReport",
    "Traffic",
    "TrialReport",
    "TrialVerdict",
    "VoteCast",
    "gate_trial",
    "global_library",
]
