"""Experiences from other nodes: provenance of their own, merged without rewriting or inflating local ones."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dso.embed import Embedder
from dso.errors import LibraryError
from dso.library import ExperienceLibrary, RemoteExperience

FRACTIONS = "When adding fractions, find a common denominator first."
FRACTIONS_2 = "When adding fractions, first find a common denominator."
UNITS = "When units differ, convert everything to one unit first."
NODE_A = "0x00000000000000000000000000000000000000aa"


def remote(text: str, cid: str, confidence: float = 0.99, node: str = NODE_A) -> RemoteExperience:
    return RemoteExperience(text, confidence, "math", 7, node, cid, batch_id="0xb1", round=3)


def test_a_remote_paraphrase_only_adds_support(tmp_path: Path, embedder: Embedder) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    local = library.add(FRACTIONS, confidence=0.4, epoch=1).experience
    results, skipped = library.merge_remote([remote(FRACTIONS_2, "bafy-a"), remote(UNITS, "bafy-b")])
    assert [r.op for r in results] == ["MERGE", "ADD"] and skipped == []
    kept = library.get(local.id)
    assert (kept.text, kept.confidence, kept.epoch) == (FRACTIONS, 0.4, 1)  # not rewritten, not inflated
    assert [(p.node, p.record_cid, p.batch_id, p.round) for p in library.provenance(local.id)] == [
        (NODE_A, "bafy-a", "0xb1", 3)
    ]
    added = results[1].experience
    assert (added.origin_node, added.content_id) == (NODE_A, "bafy-b")
    assert [p.record_cid for p in library.provenance(added.id)] == ["bafy-b"]


def test_merging_a_batch_twice_changes_nothing(tmp_path: Path, embedder: Embedder) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    batch = [remote(UNITS, "bafy-b"), remote(FRACTIONS, "bafy-c")]
    library.merge_remote(batch)
    before = [(e.id, e.text, e.confidence) for e in library.all()]
    results, skipped = library.merge_remote(batch)
    assert results == [] and [reason for _, reason in skipped] == ["record already merged"] * 2
    assert [(e.id, e.text, e.confidence) for e in library.all()] == before


def test_a_record_the_library_refuses_is_skipped_not_fatal(tmp_path: Path, embedder: Embedder) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder, word_cap=12)
    long = "When a record is long, " + "it still says something useful " * 8 + "."
    results, skipped = library.merge_remote([remote(long, "bafy-long"), remote(UNITS, "bafy-b")])
    assert [r.op for r in results] == ["ADD"] and skipped[0][0] == "bafy-long" and "cap is 12" in skipped[0][1]


def test_a_version_1_library_is_migrated(tmp_path: Path, embedder: Embedder) -> None:
    path = tmp_path / "old.db"
    library = ExperienceLibrary(path, embedder)
    shared = library.add(UNITS, origin_node=NODE_A, content_id="bafy-old").experience
    library.add(FRACTIONS)
    library.close()
    with sqlite3.connect(path) as db:  # what version 1 left behind: no provenance table
        db.execute("DROP TABLE provenance")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    reopened = ExperienceLibrary(path, embedder)
    assert [(p.node, p.record_cid) for p in reopened.provenance(shared.id)] == [(NODE_A, "bafy-old")]
    assert reopened.merge_remote([remote(UNITS, "bafy-old")])[0] == []  # already known after the migration
    reopened.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 'x9' WHERE key = 'schema_version'")
    with pytest.raises(LibraryError, match="schema version"):
        ExperienceLibrary(path, embedder)


def test_folding_experiences_keeps_their_supporters(tmp_path: Path, embedder: Embedder) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder, dedup_threshold=0.999)
    first = library.merge_remote([remote(FRACTIONS, "bafy-1")])[0][0].experience
    second = library.merge_remote([remote(FRACTIONS_2, "bafy-2", node="0x" + "bb" * 20)])[0][0].experience
    assert first.id != second.id
    library.merge([first.id, second.id])
    assert sorted(p.record_cid for p in library.provenance(first.id)) == ["bafy-1", "bafy-2"]
