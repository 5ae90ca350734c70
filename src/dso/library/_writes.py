"""Writing experiences: the operation and result types, and the de-duplicating insert.

A new text whose cosine to a stored experience is at least the library's threshold is a paraphrase: it
is merged into that experience (the id stays; the more confident wording wins) instead of being added.
Every function here runs inside the caller's write transaction.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np

from dso.core.experience import Experience, top_k
from dso.embed.base import Embedder, Vectors
from dso.library._exchange import NewExperience
from dso.library._storage import Storage
from dso.library._vectors import VectorCache

OperationKind = Literal["ADD", "UPDATE", "DELETE"]
WriteKind = Literal["ADD", "MERGE", "UPDATE"]
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class Operation:
    """One change to the library, as the learning loop proposes it."""

    op: OperationKind
    text: str | None = None  # for ADD and UPDATE
    target: str | None = None  # experience id, for UPDATE and DELETE
    confidence: float = 0.5
    domain: str = "general"
    epoch: int = 0
    origin_node: str = "local"
    reason: str = ""  # why, kept in the history (e.g. a deletion by an evidence rule)


@dataclasses.dataclass(frozen=True)
class RemoteExperience:
    """An experience another node shared, with where it came from."""

    text: str
    confidence: float
    domain: str
    epoch: int
    node: str  # the origin node's address
    record_cid: str
    batch_id: str | None = None
    round: int | None = None


@dataclasses.dataclass(frozen=True)
class WriteResult:
    op: WriteKind  # "MERGE": the text was a paraphrase of `experience`, which absorbed it
    experience: Experience
    similarity: float | None = None


def new_experience_id() -> str:
    return "e" + secrets.token_hex(6)


def insert_deduplicated(
    storage: Storage,
    cache: VectorCache,
    embedder: Embedder,
    threshold: float,
    items: Sequence[NewExperience],
    texts: list[str],
    vectors: Vectors,
) -> list[WriteResult]:
    """Add each item, or merge it into a stored paraphrase (cosine >= `threshold`); the caller holds the
    transaction."""
    known_ids, known = cache.load(embedder.identity, embedder.dim)
    ids = list(known_ids)
    # One buffer for old and new rows: each item is checked against everything before it.
    matrix = np.empty((len(ids) + len(items), embedder.dim), dtype=np.float32)
    matrix[: len(ids)] = known
    changed_rows: list[int] = []
    results: list[WriteResult] = []
    for item, text, vector in zip(items, texts, vectors, strict=True):
        nearest = top_k(matrix[: len(ids)], vector, 1)
        if nearest and nearest[0][1] >= threshold:
            row, similarity = nearest[0]
            existing = storage.find(ids[row])
            assert existing is not None  # the row was read under the same write lock
            result = merge_paraphrase(storage, existing, item, text, vector, similarity)
            if result.experience.text == text:
                matrix[row] = vector  # the incoming wording was adopted
                changed_rows.append(row)
            results.append(result)
            continue
        now = time.time()
        experience = Experience(
            id=item.id if item.id and _id_free(storage, item.id) else new_experience_id(),
            text=text,
            confidence=float(item.confidence),
            domain=item.domain,
            epoch=item.epoch,
            created_at=now,
            updated_at=now,
            origin_node=item.origin_node,
            content_id=item.content_id,
            embedder_id=embedder.identity,
            helped=item.helped,
            hurt=item.hurt,
        )
        storage.put(experience, vector)
        storage.record(experience.id, "ADD", None, text, origin_node=item.origin_node)
        matrix[len(ids)] = vector
        changed_rows.append(len(ids))
        ids.append(experience.id)
        results.append(WriteResult("ADD", experience))
    cache.replace(ids, matrix[: len(ids)].copy(), changed_rows)
    return results


def _id_free(storage: Storage, experience_id: str) -> bool:
    return bool(_ID_PATTERN.match(experience_id)) and storage.find(experience_id) is None


def merge_paraphrase(
    storage: Storage, existing: Experience, item: NewExperience, text: str, vector: Vectors, similarity: float
) -> WriteResult:
    """A paraphrase keeps the existing id; the more confident wording wins."""
    adopt = text != existing.text and item.confidence > existing.confidence
    merged = dataclasses.replace(
        existing,
        text=text if adopt else existing.text,
        confidence=max(existing.confidence, float(item.confidence)),
        epoch=max(existing.epoch, item.epoch),
        updated_at=time.time(),
    )
    storage.put(merged, vector if adopt else storage.embedding(existing.id))
    storage.record(
        existing.id,
        "MERGE",
        existing.text,
        merged.text,
        incoming=text,
        similarity=round(similarity, 4),
        origin_node=item.origin_node,
    )
    return WriteResult("MERGE", merged, similarity)
