"""`dso experiment sharing`: does a node gain from lessons it never learned, beyond the placebo?

A network of real nodes (signed batches, the in-memory registry, a block store, guards, the robust consensus,
merges, and the trials of `dso.node.trial`) on one machine:

- one **specialist** per task, holding that task's lessons (a lessons file, or the hand-written content tips,
  replayed: the summary says which);
- **readers**, honest nodes that learned nothing;
- **attackers**, each posting a wrong lesson dressed as a specialist's in the first task's domain and a
  placebo-like lesson claimed at full confidence in every task's domain.

Round 1 publishes; every honest node then tries the candidates of every task on its own validation questions
(each node holds some of every kind it serves, drawn with `validation_seed`, apart from the held-out ones),
adopts what gains there and vouches for it; round 2 publishes the vouchers, so what enough nodes verified is
accepted for everybody. Then every task's held-out questions (`heldout_seed`, a seed no run used) are
answered in these arms, on the same questions, greedy:

- `none`: the bare prompt; `placebo`: the generic instruction alone (solver.v3's);
- `specialist`: the task's specialist with its own lessons only, under the placebo;
- `node N`: each node's library after the rounds (its own lessons, merged and adopted ones), under the
  placebo: the node x task matrix. Retrieval gives a question the lessons of its own domain, and another
  domain's only above `train.min_similarity`: a node's other lessons can interfere, and the matrix shows it.
  Nodes whose libraries hold the same lessons answer identically: each distinct library is answered once.

Every arm is one cell of `cells.jsonl` (per-question scores), so a stopped run resumes with the arms left;
the summary pairs each node's arm against `none` and `placebo` (exact sign test) and draws a heat map of
gains over the placebo and accuracy per arm with 95% intervals.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dso.config import DSOConfig
from dso.core.experience import text_key
from dso.embed import make_embedder
from dso.errors import ConfigError
from dso.experiment import commit_id, own_run_dir, read_cells
from dso.files import write_text_atomic
from dso.learn.datasets import Problem, fresh_heldout, one_draw, train_heldout_split
from dso.learn.evaluate import confidence_interval, paired_scores, question_score
from dso.learn.extract import Rollout
from dso.learn.rewards import DefaultVerifier, Verifier
from dso.learn.solve import PLACEBO_TEMPLATE, SolveSettings, retrieved, solve
from dso.library import ExperienceLibrary
from dso.llm import LLM, make_llm
from dso.machine import machine
from dso.network import NetworkSpec, build_network
from dso.network.attacks import PLACEBO_CLAIM, specialist_lie
from dso.node import GateTrial, GlobalExperience, Node, TrialVerdict

Progress = Callable[[str], None]
CELLS, SUMMARY, TRIALS = "cells.jsonl", "summary.json", "trials.jsonl"
LEGS = "leg_counting:min_animals=1,max_animals=2,max_instances=4"
PRODUCTS = "products:min_digits=2,max_digits=3"


@dataclasses.dataclass(frozen=True)
class SharingSettings:
    tasks: tuple[str, ...] = (LEGS, PRODUCTS)  # one specialist per task (dataset specs)
    lessons: tuple[str, ...] = ()  # a lessons file per task (one lesson per line); none: the hand-written tips
    readers: int = 1
    attackers: int = 1
    heldout: int = 100
    heldout_seed: int = 9190  # kept for this experiment: no run, probe or choice drew it
    validation: int = 40
    validation_seed: int = 9191
    max_tokens: int = 256
    gate_p: float = 0.05

    def check(self) -> None:
        if not self.tasks or len({t.split(":")[0] for t in self.tasks}) != len(self.tasks):
            raise ConfigError("give one or more tasks, each of its own kind")
        if self.lessons and len(self.lessons) != len(self.tasks):
            raise ConfigError("give one lessons file per task, or none")
        for name, value, low in (("readers", self.readers, 1), ("attackers", self.attackers, 0)):
            if not low <= value <= 20:
                raise ConfigError(f"{name} must lie in [{low}, 20]")
        for name, value in (("heldout", self.heldout), ("validation", self.validation)):
            if not 1 <= value <= 1000:
                raise ConfigError(f"{name} must lie in [1, 1000]")
        if not 16 <= self.max_tokens <= 4096 or not 0 < self.gate_p <= 1:
            raise ConfigError("max_tokens must lie in [16, 4096] and gate_p in (0, 1]")


def _lessons(settings: SharingSettings) -> list[tuple[list[str], str]]:
    """Each task's lessons and where they come from."""
    from dso.bench.tips import read_lessons, tips_for

    if settings.lessons:
        return [(read_lessons(Path(path)), f"lessons file {path}") for path in settings.lessons]
    return [(tips_for(task), "hand-written content tips (dso bench tips), replayed") for task in settings.tasks]


class _Trials:
    """One node's trials: a gate per task on its validation questions of that task, one model for all. Verdicts
    are kept in `run_dir/trials.jsonl` by node and candidate set, so a resumed run does not try them again (the
    network is rebuilt the same way and answers are greedy: the same trial gives the same verdict)."""

    def __init__(self, gates: dict[str, GateTrial], node: str, cache: Path) -> None:
        self._gates, self._node, self._cache = gates, node, cache

    @property
    def domains(self) -> frozenset[str]:
        return frozenset(self._gates)

    def __call__(
        self,
        library: ExperienceLibrary,
        candidates: Sequence[GlobalExperience],
        draw: int = 0,
        prior: Sequence[TrialVerdict | None] = (),
    ) -> list[TrialVerdict]:
        before = dict(zip((c.text for c in candidates), list(prior) or [None] * len(candidates), strict=True))
        parts = [self._node, str(draw), *sorted(c.text for c in candidates)]
        key = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        for line in self._cache.read_text(encoding="utf-8").splitlines() if self._cache.exists() else []:
            row = json.loads(line)
            if isinstance(row, dict) and row.get("key") == key:
                return [TrialVerdict(**v) for v in row["verdicts"]]
        verdicts: dict[str, TrialVerdict] = {}
        for domain, gate in self._gates.items():
            mine = [c for c in candidates if c.domain == domain]
            for verdict in gate(library, mine, draw, [before[c.text] for c in mine]):
                verdicts[verdict.text] = verdict
        found = [verdicts[c.text] for c in candidates]
        with self._cache.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, "verdicts": [v.to_json() for v in found]}, sort_keys=True) + "\n")
        return found


def placebo_settings(config: DSOConfig, max_tokens: int, instruction: str | None = None) -> SolveSettings:
    """Greedy answers under solver.v3 with the configured retrieval: a question gets the lessons of its own
    domain, and another domain's only above `train.min_similarity` (the interference the matrix shows).
    `instruction` None is the template's own (the placebo), "" the bare prompt."""
    return SolveSettings.from_train(
        dataclasses.replace(config.train, max_tokens=max_tokens),
        parallel=config.llm.parallel,
        prompt_version=PLACEBO_TEMPLATE,
        instruction=instruction,
    )


def prompts_key(questions: Sequence[Problem], settings: SolveSettings, library: ExperienceLibrary | None) -> str:
    """What an arm puts in its prompts beyond the instruction: each question's retrieved lessons, in order,
    hashed. Two arms with the same key and instruction ask the same prompts, so greedy answers are the same:
    such arms are answered once (a node whose other-domain lessons are never retrieved answers as without them)."""
    used = retrieved(questions, settings, library)
    rows = [p.id + "\t" + "\x1f".join(text_key(h.experience.text) for h in used[p.id]) for p in questions]
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Arm:
    """One way to answer a task's held-out questions: a library (or none) under an instruction."""

    name: str
    library: ExperienceLibrary | None
    instruction: str | None = None  # None: the placebo (solver.v3's own instruction); "": the bare prompt


def answer_arms(
    task: str,
    questions: Sequence[Problem],
    arms: Sequence[Arm],
    model: LLM,
    verifier: Verifier,
    settings: Callable[[str | None], SolveSettings],
    cells: list[dict[str, Any]],
    cells_file: Path,
    say: Progress,
    on_done: Callable[[Problem, list[Rollout]], None] | None = None,
) -> None:
    """Answer each arm of one task not yet in `cells` (appending its cell there and to `cells_file`); an arm
    whose prompts equal those of a cell already answered joins that cell instead (`prompts_key`)."""
    domain = questions[0].task
    for arm in arms:
        solve_settings = settings(arm.instruction)
        key = (task, prompts_key(questions, solve_settings, arm.library), "" if arm.instruction == "" else "placebo")
        existing = next((c for c in cells if (c["task"], c["library"], c["instruction"]) == key), None)
        if existing is not None:
            if arm.name not in existing["arms"]:
                existing["arms"].append(arm.name)
            continue
        say(f"{task.split(':')[0]}: {arm.name} on {len(questions)} held-out questions")
        answers = solve(questions, model, verifier, solve_settings, arm.library, on_done=on_done)
        texts = arm.library.all() if arm.library else []
        cell = {
            "task": task,
            "library": key[1],
            "instruction": key[2],
            "arms": [arm.name],
            "lessons": sorted(e.text for e in texts if e.domain == domain),
            "scores": {p.id: question_score(answers[p.id]) for p in questions},
        }
        with cells_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(cell, sort_keys=True) + "\n")
        cells.append(cell)


def sharing_experiment(
    settings: SharingSettings,
    config: DSOConfig,
    run_dir: Path,
    *,
    command: str,
    progress: Progress | None = None,
    solver: LLM | None = None,
) -> dict[str, Any]:
    """Build the network, run the rounds and trials, answer every arm not yet in `run_dir/cells.jsonl`, then
    write the summary and the plots. `solver` replaces the configured model (tests)."""
    settings.check()
    say = progress or (lambda line: None)
    lessons = _lessons(settings)
    own_run_dir(run_dir)
    done = read_cells(run_dir / CELLS, _cell)
    heldout = {task: _heldout(task, settings) for task in settings.tasks}
    validation = {task: _validation(task, settings, heldout[task]) for task in settings.tasks}
    domains = {task: heldout[task][0].task for task in settings.tasks}
    model = solver or make_llm(config)
    verifier = DefaultVerifier()
    with tempfile.TemporaryDirectory(prefix="dso-sharing-") as scratch:
        k, readers, attackers = len(settings.tasks), settings.readers, settings.attackers
        nodes = k + readers + attackers
        byzantine = frozenset(range(k + readers, nodes))
        spec = NetworkSpec(nodes=nodes, members=tuple(range(nodes)), byzantine=byzantine, chain="memory")
        network = build_network(config, Path(scratch), spec)
        try:
            specialists, honest = network.nodes[:k], network.nodes[: k + readers]
            for node, task, (texts, _) in zip(specialists, settings.tasks, lessons, strict=True):
                for text in texts:
                    node.library.add(text, domain=domains[task])
            for number, node in enumerate(network.nodes[k + readers :]):
                node.library.add(specialist_lie(f"attacker {number}", 1), domain=domains[settings.tasks[0]])
                for task in settings.tasks:
                    node.library.add(PLACEBO_CLAIM, confidence=1.0, domain=domains[task])
            say(f"round 1: {k} specialists, {readers} readers, {attackers} attackers publish")
            network.sync_round(range(nodes))
            gates = {
                domains[t]: GateTrial(  # one look: each node tries each candidate once, on its validation set
                    domains[t],
                    one_draw(validation[t]),
                    lambda: model,
                    lambda _: verifier,
                    placebo_settings(config, settings.max_tokens),
                    settings.gate_p,
                )
                for t in settings.tasks
            }
            trials: dict[str, list[dict[str, Any]]] = {}
            for index, node in enumerate(honest):
                say(f"node {index} tries the candidates of its kinds on its validation questions")
                report = node.try_candidates(_Trials(gates, f"node {index}", run_dir / TRIALS), limit=1000)
                trials[f"node {index}"] = [v.to_json() for v in report.tried]
            say("round 2: adopters vouch for what they adopted")
            network.sync_round(range(nodes))
            computed = honest[-1].global_library()
            network_view = {
                "accepted": [g.to_json() for g in computed.accepted],
                "candidates": [g.to_json() for g in computed.candidates],
                "rejected": [{"text": d.text, "reason": d.reason} for d in computed.rejected if not d.candidate],
            }
            honest_texts = {text for texts, _ in lessons for text in texts}
            poisoned = [g.text for g in computed.accepted if g.text not in honest_texts]
            cells = _answer_arms(
                settings, config, run_dir, done, heldout, domains, honest, specialists, model, verifier, say
            )
        finally:
            network.close()
            if solver is None:
                model.close()
    summary = {"experiment": "sharing", "settings": dataclasses.asdict(settings)}
    summary |= summarise(cells, settings.tasks, domains) | {
        "lessons": [
            {"task": t, "source": src, "lessons": texts}
            for t, (texts, src) in zip(settings.tasks, lessons, strict=True)
        ],
        "network": network_view | {"poisoned_accepted": poisoned},
        "trials": trials,
        "roles": {
            f"node {i}": (f"specialist of {domains[settings.tasks[i]]}" if i < len(settings.tasks) else "reader")
            for i in range(len(settings.tasks) + settings.readers)
        },
        "model": model.name if hasattr(model, "name") else config.llm.model,
        "machine": machine(),
        "commit": commit_id(),
        "command": command,
        "seeds": {"heldout": settings.heldout_seed, "validation": settings.validation_seed},
    }
    from dso.plots import sharing_accuracy, sharing_gains

    summary["plots"] = [
        str(sharing_gains(summary, run_dir / "gains.png")),
        str(sharing_accuracy(summary, run_dir / "accuracy.png")),
    ]
    write_text_atomic(run_dir / SUMMARY, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return summary


def _heldout(task: str, settings: SharingSettings) -> list[Problem]:
    _, questions = train_heldout_split(task, 0, settings.heldout, seed=settings.heldout_seed)
    return questions


def _validation(task: str, settings: SharingSettings, heldout: Sequence[Problem]) -> list[Problem]:
    return fresh_heldout(task, settings.validation, settings.validation_seed, {p.question for p in heldout})


def _answer_arms(
    settings: SharingSettings,
    config: DSOConfig,
    run_dir: Path,
    done: list[dict[str, Any]],
    heldout: dict[str, list[Problem]],
    domains: dict[str, str],
    honest: Sequence[Node],
    specialists: Sequence[Node],
    model: LLM,
    verifier: DefaultVerifier,
    say: Progress,
) -> list[dict[str, Any]]:
    """Every arm of every task, each distinct set of prompts answered once; cells already done are reused."""
    cells = list(done)
    with tempfile.TemporaryDirectory(prefix="dso-sharing-arms-") as scratch:
        embedder = make_embedder(config.embedder)
        for task_index, task in enumerate(settings.tasks):
            domain = domains[task]
            alone = ExperienceLibrary(Path(scratch) / f"alone-{task_index}.db", embedder)
            for e in specialists[task_index].library.all():
                if e.origin_node == "local" and e.domain == domain:
                    alone.add(e.text, domain=domain)
            arms = [Arm("none", None, ""), Arm("placebo", None), Arm("specialist", alone)]
            arms += [Arm(f"node {i}", node.library) for i, node in enumerate(honest)]
            answer_arms(
                task,
                heldout[task],
                arms,
                model,
                verifier,
                lambda instruction: placebo_settings(config, settings.max_tokens, instruction),
                cells,
                run_dir / CELLS,
                say,
            )
            alone.close()
    return cells


def summarise(cells: Sequence[dict[str, Any]], tasks_run: Sequence[str], domains: dict[str, str]) -> dict[str, Any]:
    """Per task: each arm's accuracy with its 95% interval, and each arm paired against `placebo` and, where it
    was answered, `none`; the node x task matrix of gains over the placebo."""
    tasks: list[dict[str, Any]] = []
    for task in tasks_run:
        by_arm = {arm: c for c in cells if c["task"] == task for arm in c["arms"]}
        if "placebo" not in by_arm:
            continue
        rows = []
        for arm, cell in sorted(by_arm.items(), key=lambda item: _arm_order(item[0])):
            scores = list(cell["scores"].values())
            low, high = confidence_interval(scores)
            rows.append(
                {
                    "arm": arm,
                    "accuracy": round(sum(scores) / len(scores), 4),
                    "ci95": [round(low, 4), round(high, 4)],
                    "lessons": cell["lessons"],
                    "vs_none": _paired(by_arm["none"], cell) if "none" in by_arm else None,
                    "vs_placebo": _paired(by_arm["placebo"], cell),
                }
            )
        questions = len(by_arm["placebo"]["scores"])
        tasks.append({"task": task, "domain": domains[task], "questions": questions, "arms": rows})
    nodes = sorted({str(r["arm"]) for t in tasks for r in t["arms"] if str(r["arm"]).startswith("node ")})
    matrix = {node: {str(t["task"]).split(":")[0]: _gain(t, node) for t in tasks} for node in nodes}
    return {"tasks": tasks, "gains": matrix}


def _arm_order(arm: str) -> tuple[int, str]:
    fixed = {"none": 0, "placebo": 1, "specialist": 2}
    return (fixed.get(arm, 3), arm)


def _gain(task: dict[str, Any], arm: str) -> float | None:
    accuracy = {r["arm"]: r["accuracy"] for r in task["arms"]}
    return round(accuracy[arm] - accuracy["placebo"], 4) if arm in accuracy else None


def _paired(baseline: dict[str, Any], arm: dict[str, Any]) -> dict[str, Any]:
    """The exact sign test of `arm` against `baseline` on the questions both answered."""
    return paired_scores(baseline["scores"], arm["scores"]).to_json()


def _cell(cell: dict[str, Any]) -> None:
    (str(cell["task"]), str(cell["library"]), str(cell["instruction"]), list(cell["arms"]))
    if not all(isinstance(v, (int, float)) for v in dict(cell["scores"]).values()):
        raise TypeError("scores")
