"""The main job on embedded defaults: a small live DSO network on one machine, asking whether a node gains
from lessons it never learned (measured: bench/results/demo.json).

- **node 0** learns one task live (chain sums, Training-Free GRPO with the embedded model) and has never
  seen a question of the other task (leg counting);
- **node 1** is a leg-counting specialist: it replays hand-written lessons of facts (`SPECIALIST_LESSONS`;
  the summary says so), as a node that had learned them would publish them;
- **node 2** is Byzantine: in round 1 it posts wrong advice dressed as a specialist's lesson (a wrong leg
  count, which no content guard can call wrong), in round 2 prompt injections and junk, and it votes for its
  own batches and against the others'.

Every node publishes signed batches to the embedded registry and block store, the members vote, and every node
pulls, checks and merges what the network accepted. A lesson only one node supports is a *candidate*; node 0
holds leg-counting questions of its own (validation, apart from the held-out ones), so after round 1 it tries
the candidates of that kind on them (`dso.node.trial`: the lesson gate against the placebo-carrying prompt),
adopts what gains there and vouches for it in the next round, which makes it accepted for everybody. A
candidate whose counts favour it without passing yet is tried again after that round on new questions, its
counts adding up, for at most `network.trial_looks` looks. Node 0 is then
measured on held-out leg-counting questions, same prompt and budget, greedy: the placebo instruction alone,
node 0 alone (its own lessons) and node 0 with the network; paired sign tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from dso import files
from dso.bench.tips import TIPS
from dso.config import DSOConfig
from dso.embed import make_embedder
from dso.errors import ConfigError, LibraryError
from dso.learn.datasets import QuestionDraws, train_heldout_split
from dso.learn.extract import Extractor
from dso.learn.prompts import PromptSet
from dso.learn.rewards import DefaultVerifier
from dso.learn.run import Hooks, make_verifier
from dso.learn.trainer import train
from dso.library import ExperienceLibrary
from dso.llm import make_llm
from dso.llm.base import CountingLLM
from dso.network import Network, NetworkSpec, build_network
from dso.network.attacks import demo_attack, specialist_lie
from dso.network.fedavg import BYTES_PER_PARAMETER, QWEN25_1_5B
from dso.node import GateTrial, TrialVerdict
from dso.node.reports import SyncReport
from dso.sharing import LEGS, Arm, answer_arms, placebo_settings, summarise

MARKER = ".dso-demo-run"  # written into every run directory the demo makes; only such a directory is replaced

DEMO_TRAIN = {  # node 0's live learning: short answers keep it to a minute or two on 2 cores
    "train.dataset": "chain_sum",
    "train.group_size": 3,
    "train.max_tokens": 128,
    "train.max_new_per_group": 1,
    "train.contrast_batch": False,
}
SPECIALIST_TASK = LEGS
# The hand-written leg-counting tips of `dso bench tips` (facts about the animals the 1.5B model miscounts):
# together they beat the placebo by 12 fixed / 1 broken of 40 on the content seed (`bench/placebo.sh content`).
# Pressed into one 32-word line they did not (3 / 4): the specialist replays them as they were measured.
SPECIALIST_LESSONS = tuple(TIPS["leg_counting"])


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    questions: int = 4  # node 0's training questions (one learning batch)
    heldout: int = 30  # leg-counting questions per arm: the tips' 12 fixed / 1 broken of 40 would be ~9 / 1 here
    validation: int = 24  # node 0's own leg-counting questions, for its trial of the candidates
    heldout_seed: int = 9390  # kept for the demo: no run, probe or choice draws it
    validation_seed: int = 9391
    max_tokens: int = 256  # leg-counting answers under the placebo run to ~130 tokens
    baseline: bool = False  # also the bare prompt (no instruction, no lessons)

    def check(self) -> None:
        for name, value, high in (
            ("questions", self.questions, 50),
            ("heldout", self.heldout, 1000),
            ("validation", self.validation, 1000),
        ):
            if not 1 <= value <= high:
                raise ConfigError(f"{name} must lie in [1, {high}]")
        if not 16 <= self.max_tokens <= 4096:
            raise ConfigError("max_tokens must lie in [16, 4096]")


def fresh_run_dir(run_dir: Path) -> None:
    """The demo's run folder: replaced only if the demo made it or it is empty (`dso.files.fresh_run_dir`)."""
    files.fresh_run_dir(run_dir, MARKER, "dso demo")


def _alone(library: ExperienceLibrary, path: Path) -> ExperienceLibrary:
    """A copy of a node's library holding only what it learned itself."""
    copy = library.copy_to(path)
    for experience in copy.all():
        if experience.origin_node != "local":
            copy.delete(experience.id)
    return copy


def run_demo(
    config: DSOConfig, run_dir: Path, hooks: Hooks | None = None, settings: DemoSettings = DemoSettings()
) -> dict[str, Any]:
    settings.check()
    started = time.monotonic()
    hooks = hooks or Hooks()
    say = hooks.log or (lambda line: None)
    fresh_run_dir(run_dir)
    prompts = PromptSet(config.prompts)
    train_settings = dataclasses.replace(config.train, batch_size=settings.questions, epochs=1)
    train_set, _ = train_heldout_split(config.train.dataset, settings.questions, 0, config.train.seed)
    _, heldout = train_heldout_split(SPECIALIST_TASK, 0, settings.heldout, seed=settings.heldout_seed)
    # node 0's own leg-counting questions: one fresh draw per look of its trial, none of them held out
    draws = QuestionDraws(SPECIALIST_TASK, settings.validation, settings.validation_seed, {p.question for p in heldout})
    domain = heldout[0].task
    solver = make_llm(config)
    verifier = make_verifier(config.train.verifier, solver)
    spec = NetworkSpec(
        nodes=3,
        members=(0, 1, 2),
        byzantine=frozenset({2}),
        colluding=True,  # the attacker votes for its own batches and against the others
        chain="embedded",
        voting_window=config.chain.voting_window,
        seed=config.train.seed,
        key_tag="dso-simulate",
        first_key=1000,
        operator=None,
    )
    network = build_network(config, run_dir, spec, embedder=make_embedder(config.embedder))
    learner, specialist, attacker = network.nodes
    (_run(run_dir) / "rollouts").mkdir(parents=True)
    say(f"network: a learner, a specialist and a Byzantine node, all registry members, {network.registry.address}")
    for text in SPECIALIST_LESSONS:
        specialist.library.add(text, confidence=1.0, domain=domain)
    lie = specialist_lie(attacker.address, 1)
    attacker.library.add(lie, confidence=1.0, domain=domain)
    attack_texts = {lie}

    if hooks.on_stage:
        hooks.on_stage(f"node 0 learns {config.train.dataset.split(':')[0]}", settings.questions)
    extractor = Extractor.from_train(solver, learner.library, config.train, prompts=prompts, log=hooks.log)
    train(
        train_settings,
        _run(run_dir),
        train_set,
        solver,
        extractor,
        verifier,
        parallel=config.llm.parallel,
        on_rollouts=hooks.on_rollouts,
        max_batches=1,
    )
    rounds: list[dict[str, Any]] = []
    say("round 1: every node publishes, the members vote, every node pulls and merges")
    rounds.append(_sync_round(1, network, attack_texts))

    answer = placebo_settings(config, settings.max_tokens)
    looks = config.network.trial_looks
    counted = CountingLLM(solver)  # what node 0's trials cost it: its share of the network's work, in tokens
    trial = GateTrial(domain, draws, lambda: counted, lambda _: DefaultVerifier(), answer, config.train.gate_p, looks)
    trial_started = time.monotonic()
    verdicts: list[TrialVerdict] = []
    for look in range(1, looks + 1):  # a look after each round while a candidate is pending
        if hooks.on_stage:
            hooks.on_stage(
                f"node 0 tries candidates on {settings.validation} new leg-counting questions", settings.validation
            )
        tried = learner.try_candidates(trial)
        verdicts += tried.tried
        for verdict in tried.tried:
            outcome = "adopted" if verdict.adopted else ("pending" if verdict.pending else "refused")
            say(
                f"node 0, look {verdict.looks}: {verdict.text[:60]!r}: {verdict.fixed} fixed / {verdict.broken} "
                f"broken on {verdict.questions} questions so far, {outcome}"
            )
        if look == 1:
            for text in demo_attack(random.Random(config.train.seed)):
                attack_texts.add(text)
                with contextlib.suppress(LibraryError):  # a text the library refuses is one the attacker loses
                    attacker.library.add(text, confidence=1.0)
        say(
            f"round {look + 1}: node 0 vouches for what it adopted"
            + ("; the attacker sends injections and junk" if look == 1 else "")
        )
        rounds.append(_sync_round(look + 1, network, attack_texts))
        if not any(v.pending for v in tried.tried):
            break
    trial_cost = {**counted.counts(), "seconds": round(time.monotonic() - trial_started, 1)}  # rounds included

    cells: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dso-demo-") as scratch:
        alone = _alone(learner.library, Path(scratch) / "alone.db")
        arms = [Arm("none", None, "")] if settings.baseline else []
        arms += [Arm("placebo", None), Arm("node 0 alone", alone), Arm("node 0 with the network", learner.library)]

        def stage(line: str) -> None:
            say(line)
            if hooks.on_stage:
                hooks.on_stage(line, len(heldout))

        answer_arms(
            SPECIALIST_TASK,
            heldout,
            arms,
            solver,
            DefaultVerifier(),
            lambda instruction: placebo_settings(config, settings.max_tokens, instruction),
            cells,
            run_dir / "cells.jsonl",
            stage,
            on_done=hooks.on_rollouts,
        )
        alone.close()
    evaluation = summarise(cells, (SPECIALIST_TASK,), {SPECIALIST_TASK: domain})
    computed = learner.global_library()
    lora = 2 * QWEN25_1_5B.lora_parameters() * BYTES_PER_PARAMETER
    full = 2 * QWEN25_1_5B.parameters() * BYTES_PER_PARAMETER
    refused_votes = [
        {"node": row["node"], "reason": row["vote_reason"]}
        for row in (learner.state.batch_row(b) for b in learner.state.batches_in("rejected"))
        if row is not None
    ]
    result = {
        "mode": "live",
        "model": config.llm.model,
        "learned": config.train.dataset,
        "untrained_task": SPECIALIST_TASK,
        "specialist_lessons": {"texts": list(SPECIALIST_LESSONS), "source": "hand-written, replayed by node 1"},
        "settings": dataclasses.asdict(settings),
        "own_lessons": [e.text for e in learner.library.all() if e.origin_node == "local"],
        "trials": [v.to_json() for v in verdicts],  # one per candidate and look, counts adding up
        "trial_cost": trial_cost,
        "rounds": rounds,
        "evaluation": evaluation["tasks"][0] if evaluation["tasks"] else None,
        "global_library": [g.to_json() for g in computed.accepted],
        "candidates": [g.to_json() for g in computed.candidates],
        "rejected_experiences": [
            {"text": d.text, "reason": d.reason, "from_attacker": d.text in attack_texts}
            for d in computed.rejected
            if not d.candidate
        ],
        "rejected_batches": refused_votes,
        "attackers": [attacker.address],
        "attacker_items_accepted": sum(1 for g in computed.accepted if g.text in attack_texts),
        "attacker_items_adopted": sum(1 for e in learner.library.all() if e.text in attack_texts),
        "fedavg_bytes_per_node_round": {"full": full, "lora8": lora, "model": QWEN25_1_5B.name},
        "seconds": round(time.monotonic() - started, 1),
    }
    (run_dir / "demo.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    result["plots"] = [str(p) for p in _plots(result, evaluation, run_dir)]
    network.close()
    solver_close = getattr(solver, "close", None)
    if solver_close:
        solver_close()
    return result


def _run(run_dir: Path) -> Path:
    """Where node 0 keeps its learning run (beside its library and state)."""
    return run_dir / "node0000" / "run"


def _sync_round(round_: int, network: Network, attack: set[str]) -> dict[str, Any]:
    """One round of publish, vote, close, pull for every node, and what it did seen from node 0."""
    summaries: dict[str, list[SyncReport]] = {node.address: [] for node in network.nodes}
    for reports in network.sync_round(range(len(network.nodes))):
        for node, report in zip(network.nodes, reports, strict=True):
            summaries[node.address].append(report)
    figures = network.round_figures(round_, summaries, lambda g: g.text in attack)
    keep = ("batches", "global_library", "poisoned_accepted")
    summary = {"round": round_, **{key: figures[key] for key in keep}}
    summary["bytes_per_honest_node"] = {
        k: v for k, v in figures["bytes_per_honest_node"].items() if k in ("sent_median", "received_median")
    }
    return summary


def _plots(result: dict[str, Any], evaluation: dict[str, Any], run_dir: Path) -> list[Path]:
    from dso.plots import batches_per_round, bytes_per_round, sharing_accuracy

    title = f"a learner, a specialist and a Byzantine node, {result['model']}"
    lora = {f"FedAvg, rank-8 LoRA of {QWEN25_1_5B.name}": result["fedavg_bytes_per_node_round"]["lora8"]}
    rounds = result["rounds"]
    return [
        sharing_accuracy(evaluation, run_dir / "accuracy.png"),
        bytes_per_round(rounds, run_dir / "bytes.png", title, lora),
        batches_per_round(rounds, run_dir / "batches.png", title),
    ]
