"""Reading submissions and validations from JSON lines (`dso aggregate --input FILE`), strictly.

One object per line. A submission: ``node``, ``text``, ``confidence`` and optionally ``domain``,
``round``, ``votes`` (``{"up", "down", "eligible"}`` of the batch that carried it) and ``embedding``
(accepted and ignored: every vector is recomputed from the text by the reading node). A validation:
``{"kind": "validation", "validator", "text", "helped", "hurt"}``. A bad line stops the whole read with an
error naming the line, so nothing partial is ever aggregated as if complete.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dso.consensus.aggregate import BatchState, Submission, Validation
from dso.core.experience import MAX_TEXT_BYTES, check_label
from dso.core.untrusted import is_int, is_number, load_json
from dso.errors import DataError

MAX_LINE_BYTES = 4 * MAX_TEXT_BYTES


class SubmissionError(DataError):
    """A submissions file has a line that is not a valid submission or validation."""


def _label(row: dict[str, Any], key: str, where: str, limit: int = 128, default: str | None = None) -> str:
    value = row.get(key, default)
    check_label(value, f"{where}: {key!r}", limit, SubmissionError)
    return str(value)


def _count(row: dict[str, Any], key: str, where: str) -> int:
    value: Any = row.get(key)
    if not is_int(value) or not 0 <= value < 2**32:
        raise SubmissionError(f"{where}: {key!r} must be a non-negative integer")
    return int(value)


def batch_state(votes: dict[str, Any], where: str) -> BatchState:
    """The registry's rule: accepted at up x 3 >= eligible x 2, rejected at down x 3 > eligible."""
    up, down, eligible = (_count(votes, key, where) for key in ("up", "down", "eligible"))
    if eligible == 0:
        return "unknown"
    if up * 3 >= eligible * 2:
        return "accepted"
    if down * 3 > eligible:
        return "rejected"
    return "pending"


def parse_lines(lines: Iterable[bytes]) -> tuple[list[Submission], list[Validation]]:
    submissions: list[Submission] = []
    validations: list[Validation] = []
    for number, raw in enumerate(lines, 1):
        where = f"line {number}"
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            raise SubmissionError(f"{where}: longer than {MAX_LINE_BYTES} bytes")
        row = load_json(raw, SubmissionError, where)
        if not isinstance(row, dict):
            raise SubmissionError(f"{where}: expected a JSON object")
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise SubmissionError(f"{where}: 'text' must be a non-empty string")
        if row.get("kind", "submission") == "validation":
            validations.append(
                Validation(
                    _label(row, "validator", where), text, _count(row, "helped", where), _count(row, "hurt", where)
                )
            )
            continue
        if row.get("kind", "submission") != "submission":
            raise SubmissionError(f"{where}: 'kind' must be 'submission' or 'validation'")
        confidence: Any = row.get("confidence")
        if not is_number(confidence) or not 0.0 <= float(confidence) <= 1.0:
            raise SubmissionError(f"{where}: 'confidence' must be a number in [0, 1]")
        round_: Any = row.get("round", 0)
        if not is_int(round_) or not 0 <= round_ < 2**64:
            raise SubmissionError(f"{where}: 'round' must be a non-negative integer")
        votes = row.get("votes")
        if votes is not None and not isinstance(votes, dict):
            raise SubmissionError(f"{where}: 'votes' must be an object with up, down and eligible")
        submissions.append(
            Submission(
                _label(row, "node", where),
                text,
                float(confidence),
                _label(row, "domain", where, 64, "general"),
                int(round_),
                batch_state(votes, where) if votes is not None else "unknown",
            )
        )
    return submissions, validations
