"""Experience files of Training-Free GRPO (agent YAML, experience JSON) and ACE (playbooks): read, written,
round-tripped, and refused whole when hostile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dso.embed import Embedder
from dso.errors import LibraryError
from dso.library import ExperienceLibrary

DATA = Path(__file__).parent / "data"
AGENT = DATA / "tfgrpo_practice_agent.yaml"
PLAYBOOK = DATA / "ace_playbook.md"


def library(tmp_path: Path, embedder: Embedder, name: str = "lib.db") -> ExperienceLibrary:
    return ExperienceLibrary(tmp_path / name, embedder)


def test_a_training_free_grpo_agent_file_imports_every_experience_in_order(tmp_path: Path, embedder: Embedder) -> None:
    lib = library(tmp_path, embedder)
    results = lib.import_json(AGENT)
    texts = [r.experience.text for r in results]
    assert len(texts) == 4 and all(r.op == "ADD" for r in results)
    assert texts[0].startswith("Running totals: When adding a chain of numbers")
    assert texts[3].startswith("Sign check:")
    out = tmp_path / "agent.yaml"
    assert lib.export_json(out, format="tfgrpo-agent", template=AGENT) == 4
    exported = yaml.safe_load(out.read_text())
    original = yaml.safe_load(AGENT.read_text())
    assert {k: v for k, v in exported.items() if k != "agent"} == {k: v for k, v in original.items() if k != "agent"}
    assert exported["agent"]["name"] == original["agent"]["name"]
    instructions = exported["agent"]["instructions"]
    assert instructions.startswith("Solve the following problem step by step.")
    again = library(tmp_path, embedder, "again.db")
    assert [r.experience.text for r in again.import_json(out)] == texts  # the same experiences, the same order


def test_an_export_fills_any_agent_template_with_the_library(tmp_path: Path, embedder: Embedder) -> None:
    lib = library(tmp_path, embedder)
    lib.add("When counting legs, multiply each animal's count by its legs before adding.", domain="legs")
    template = tmp_path / "template.yaml"
    template.write_text("agent:\n  name: legs\n  instructions: Count carefully.\nother: {keep: true}\n")
    out = tmp_path / "filled.yaml"
    lib.export_json(out, format="tfgrpo-agent", template=template)
    filled = yaml.safe_load(out.read_text())
    assert filled["other"] == {"keep": True}
    assert filled["agent"]["instructions"].splitlines() == [
        "Count carefully.",
        "[G0]. When counting legs, multiply each animal's count by its legs before adding.",
    ]
    with pytest.raises(LibraryError, match="--template"):
        lib.export_json(tmp_path / "x.yaml", format="tfgrpo-agent")
    with pytest.raises(LibraryError, match="unknown export format"):
        lib.export_json(tmp_path / "x.json", format="yaml")


def test_an_ace_playbook_round_trips_with_its_counts_and_sections(tmp_path: Path, embedder: Embedder) -> None:
    lib = library(tmp_path, embedder)
    lib.import_json(PLAYBOOK)
    rows = {e.text: (e.domain, e.helped, e.hurt) for e in lib.all()}
    assert rows["When a rectangle's area is asked, multiply its length by its width."] == (
        "formulas_calculations",
        3,
        0,
    )
    assert rows["When a percentage rises and then falls by the same amount, do not assume the price returns."] == (
        "common_mistakes_to_avoid",
        0,
        4,
    )
    assert len(rows) == 4
    out = tmp_path / "playbook.md"
    lib.export_json(out, format="ace")
    text = out.read_text()
    assert "## STRATEGIES INSIGHTS" in text and "helpful=5 harmful=0 :: When adding a chain" in text
    again = library(tmp_path, embedder, "again.db")
    again.import_json(out)
    assert {e.text: (e.domain, e.helped, e.hurt) for e in again.all()} == rows  # sections come back as domains


def test_a_section_with_control_characters_becomes_a_clean_domain(tmp_path: Path, embedder: Embedder) -> None:
    lib = library(tmp_path, embedder)
    path = tmp_path / "playbook.md"
    path.write_text("## \x1b[31mRED\u202e\n[a-1] helpful=1 harmful=0 :: When x is given, do y.\n")
    lib.import_json(path)
    (experience,) = lib.all()
    assert experience.domain == "31mred" and experience.helped == 1


def test_a_training_free_grpo_experience_json_round_trips(tmp_path: Path, embedder: Embedder) -> None:
    lib = library(tmp_path, embedder)
    lib.import_json(AGENT)
    out = tmp_path / "experiences.json"
    lib.export_json(out, format="tfgrpo-json")
    mapping = json.loads(out.read_text())
    assert list(mapping) == ["G0", "G1", "G2", "G3"]
    again = library(tmp_path, embedder, "again.db")
    assert [r.experience.text for r in again.import_json(out)] == list(mapping.values())


HOSTILE = {
    "python tag": "agent:\n  instructions: !!python/object/apply:os.system ['true']\n",
    "anchors and aliases": "a: &x [1, 2]\nb: [*x, *x]\nagent:\n  instructions: '[G0]. When x, do y.'\n",
    "billion laughs": "a: &a ['lol']\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\n",
    "nesting": "agent:\n  instructions: x\ndeep: " + "[" * 200 + "]" * 200 + "\n",
    "wrong type": "agent:\n  instructions: ['[G0]. When x, do y.']\n",
    "no experiences": "agent:\n  instructions: Only a preamble here.\n",
    "not an agent": "model: {name: x}\n",
    "two documents": "agent: {instructions: '[G0]. When x, do y.'}\n---\nmore: 1\n",
    "ace junk line": "## S\n[a-1] helpful=1 harmful=0 :: When x, do y.\nrm -rf /\n",
    "ace huge count": "## S\n[a-1] helpful=999999999 harmful=0 :: When x, do y.\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_are_refused_whole(tmp_path: Path, embedder: Embedder, name: str) -> None:
    lib = library(tmp_path, embedder)
    lib.add("When a stored lesson exists, it stays.")
    path = tmp_path / "hostile.yaml"
    path.write_text(HOSTILE[name])
    with pytest.raises(LibraryError):
        lib.import_json(path)
    assert [e.text for e in lib.all()] == ["When a stored lesson exists, it stays."]  # nothing half-imported


def test_huge_and_mixed_encoding_files_are_refused(tmp_path: Path, embedder: Embedder) -> None:
    lib = library(tmp_path, embedder)
    mixed = tmp_path / "mixed.yaml"
    mixed.write_bytes("agent:\n  instructions: '[G0]. When caf\u00e9'\n".encode() + "[G1]. \xe9t\xe9".encode("latin-1"))
    with pytest.raises(LibraryError, match="not UTF-8"):
        lib.import_json(mixed)
    huge = tmp_path / "huge.yaml"
    huge.write_text("agent:\n  instructions: '" + "[G0]. When x, do y. " * 300_000 + "'\n")
    with pytest.raises(LibraryError, match="larger than"):
        lib.import_json(huge)
    assert len(lib) == 0


def test_the_context_block_for_any_agent(tmp_path: Path, embedder: Embedder) -> None:
    lib = library(tmp_path, embedder)
    lib.import_json(PLAYBOOK)
    question = "What is 12 + 7 + 30 + 5?"
    block = lib.format_for_prompt(question, 2)
    assert block.splitlines()[0].startswith("[G0]. When adding a chain of numbers") and len(block.splitlines()) == 2
    ace = lib.format_for_prompt(question, 1, format="ace")
    assert ace.startswith("## STRATEGIES INSIGHTS\n") and "helpful=5 harmful=0 :: When adding a chain" in ace
    assert lib.format_for_prompt(question, 1, format="plain").startswith("- When adding a chain")
    assert lib.format_for_prompt(question, 2, min_similarity=0.99) == ""
    with pytest.raises(LibraryError, match="unknown context format"):
        lib.format_for_prompt(question, format="xml")


def test_experiences_written_elsewhere_import_up_to_the_record_formats_cap(tmp_path: Path, embedder: Embedder) -> None:
    """Training-Free GRPO's experiences often run past the 32 words this library caps its own lessons at; an
    import takes them up to the record format's 64 words, and refuses the whole file beyond."""
    long = " ".join(["Check each partial sum against an estimate made by rounding every term first;"] * 3)
    assert 32 < len(long.split()) <= 64
    agent = tmp_path / "agent.yaml"
    agent.write_text(
        yaml.safe_dump({"agent": {"name": "a", "instructions": f"Solve it.\n[G0]. {long}\n[G1]. Short one."}})
    )
    lib = library(tmp_path, embedder)
    assert [r.experience.text for r in lib.import_json(agent)] == [long, "Short one."]
    too_long = tmp_path / "too-long.yaml"
    words = " ".join(["word"] * 70)
    too_long.write_text(
        yaml.safe_dump({"agent": {"name": "a", "instructions": f"Solve it.\n[G0]. Fine.\n[G1]. {words}"}})
    )
    other = library(tmp_path, embedder, "other.db")
    with pytest.raises(LibraryError, match="the record format's cap"):
        other.import_json(too_long)
    assert other.all() == []  # nothing half-imported
