"""Byzantine-robust semantic consensus: many nodes' submissions -> one global library, the same on every node."""

from dso.consensus.aggregate import (
    Decision,
    Reputation,
    Result,
    Submission,
    Validation,
    aggregate,
    unique_texts,
)
from dso.consensus.guards import RULE_NAMES, RULES, check_text

__all__ = [
    "RULES",
    "RULE_NAMES",
    "Decision",
    "Reputation",
    "Result",
    "Submission",
    "Validation",
    "aggregate",
    "check_text",
    "unique_texts",
]
