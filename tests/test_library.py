"""The experience library against the real embedder."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dso.embed import Embedder
from dso.errors import LibraryError
from dso.library import ExperienceLibrary, Operation

FRACTIONS = "When adding fractions, find a common denominator first."
FRACTIONS_PARAPHRASE = "When adding fractions, first find a common denominator."
UNITS = "When units differ, convert everything to one unit before computing."
PERCENT = "When a quantity is a percentage, turn it into a fraction of the base."


@pytest.fixture()
def lib(tmp_path: Path, embedder: Embedder) -> ExperienceLibrary:
    return ExperienceLibrary(tmp_path / "lib.db", embedder)


def test_add_then_get_keeps_every_field(lib: ExperienceLibrary) -> None:
    result = lib.add(FRACTIONS, confidence=0.8, domain="math", epoch=2, origin_node="0xabc")
    assert result.op == "ADD"
    exp = lib.get(result.experience.id)
    assert (exp.text, exp.confidence, exp.domain, exp.epoch, exp.origin_node) == (FRACTIONS, 0.8, "math", 2, "0xabc")
    assert exp.usage_count == 0 and exp.created_at > 0 and exp.embedder_id == lib.embedder_id


def test_paraphrase_merges_instead_of_adding(lib: ExperienceLibrary) -> None:
    first = lib.add(FRACTIONS, confidence=0.5).experience
    lib.add(UNITS)
    merged = lib.add(FRACTIONS_PARAPHRASE, confidence=0.9)
    assert merged.op == "MERGE"
    assert merged.similarity is not None and merged.similarity >= 0.9
    assert merged.experience.id == first.id  # stable id
    assert merged.experience.text == FRACTIONS_PARAPHRASE  # the more confident wording wins
    assert merged.experience.confidence == 0.9
    assert len(lib) == 2
    ops = [h.op for h in lib.history(first.id)]
    assert ops == ["ADD", "MERGE"]
    # a less confident paraphrase keeps the current wording
    again = lib.add(FRACTIONS, confidence=0.1)
    assert again.op == "MERGE" and again.experience.text == FRACTIONS_PARAPHRASE


def test_threshold_is_configurable(tmp_path: Path, embedder: Embedder) -> None:
    strict = ExperienceLibrary(tmp_path / "strict.db", embedder, dedup_threshold=0.999)
    strict.add(FRACTIONS)
    assert strict.add(FRACTIONS_PARAPHRASE).op == "ADD"
    assert len(strict) == 2


def test_search_orders_by_meaning(lib: ExperienceLibrary) -> None:
    for text in (UNITS, PERCENT, FRACTIONS):
        lib.add(text)
    hits = lib.search("How do I add 1/3 and 1/4?", k=3)
    assert hits[0].experience.text == FRACTIONS
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert lib.search("convert meters and centimeters", k=1)[0].experience.text == UNITS
    assert len(lib.search("anything", k=10)) == 3


def test_format_for_prompt_and_usage(lib: ExperienceLibrary) -> None:
    for text in (UNITS, PERCENT, FRACTIONS):
        lib.add(text)
    prompt = lib.format_for_prompt("add 1/3 and 1/4", k=2, count_usage=True)
    lines = prompt.splitlines()
    assert lines[0] == f"[G0]. {FRACTIONS}" and lines[1].startswith("[G1]. ")
    used = {e.text: e.usage_count for e in lib.all()}
    assert used[FRACTIONS] == 1 and sum(used.values()) == 2
    assert ExperienceLibrary(lib.path.parent / "empty.db", lib._embedder).format_for_prompt("x") == ""


def test_word_cap_rejects_and_changes_nothing(tmp_path: Path, embedder: Embedder) -> None:
    lib = ExperienceLibrary(tmp_path / "cap.db", embedder, word_cap=8)
    lib.add("When stuck, re-read the question.")
    with pytest.raises(LibraryError, match="9 words; the cap is 8"):
        lib.add("When stuck, re-read the question slowly and very carefully.")
    with pytest.raises(LibraryError, match="empty"):
        lib.add("   ")
    with pytest.raises(LibraryError, match=r"confidence must lie in \[0, 1\]"):
        lib.add("When X, do Y.", confidence=1.5)
    assert len(lib) == 1


def test_update_reembeds_delete_and_merge(lib: ExperienceLibrary) -> None:
    a = lib.add(FRACTIONS).experience
    b = lib.add(UNITS, confidence=0.7).experience
    c = lib.add(PERCENT).experience
    updated = lib.update(a.id, text="When a question mentions speed, divide distance by time.", confidence=0.6)
    assert updated.id == a.id and updated.confidence == 0.6
    assert lib.search("how fast was the car going", k=1)[0].experience.id == a.id
    lib.retrieve("convert units", k=1, count_usage=True)
    merged = lib.merge([b.id, c.id])
    assert merged.id == b.id and merged.confidence == 0.7 and merged.usage_count == 1
    with pytest.raises(LibraryError, match="no experience"):
        lib.get(c.id)
    removed = lib.delete(a.id)
    assert removed.id == a.id and len(lib) == 1
    assert [h.op for h in lib.history(c.id)] == ["ADD", "DELETE"]
    assert lib.history(c.id)[-1].detail == {"merged_into": b.id}
    with pytest.raises(LibraryError, match="no experience"):
        lib.delete("missing")
    with pytest.raises(LibraryError, match="at least two"):
        lib.merge([b.id, b.id])


def test_persists_across_processes(tmp_path: Path, embedder: Embedder) -> None:
    path = tmp_path / "shared.db"
    with ExperienceLibrary(path, embedder) as lib:
        lib.add(FRACTIONS)
    script = textwrap.dedent(
        f"""
        from dso.embed import make_embedder
        from dso.library import ExperienceLibrary
        lib = ExperienceLibrary({str(path)!r}, make_embedder())
        assert [e.text for e in lib.all()] == [{FRACTIONS!r}]
        lib.add({UNITS!r})
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    with ExperienceLibrary(path, embedder) as lib:
        assert sorted(e.text for e in lib.all()) == sorted([FRACTIONS, UNITS])
        # the other process's vector is searchable here too
        assert lib.search("convert meters to feet", k=1)[0].experience.text == UNITS


WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "ladder",
    "violin",
    "copper",
    "garden",
    "mirror",
    "candle",
    "harbor",
    "pencil",
    "tiger",
    "forest",
    "rocket",
    "basket",
    "silver",
    "meadow",
    "castle",
    "thunder",
    "lemon",
    "ocean",
    "pillow",
    "window",
    "saddle",
]

WRITER = """
import random, sys
from dso.embed import make_embedder
from dso.library import ExperienceLibrary, Operation
path, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
words = sys.argv[4].split(",")
rng = random.Random(worker)
lib = ExperienceLibrary(path, make_embedder(), dedup_threshold=0.995)
for shared in ("When in doubt, check the units.", "When a total is asked, add all parts."):
    lib.add(shared)
for i in range(count):
    lib.add(f"Worker {worker} note {i}: " + " ".join(rng.sample(words, 6)) + ".")
"""


def test_concurrent_writers_lose_nothing_and_never_duplicate(tmp_path: Path, embedder: Embedder) -> None:
    path = tmp_path / "busy.db"
    ExperienceLibrary(path, embedder).close()
    workers, count = 3, 12
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), str(count), ",".join(WORDS)])
        for w in range(workers)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * workers
    with ExperienceLibrary(path, embedder) as lib:
        texts = [e.text for e in lib.all()]
        assert len(texts) == workers * count + 2  # both shared texts exactly once
        assert texts.count("When in doubt, check the units.") == 1
        assert sum(h.op == "ADD" for h in lib.history()) == len(texts)
        assert sum(h.op == "MERGE" for h in lib.history()) == 2 * (workers - 1)


def test_export_import_round_trip_keeps_ids_and_vectors(tmp_path: Path, lib: ExperienceLibrary) -> None:
    lib.add(FRACTIONS, confidence=0.8, domain="math", epoch=3)
    lib.add(UNITS)
    export = tmp_path / "export.json"
    assert lib.export_json(export) == 2
    fresh = ExperienceLibrary(tmp_path / "fresh.db", lib._embedder)
    results = fresh.import_json(export)
    assert [r.op for r in results] == ["ADD", "ADD"]
    assert {(e.id, e.text, e.confidence, e.domain, e.epoch) for e in fresh.all()} == {
        (e.id, e.text, e.confidence, e.domain, e.epoch) for e in lib.all()
    }
    # importing the same file again merges everything, adds nothing
    assert {r.op for r in fresh.import_json(export)} == {"MERGE"}
    assert len(fresh) == 2


def test_import_plain_strings_and_mapping(tmp_path: Path, lib: ExperienceLibrary) -> None:
    strings = tmp_path / "list.json"
    strings.write_text(json.dumps([FRACTIONS, UNITS]))
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"G0": PERCENT, "G1": FRACTIONS_PARAPHRASE}))
    assert [r.op for r in lib.import_json(strings)] == ["ADD", "ADD"]
    assert [r.op for r in lib.import_json(mapping)] == ["ADD", "MERGE"]
    assert len(lib) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"text": "When X, do Y."}, ', "not valid JSON"),
        ('{"a": 1}', "expected a dso-library export"),
        ("[]", "holds no experiences"),
        ('["When X, do Y.", {"text": "When A, do B.", "confidence": 2}]', "confidence must lie"),
        ('["When X, do Y.", 42]', "experience 1: expected a string"),
        ('["When X, do Y.", "' + "word " * 70 + '"]', "the cap is 64"),  # imports: the record format's cap
    ],
)
def test_corrupt_import_changes_nothing(tmp_path: Path, lib: ExperienceLibrary, content: str, message: str) -> None:
    lib.add(FRACTIONS)
    before = (lib.all(), lib.history())
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(LibraryError, match=message):
        lib.import_json(bad)
    assert (lib.all(), lib.history()) == before


def test_wrong_embedding_dimension_is_rejected(tmp_path: Path, lib: ExperienceLibrary) -> None:
    lib.add(FRACTIONS)
    export = tmp_path / "export.json"
    lib.export_json(export)
    document = json.loads(export.read_text())
    document["experiences"][0]["embedding"] = base64.b64encode(np.ones(100, dtype="<f4").tobytes()).decode()
    export.write_text(json.dumps(document))
    fresh = ExperienceLibrary(tmp_path / "fresh.db", lib._embedder)
    with pytest.raises(LibraryError, match="100 dimensions, expected 384"):
        fresh.import_json(export)
    assert len(fresh) == 0
    with pytest.raises(LibraryError, match="file not found"):
        fresh.import_json(tmp_path / "absent.json")


class OtherEmbedder:
    """A stand-in with another identity: only the identity check is under test."""

    identity = "some-other-model@000000000000"
    dim = 384

    def embed(self, texts: list[str]) -> np.ndarray:
        raise AssertionError("must not be called")


def test_vectors_of_another_embedder_are_refused(tmp_path: Path, embedder: Embedder) -> None:
    path = tmp_path / "lib.db"
    ExperienceLibrary(path, embedder).add(FRACTIONS)
    with pytest.raises(LibraryError, match="refusing to mix"):
        ExperienceLibrary(path, OtherEmbedder())  # type: ignore[arg-type]
    assert len(ExperienceLibrary(path, None)) == 1  # read-only use needs no embedder


def test_corrupt_database_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LibraryError, match="not a usable experience library"):
        ExperienceLibrary(path)


def test_apply_is_all_or_nothing_with_its_meta(lib: ExperienceLibrary) -> None:
    keep = lib.add(UNITS).experience
    gone = lib.add(PERCENT).experience
    results = lib.apply(
        [
            Operation("ADD", FRACTIONS, confidence=0.7, epoch=2),
            Operation("UPDATE", "When units differ, convert all of them to the smallest unit first.", keep.id),
            Operation("DELETE", None, gone.id),
            Operation("UPDATE", "When something, do that.", "missing-id"),  # skipped: nothing to update
        ],
        meta={"train_cursor": "0:1"},
    )
    assert [r.op for r in results] == ["UPDATE", "ADD"]
    assert lib.get(keep.id).text.startswith("When units differ, convert all") and lib.get_meta("train_cursor") == "0:1"
    assert {e.id for e in lib.all()} == {keep.id, results[1].experience.id}
    before = (lib.all(), lib.history())
    with pytest.raises(LibraryError, match="the cap is 32"):
        lib.apply(
            [Operation("DELETE", None, keep.id), Operation("ADD", " ".join(["word"] * 40))],
            meta={"train_cursor": "0:2"},
        )
    assert (lib.all(), lib.history()) == before and lib.get_meta("train_cursor") == "0:1"


def test_copy_is_independent_of_its_source(lib: ExperienceLibrary, tmp_path: Path) -> None:
    kept = lib.add("When a brother is asked about, count his sisters and the woman herself.").experience
    copy = lib.copy_to(tmp_path / "copy.db")
    try:
        assert [(e.id, e.text) for e in copy.all()] == [(e.id, e.text) for e in lib.all()]
        copy.apply([Operation("ADD", FRACTIONS), Operation("DELETE", target=kept.id)])
        assert len(copy) == 1 and copy.search("fractions", 1)[0].experience.text.startswith("When adding fractions")
    finally:
        copy.close()
    assert [e.id for e in lib.all()] == [kept.id]  # the source saw none of it


def test_training_free_grpo_lists_round_trip(tmp_path: Path, lib: ExperienceLibrary) -> None:
    for text in (FRACTIONS, UNITS):
        lib.add(text)
    lib.export_json(tmp_path / "grpo.json", grpo=True)
    assert json.loads((tmp_path / "grpo.json").read_text()) == {"G0": FRACTIONS, "G1": UNITS}
    fresh = ExperienceLibrary(tmp_path / "fresh.db", lib._embedder)
    assert [r.op for r in fresh.import_json(tmp_path / "grpo.json")] == ["ADD", "ADD"]
    (tmp_path / "prompt.txt").write_text(f"[G0]. {PERCENT}\n\n[G1]. {UNITS}\n")  # as injected into a prompt
    assert [r.op for r in fresh.import_json(tmp_path / "prompt.txt")] == ["ADD", "MERGE"]
    assert sorted(e.text for e in fresh.all()) == sorted([FRACTIONS, UNITS, PERCENT])
