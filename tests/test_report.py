"""`dso report`: the claims page rendered from result files, here from a tiny real run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dso.bench.communication import run_communication_bench
from dso.config import load_config
from dso.errors import DSOError
from dso.report import FAILS, HOLDS, PARTLY, UNMEASURED, claims, load_results, render
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
    page = render(results, generated="test", link_base="../results/")
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
    page = render(load_results([tmp_path]), generated="test")
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
    page = render(load_results([run_dir]), generated="test")
    assert "| wrong | 0%: 0, 40%: " in page and "byzantine-sweep/summary.json" in page
    for elsewhere in (tmp_path, run_dir / "sweep.png"):  # a folder holding other things; a file
        with pytest.raises(DSOError, match="run-dir"):
            byzantine_sweep(more, load_config(), elsewhere, command="test")
    (run_dir / CELLS).write_text("not json\n")
    with pytest.raises(DSOError, match="not a cell of this experiment"):
        byzantine_sweep(more, load_config(), run_dir, command="test")
