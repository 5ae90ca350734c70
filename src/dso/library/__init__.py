"""The persistent experience library (SQLite, WAL) and what goes in and out of it."""

from dso.library._exchange import NewExperience, grpo_mapping, render_for_prompt
from dso.library._storage import HistoryEntry, Provenance
from dso.library._writes import Operation, OperationKind, RemoteExperience, WriteKind, WriteResult
from dso.library.library import ExperienceLibrary, SearchHit

__all__ = [
    "ExperienceLibrary",
    "HistoryEntry",
    "NewExperience",
    "Operation",
    "OperationKind",
    "Provenance",
    "RemoteExperience",
    "SearchHit",
    "WriteKind",
    "WriteResult",
    "grpo_mapping",
    "render_for_prompt",
]
