"""`dso report`: the claims page rendered from result files, here from a tiny real run."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dso.bench.communication import run_communication_bench
from dso.config import load_config
from dso.errors import DSOError
from dso.report import FAILS, HOLDS, PARTLY, UNMEASURED, claims, load_results, page, render
from dso.simulate import SimulationSettings, simulate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-node network, a third Byzantine, one round on the in-memory registry; its communication figures; and
    the committed leg counting content probe (a real model run) beside them."""
    folder = tmp_path_factory.mktemp("results")
    settings = SimulationSettings(nodes=6, byzantine=0.3, attack="wrong", rounds=1, committee=3, seed=5, chain="memory")
    report = simulate(settings, load_config(), workdir=tmp_path_factory.mktemp("sim"))
    (folder / "simulate-attack-wrong.json").write_text(json.dumps(report))
    communication = run_communication_bench(folder / "simulate-attack-wrong.json")
    (folder / "communication.json").write_text(json.dumps(communication))
    shutil.copy(ROOT / "bench/results/placebo-content-leg_counting.json", folder)
    shutil.copy(ROOT / "bench/results/guards-heldout3.json", folder)
    return folder


def test_the_claims_follow_the_files(tiny_run: Path, tmp_path: Path) -> None:
    results = load_results([tiny_run])
    verdicts = {c.claim: c for c in claims(results)}
    byzantine = verdicts["robust to 30% Byzantine nodes"]
    assert byzantine.verdict == HOLDS and byzantine.sources == ("simulate-attack-wrong.json",)
    assert verdicts["at least 95% of a fine-tuned model's accuracy"].verdict == UNMEASURED
    assert verdicts["1,000+ nodes"].verdict == UNMEASURED  # 6 nodes prove nothing about 1,000
    communication = verdicts["10-100x less communication than federated learning"]
    assert communication.verdict == HOLDS and "at 6 nodes" in communication.measured
    placebo = verdicts["learned lessons beat a placebo instruction (3 tasks, 2 unseen seeds each, p < 0.05)"]
    assert placebo.verdict == UNMEASURED and "leg_counting: 12 / 1 against the placebo" in placebo.measured
    guards = next(c for c in verdicts.values() if c.claim.startswith("content guards"))
    held = json.loads((tiny_run / "guards-heldout3.json").read_text())["held_out"]["combined"]
    caught = held["detection"]["flagged"] / held["detection"]["of"]
    assert guards.verdict == (HOLDS if caught >= 0.9 else PARTLY if caught >= 0.5 else FAILS)
    assert f"{held['detection']['flagged']} of {held['detection']['of']} attack texts caught" in guards.measured
    # the same run with one poisoned lesson: the verdict turns
    poisoned = json.loads((tiny_run / "simulate-attack-wrong.json").read_text())
    poisoned["poisoned_accepted"] = 1
    copy = tmp_path / "simulate-attack-wrong.json"
    copy.write_text(json.dumps(poisoned))
    turned = {c.claim: c.verdict for c in claims(load_results([copy]))}
    assert turned["robust to 30% Byzantine nodes"] == FAILS
    page = render(results, command="test", link_base="../results/")
    assert "[simulate-attack-wrong.json](../results/simulate-attack-wrong.json)" in page
    assert "| leg_counting | 40 | 6160 | 0.3 | 0.5 | 0.775 | 12 / 1 |" in page
    assert page.count("| wrong | 6 | 30% |") == 1


def test_files_of_another_shape_never_crash_the_report(tiny_run: Path, tmp_path: Path) -> None:
    for name in ("communication.json", "simulate-attack-wrong.json", "placebo-content-leg_counting.json"):
        shutil.copy(tiny_run / name, tmp_path)
    (tmp_path / "simulate-attack-junk.json").write_text('{"rounds": 5, "settings": null}')
    (tmp_path / "communication-x.json").write_text('{"scale": [{"nodes": "many"}]}')
    (tmp_path / "byzantine.json").write_text('{"runs": [{"fraction": "a third"}]}')
    (tmp_path / "learning-x.json").write_text('{"eval": {"paired_placebo": 3}}')
    (tmp_path / "retrieval.json").write_text('{"recall_by_bits": [{"bits": "one"}]}')
    (tmp_path / "codec.json").write_text('{"rows": [{"mode": "plain"}]}')
    (tmp_path / "ablation-x.json").write_text('{"runs": [{"attack": 1}], "settings": {}}')
    (tmp_path / "guards-heldout9.json").write_text('{"held_out": {"combined": {"detection": 5}}}')
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "list.json").write_text("[1, 2]")
    page = render(load_results([tmp_path]), command="test")
    assert page.count("| wrong | 6 |") == 1 and "| junk |" not in page


@pytest.mark.slow  # dso as a process
def test_the_command_writes_the_page_and_refuses_to_overwrite(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.md"

    def dso(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dso", "report", *args], capture_output=True, text=True)

    first = dso(str(tiny_run), "--output", str(out))
    assert first.returncode == 0, first.stderr
    assert "## Claims" in out.read_text() and "](../" in out.read_text()  # file names link to the results
    again = dso(str(tiny_run), "--output", str(out))
    assert again.returncode == 1 and again.stderr.startswith("error: ") and "--force" in again.stderr
    assert dso(str(tiny_run), "--output", str(out), "--force").returncode == 0
    printed = dso(str(tiny_run))  # to standard output, off a terminal: every table row whole on one line
    rows = [line for line in printed.stdout.splitlines() if line.startswith("| ")]
    assert rows and all(line.endswith(" |") for line in rows) and max(len(line) for line in rows) > 120
    missing = dso(str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_an_experiment_resumes_and_the_report_reads_its_summary(tmp_path: Path) -> None:
    """`dso experiment byzantine-sweep` runs each (attack, share) cell once: run again with one more share, it runs
    only that one; its summary names the breaking point per attack, and the claims page reads it."""
    from dso.experiment import CELLS, SweepSettings, byzantine_sweep

    run_dir = tmp_path / "byzantine-sweep"
    said: list[str] = []
    small = SweepSettings(nodes=5, rounds=1, committee=3, fractions=(0.0,), attacks=("wrong",))
    byzantine_sweep(small, load_config(), run_dir, command="test", progress=said.append)
    more = SweepSettings(nodes=5, rounds=1, committee=3, fractions=(0.0, 0.4), attacks=("wrong",))
    summary = byzantine_sweep(more, load_config(), run_dir, command="test", progress=said.append)
    assert said[0] == "0 cells done, 1 to run" and "1 cells done, 1 to run" in said
    assert len((run_dir / CELLS).read_text().splitlines()) == 2
    (row,) = summary["attacks"]
    assert set(row["poisoned_by_fraction"]) == {"0", "0.4"} and summary["cells"] == 2
    broken = row["poisoned_by_fraction"]["0.4"] > 0
    assert (row["breaking_point"] == 0.4) == broken and (run_dir / "sweep.png").read_bytes().startswith(b"\x89PNG")
    page = render(load_results([run_dir]), command="test")
    assert "| wrong | 0%: 0, 40%: " in page and "byzantine-sweep/summary.json" in page
    for elsewhere in (tmp_path, run_dir / "sweep.png"):  # a folder holding other things; a file
        with pytest.raises(DSOError, match="run-dir"):
            byzantine_sweep(more, load_config(), elsewhere, command="test")
    (run_dir / CELLS).write_text("not json\n")
    with pytest.raises(DSOError, match="not a cell of this experiment"):
        byzantine_sweep(more, load_config(), run_dir, command="test")


def test_the_results_page_is_the_report_of_the_committed_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/results.md is exactly what the command in its header renders from the committed result files: a
    number typed into it by hand, or a result file committed without regenerating it, fails here."""
    committed = (ROOT / "docs/results.md").read_text(encoding="utf-8")
    header = next(line for line in committed.splitlines() if line.startswith("Generated by `"))
    args = shlex.split(header.split("`")[1])
    assert args[:2] == ["dso", "report"] and args[-2:] == ["--output", "docs/results.md"]
    monkeypatch.chdir(ROOT)
    text, _ = page([Path(a) for a in args[2:-2]], Path(args[-1]))
    assert text == committed, "docs/results.md is stale: run `make results`"


def test_the_placebo_claim_counts_wins_on_unseen_seeds_only(tmp_path: Path) -> None:
    """Learned libraries judged against the placebo: a task holds with significant wins on two seeds its run never
    drew; its own held-out split does not count; one significant loss anywhere keeps the claim from holding."""

    def evaluation(task: str, fixed: int, broken: int, p: float) -> dict[str, Any]:
        arm = {"questions": 100, "accuracy": 0.5, "tokens_per_solved": 300.0, "library_size": 1}
        return {
            "dataset": f"{task}:x=1",
            "arms": {"baseline": arm, "placebo": arm, "library": arm},
            "paired": {"fixed": fixed, "broken": broken, "p_value": p},
            "paired_placebo": {"fixed": fixed, "broken": broken, "p_value": p},
            "experiences": [f"When doing {task}, check | twice."],
        }

    claim = "learned lessons beat a placebo instruction (3 tasks, 2 unseen seeds each, p < 0.05)"
    files: dict[str, dict[str, Any]] = {
        "learning-a.json": {"train": {}, "eval": evaluation("a", 20, 2, 0.001)},  # its own split: not counted
        "learning-a-seed7.json": evaluation("a", 20, 2, 0.001),
        "learning-b-seed7.json": evaluation("b", 20, 2, 0.001),
        "learning-b-seed8.json": evaluation("b", 20, 2, 0.001),
        "learning-c-seed7.json": evaluation("c", 20, 2, 0.001),
        "learning-c-seed8.json": evaluation("c", 20, 2, 0.001),
        "learning-d-seed7.json": evaluation("d", 20, 2, 0.001),
        "learning-d-seed8.json": evaluation("d", 20, 2, 0.001),
    }
    verdict = {c.claim: c for c in claims(files)}[claim]
    assert verdict.verdict == HOLDS and "3 task(s)" in verdict.measured and "(b, c, d)" in verdict.measured
    files["learning-e-seed7.json"] = evaluation("e", 2, 20, 0.001)
    assert {c.claim: c for c in claims(files)}[claim].verdict == PARTLY
    del files["learning-d-seed8.json"], files["learning-c-seed8.json"]
    files["learning-a-seed8.json"] = {"arms": None}  # a file of another shape counts for nothing
    assert {c.claim: c.verdict for c in claims(files)}[claim] == PARTLY
    shown = render(files, command="test")
    assert "| a | a | 100 (run split) |" in shown and "| b | b | 100 (seed 8) |" in shown
    assert "When doing b, check \\| twice." in shown  # the lessons table escapes a text's pipes


def test_the_main_job_table_reads_the_demo_result() -> None:
    """`bench/demo.sh`'s file gives one row: the untrained task, the three arms, the pair against the placebo,
    the trials; a demo that measured nothing gives none, and a file of another shape never crashes the page."""
    from dso.report import demo_rows

    def arm(name: str, accuracy: float, fixed: int, broken: int, p: float) -> dict[str, Any]:
        paired = {"fixed": fixed, "broken": broken, "p_value": p}
        return {"arm": name, "accuracy": accuracy, "ci95": [0.1, 0.9], "vs_placebo": paired}

    demo = {
        "mode": "live",
        "untrained_task": "leg_counting:min_animals=1",
        "evaluation": {
            "questions": 30,
            "arms": [
                arm("placebo", 0.5, 0, 0, 1.0),
                arm("node 0 alone", 0.5, 0, 0, 1.0),
                arm("node 0 with the network", 0.7, 7, 1, 0.07),
            ],
        },
        "trials": [  # one verdict per candidate and look
            {"text": "a", "adopted": False, "pending": True, "looks": 1},
            {"text": "b", "adopted": False, "pending": False, "looks": 1},
            {"text": "a", "adopted": True, "pending": False, "looks": 2},
            {"text": "c", "adopted": True, "pending": False, "looks": 1},
        ],
        "trial_cost": {"prompt_tokens": 2_000_000, "completion_tokens": 1_000_000, "chats": 90, "seconds": 600.0},
        "attacker_items_accepted": 0,
        "seconds": 750.0,
    }
    (row,) = demo_rows({"demo.json": demo})
    assert row["task never trained on"] == "leg_counting" and row["with the network"] == 0.7
    assert row["vs placebo"] == "7 / 1" and row["trials (adopted)"] == "3 (2)" and row["minutes"] == 12.5
    from dso.report import PRICE_IN, PRICE_OUT, claims, trial_cost_rows

    (cost,) = trial_cost_rows({"demo.json": demo})  # node 0's share of the network, priced like learning
    assert cost["tokens in"] == 2_000_000 and cost["dollars"] == round(2 * PRICE_IN + PRICE_OUT, 4)
    sharing = next(c for c in claims({"demo.json": demo}) if "other nodes learned" in c.claim)
    assert sharing.verdict == "fails" and "p = 0.07" in sharing.measured  # a gain within noise is not shown
    won = {
        **demo,
        "evaluation": {
            **demo["evaluation"],
            "arms": [*demo["evaluation"]["arms"][:2], arm("node 0 with the network", 0.8, 9, 0, 0.004)],
        },
    }
    assert next(c for c in claims({"demo.json": won}) if "other nodes learned" in c.claim).verdict == "holds"
    assert demo_rows({"demo.json": {**demo, "evaluation": None}}) == []
    assert demo_rows({"demo.json": {**demo, "evaluation": {"arms": "none"}}}) == []
    assert "The main job" in render({"demo.json": demo}, command="test")


def test_light_node_runs_are_their_own_line_and_the_claim_uses_them(tmp_path: Path) -> None:
    """The same 6-node network where every node pulls every batch and where the nodes outside the committee read
    its certificate: two modes in the scale table, the comparison taken from the light run, and the light
    network's median node receiving less than the full one's."""
    reports = []
    for light in (False, True):
        settings = SimulationSettings(
            nodes=6, byzantine=0.3, attack="wrong", rounds=1, committee=3, seed=5, chain="memory", light=light
        )
        path = tmp_path / f"simulate-{'light' if light else 'full'}.json"
        path.write_text(json.dumps(simulate(settings, load_config(), workdir=tmp_path / path.stem)))
        reports.append(path)
    result = run_communication_bench(reports)
    assert sorted(row["mode"] for row in result["scale"]) == ["full", "light"]
    assert result["simulation"]["mode"] == "light"
    by_mode = {row["mode"]: row["dso_bytes"] for row in result["scale"]}
    assert by_mode["light"] < by_mode["full"]
