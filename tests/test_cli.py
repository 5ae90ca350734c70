"""The `dso` command as a user runs it: JSON output, and one-line errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # every test here runs dso as a process


def dso(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # A hang guard, not a speed check: the demo took 253 s on 2 cores shared with a learning run, and failed
    # at the former 300 s limit once.
    return subprocess.run([sys.executable, "-m", "dso", *args], capture_output=True, text=True, cwd=cwd, timeout=900)


def dso_json(*args: str) -> Any:
    result = dso(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_version() -> None:
    result = dso("--version")
    assert result.returncode == 0 and result.stdout.startswith("dso 0.")


def test_library_commands_end_to_end(tmp_path: Path) -> None:
    lib = str(tmp_path / "lib.db")
    added = dso_json("library", "add", "When adding fractions, find a common denominator first.", "-l", lib)
    assert added["op"] == "ADD"
    exp_id = added["experience"]["id"]
    dso_json("library", "add", "When units differ, convert to one unit first.", "-l", lib, "--domain", "units")
    merged = dso_json("library", "add", "When adding fractions, first find a common denominator.", "-l", lib)
    assert merged["op"] == "MERGE" and merged["experience"]["id"] == exp_id
    hits = dso_json("library", "search", "how to add 1/2 and 1/3", "-k", "1", "-l", lib)["hits"]
    assert [h["id"] for h in hits] == [exp_id]
    shown = dso_json("library", "show", exp_id, "-l", lib)
    assert [h["op"] for h in shown["history"]] == ["ADD", "MERGE"]
    export = tmp_path / "out.json"
    assert dso_json("library", "export", str(export), "-l", lib)["exported"] == 2
    other = str(tmp_path / "other.db")
    assert dso_json("library", "import", str(export), "-l", other)["added"] == 2
    assert dso_json("library", "delete", exp_id, "-l", other)["deleted"]["id"] == exp_id
    assert dso_json("library", "show", "-l", other)["count"] == 1


def _assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "file not found"),
        ("{not json", "is not valid JSON"),
        ('{"format": "dso-library", "version": 1, "experiences": [{"text": 5}]}', "expected a string or an object"),
    ],
)
def test_import_errors(tmp_path: Path, content: str | None, fragment: str) -> None:
    path = tmp_path / "in.json"
    if content is not None:
        path.write_text(content)
    _assert_one_line_error(dso("library", "import", str(path), "-l", str(tmp_path / "lib.db")), fragment)


def test_user_errors_never_show_tracebacks(tmp_path: Path) -> None:
    lib = str(tmp_path / "lib.db")
    _assert_one_line_error(dso("library", "delete", "nope", "-l", lib), "no experience library at")  # none made
    assert dso("library", "add", "When a library exists, ids can be missing.", "-l", lib).returncode == 0
    _assert_one_line_error(dso("library", "delete", "nope", "-l", lib), "no experience with id 'nope'")
    _assert_one_line_error(
        dso("demo", "--model", "gpt-9", "--questions", "1", "--heldout-size", "1", "--run-dir", str(tmp_path / "d")),
        "unknown model",
    )
    _assert_one_line_error(dso("models", "pull", "gpt-9"), "unknown model 'gpt-9'")
    bad = tmp_path / "bad.toml"
    bad.write_text("[llm]\nthreds = 2\n")
    _assert_one_line_error(dso("--config", str(bad), "models", "list"), "unknown config key 'llm.threds'")
    (tmp_path / "garbage.db").write_bytes(b"x" * 4096)
    _assert_one_line_error(dso("library", "show", "-l", str(tmp_path / "garbage.db")), "not a usable")


def test_mistyped_flags_and_values_get_one_line_and_exit_2(tmp_path: Path) -> None:
    """What the parser refuses (unknown command or flag, a value of the wrong type, a missing argument) is one
    `error:` line naming where the help is, like every other user error; `dso` alone still prints the help."""
    cases = [
        (("eval", "--heldout-size", "abc"), "Invalid value for '--heldout-size'", "dso eval --help"),
        (("eval", "--heldout-size", "\x1b[31m5"), "Invalid value for '--heldout-size'", "dso eval --help"),
        (("nosuch",), "No such command 'nosuch'", "dso --help"),
        (("library", "show", "--bogus"), "No such option: --bogus", "dso library show --help"),
        (("library", "add"), "Missing argument", "dso library add --help"),
    ]
    for args, fragment, where in cases:
        result = dso(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stdout == "" and "\x1b" not in result.stderr and "Usage" not in result.stderr
        _assert_one_line_error(result, fragment)
        assert where in result.stderr
    for args in ((), ("library",)):
        bare = dso(*args, cwd=tmp_path)
        assert bare.returncode == 2 and "Usage: dso" in bare.stdout + bare.stderr and "error:" not in bare.stderr
    assert dso("eval", "--help", cwd=tmp_path).returncode == 0
    assert not list(tmp_path.iterdir())  # nothing was half-applied


def test_models_list_json() -> None:
    names = {m["name"]: m for m in dso_json("models", "list")}
    assert set(names) == {"smollm2-135m", "qwen2.5-0.5b", "qwen2.5-1.5b"}
    assert names["smollm2-135m"]["installed"] is True


def test_demo_runs_a_small_network_end_to_end(tmp_path: Path) -> None:
    from dso.demo import SPECIALIST_LESSONS

    run_dir = tmp_path / "demo"
    result = dso_json(
        "demo", "--model", "smollm2-135m", "--questions", "1", "--heldout-size", "3", "--validation-size", "1",
        "--run-dir", str(run_dir),
    )  # fmt: skip
    first, second, *later = result["rounds"]
    assert first["bytes_per_honest_node"]["sent_median"] > 0 and first["bytes_per_honest_node"]["received_median"] > 0
    # node 0 tried what one node alone supports in a domain it holds questions of: the specialist's lessons and
    # the attacker's wrong count, one new question a look, a round after each look while one is pending; three
    # looks of one question can never reach the gate's p / 3 (3 / 0: p = 0.125), so none is adopted nor accepted
    tried = {verdict["text"]: verdict for verdict in result["trials"]}  # the last look of each
    (lie,) = set(tried) - set(SPECIALIST_LESSONS)
    assert set(tried) == {*SPECIALIST_LESSONS, lie} and "legs" in lie
    assert all(v["questions"] == v["looks"] and not v["adopted"] and not v["pending"] for v in tried.values())
    assert len(later) == max(v["looks"] for v in tried.values()) - 1 <= 2
    assert {c["text"] for c in result["candidates"]} >= {*SPECIALIST_LESSONS, lie}
    assert result["attacker_items_accepted"] == 0 and result["attacker_items_adopted"] == 0
    # round 2: the injections and junk are voted down by the guards
    assert second["batches"]["rejected"] >= 1
    attacker = [row for row in result["rejected_batches"] if row["node"] in result["attackers"]]
    assert attacker and "guards" in attacker[0]["reason"]
    evaluation = result["evaluation"]
    arms = {row["arm"]: row for row in evaluation["arms"]}
    assert set(arms) == {"placebo", "node 0 alone", "node 0 with the network"} and evaluation["questions"] == 3
    assert set(arms["node 0 with the network"]["vs_placebo"]) == {"fixed", "broken", "p_value"}
    for name in ("accuracy.png", "bytes.png", "batches.png", "demo.json", "cells.jsonl"):
        assert (run_dir / name).stat().st_size > 100
    assert result["fedavg_bytes_per_node_round"]["lora8"] > 1_000 * max(
        1, first["bytes_per_honest_node"]["sent_median"]
    )


def test_demo_never_replaces_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = dso("demo", "--run-dir", ".", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "refusing" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_demo_run_dir_rule(tmp_path: Path) -> None:
    from dso.demo import MARKER, fresh_run_dir
    from dso.errors import DSOError

    made = tmp_path / "made"
    fresh_run_dir(made)  # a new directory gets the marker
    (made / "old.txt").write_text("from the last demo")
    fresh_run_dir(made)  # the demo's own directory is replaced
    assert sorted(p.name for p in made.iterdir()) == [MARKER]
    empty = tmp_path / "empty"
    empty.mkdir()
    fresh_run_dir(empty)
    assert (empty / MARKER).is_file()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data").write_text("x")
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(made)
    for refused in (foreign, tmp_path / "file", tmp_path / "link"):
        with pytest.raises(DSOError):
            fresh_run_dir(refused)
    assert (foreign / "data").read_text() == "x" and (made / MARKER).is_file()


def test_the_demo_printout_reads_a_measured_result(capsys: pytest.CaptureFixture[str]) -> None:
    """The committed main-job result as a person sees it: every trial, the arms against the placebo, the verdict."""
    from dso.cli.main import print_demo

    result = json.loads((Path(__file__).parents[1] / "bench/results/demo.json").read_text())
    print_demo({**result, "plots": ["accuracy.png"]}, Path("runs/demo"))
    shown = capsys.readouterr().out
    assert shown.count("node 0, look ") == len(result["trials"])
    assert "with the network" in shown and "against the placebo" in shown and "candidates left" in shown
    arms = {a["arm"]: a["accuracy"] for a in result["evaluation"]["arms"]}
    assert ("did not help node 0" in shown) == (arms["node 0 with the network"] <= arms["placebo"])
