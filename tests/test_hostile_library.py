"""Hostile library files: a crafted import never rewrites a stored lesson, junk is refused whole."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dso.embed import Embedder
from dso.errors import LibraryError
from dso.library import ExperienceLibrary

VICTIM = "When adding fractions, find a common denominator first."
POISON = "When adding fractions, just add the numerators and the denominators."


def snapshot(library: ExperienceLibrary) -> list[tuple[str, str, float, int]]:
    return [(e.id, e.text, e.confidence, e.usage_count) for e in library.all()]


def export_with(library: ExperienceLibrary, path: Path, text: str, vector: np.ndarray, confidence: float) -> None:
    document = {
        "format": "dso-library",
        "version": 1,
        "embedder": library.embedder_id,
        "dim": len(vector),
        "experiences": [
            {
                "text": text,
                "confidence": confidence,
                "embedding": base64.b64encode(vector.astype("<f4").tobytes()).decode(),
            }
        ],
    }
    path.write_text(json.dumps(document))


def test_a_victims_vector_with_other_text_is_refused(tmp_path: Path, embedder: Embedder) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    victim = library.add(VICTIM, confidence=0.5).experience
    assert float(embedder.embed([POISON])[0] @ library.embedding(victim.id)) < 0.9  # really not a paraphrase
    before = snapshot(library)
    export_with(library, tmp_path / "attack.json", POISON, library.embedding(victim.id), 0.99)
    with pytest.raises(LibraryError, match="does not match its text"):
        library.import_json(tmp_path / "attack.json")
    random_unit = np.random.default_rng(0).normal(size=embedder.dim).astype(np.float32)
    export_with(
        library,
        tmp_path / "unit.json",
        "When it rains, carry an umbrella.",
        random_unit / np.linalg.norm(random_unit),
        0.9,
    )
    with pytest.raises(LibraryError, match="does not match its text"):
        library.import_json(tmp_path / "unit.json")
    assert snapshot(library) == before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=15,
    )
)
def test_any_json_document_is_imported_whole_or_refused_whole(
    tmp_path: Path, embedder: Embedder, document: object
) -> None:
    library = ExperienceLibrary(tmp_path / "fuzz.db", embedder)
    if not len(library):
        library.add(VICTIM)
    before = snapshot(library)
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document))
    try:
        results = library.import_json(path)
    except LibraryError as exc:
        assert "\n" not in str(exc)
        assert snapshot(library) == before
        return
    assert len(library) == len(before) + sum(r.op == "ADD" for r in results)
    assert {e.id: e.text for e in library.all()}[before[0][0]] == VICTIM or any(r.op == "MERGE" for r in results)
    library.close()
    (tmp_path / "fuzz.db").unlink()


@pytest.mark.parametrize(
    "content",
    [b"[" * 300_000, b'{"format": "dso-library", "experiences": ' + b"[" * 5000, b"\xff\xfe\x00", b"", b"null"],
)
def test_junk_files_are_one_line_errors(tmp_path: Path, embedder: Embedder, content: bytes) -> None:
    library = ExperienceLibrary(tmp_path / "lib.db", embedder)
    library.add(VICTIM)
    before = snapshot(library)
    (tmp_path / "junk.json").write_bytes(content)
    with pytest.raises(LibraryError) as info:
        library.import_json(tmp_path / "junk.json")
    assert "\n" not in str(info.value) and snapshot(library) == before


@pytest.mark.parametrize("junk", [b"", b"not an npz", b"PK\x03\x04" + bytes(300), bytes(range(256)) * 8])
def test_a_damaged_index_file_is_rebuilt_not_fatal(tmp_path: Path, embedder: Embedder, junk: bytes) -> None:
    library = ExperienceLibrary(tmp_path / "ix.db", embedder, index_min_size=2)
    for text in (VICTIM, "When the sky is blue, go outside.", "When it is cold, wear a coat."):
        library.add(text)
    assert library.search("coat", 1)[0].experience.text == "When it is cold, wear a coat."
    library.close()
    library.index_path.write_bytes(junk)
    reopened = ExperienceLibrary(tmp_path / "ix.db", embedder, index_min_size=2)
    assert reopened.search("coat", 1)[0].experience.text == "When it is cold, wear a coat."
    assert reopened.index_path.read_bytes() != junk  # rebuilt and saved
