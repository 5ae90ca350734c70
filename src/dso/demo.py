"""The main job on embedded defaults: a small live DSO network on one machine.

A few honest nodes each learn on their own part of a task with the embedded model (Training-Free GRPO),
one Byzantine node sends prompt injections and junk and votes for itself; every node publishes signed
batches to the embedded registry and block store, the members vote, and every node pulls, verifies and
merges what the network accepted. Node 0's accuracy on held-out questions is then measured three ways,
same prompt and budget: with no experiences, with only what it learned alone, and with what it learned
plus the global library.

The network is small (the default four nodes), so one node's support is enough for a lesson to enter the
global library (`consensus.acceptance_threshold` 0.25 here): the attack shown is one the content guards
catch. Coordinated wrong advice needs the support threshold of a larger network; `dso simulate` measures
that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dso import files
from dso.config import DSOConfig
from dso.embed import make_embedder
from dso.errors import LibraryError
from dso.learn.datasets import train_heldout_split
from dso.learn.evaluate import evaluate, paired_comparison
from dso.learn.extract import Extractor
from dso.learn.prompts import PromptSet
from dso.learn.run import Hooks, make_verifier
from dso.learn.solve import SolveSettings, placebo_instruction
from dso.learn.trainer import train
from dso.library import ExperienceLibrary
from dso.llm import make_llm
from dso.network import Network, NetworkSpec, build_network
from dso.network.attacks import demo_attack
from dso.network.fedavg import BYTES_PER_PARAMETER, QWEN25_1_5B
from dso.node.reports import SyncReport

MARKER = ".dso-demo-run"  # written into every run directory the demo makes; only such a directory is replaced

DEMO_TRAIN = {
    "train.dataset": "leg_counting:min_animals=1,max_animals=2,max_instances=4",
    "train.group_size": 3,
    "train.max_tokens": 128,
    "train.max_new_per_group": 1,
    "train.contrast_batch": False,
    "consensus.acceptance_threshold": 0.25,
}


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    honest: int = 2  # learning nodes
    attackers: int = 1  # Byzantine nodes: prompt injections and junk, votes for their own side
    rounds: int = 2
    questions: int = 2  # per honest node and round
    heldout: int = 16
    every_round: bool = False  # held-out accuracy after every round, or only after the last (each costs 2 arms)
    baseline: bool = False  # also answer the held-out questions with no experiences at all


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
    hooks = hooks or Hooks()
    say = hooks.log or (lambda line: None)
    fresh_run_dir(run_dir)
    prompts = PromptSet(config.prompts)
    train_settings = dataclasses.replace(config.train, batch_size=settings.questions, epochs=1)
    total = settings.honest * settings.rounds * settings.questions
    train_set, heldout = train_heldout_split(config.train.dataset, total, settings.heldout, config.train.seed)
    solver = make_llm(config)
    verifier = make_verifier(config.train.verifier, solver)
    count = settings.honest + settings.attackers
    spec = NetworkSpec(
        nodes=count,
        members=tuple(range(count)),
        byzantine=frozenset(range(settings.honest, count)),
        colluding=True,  # the attacker votes for its own batches and against the others
        chain="embedded",
        voting_window=config.chain.voting_window,
        seed=config.train.seed,
        key_tag="dso-simulate",
        first_key=1000,
        operator=None,
    )
    network = build_network(config, run_dir, spec, embedder=make_embedder(config.embedder))
    nodes = network.nodes
    for index in range(settings.honest):
        (_run(run_dir, index) / "rollouts").mkdir(parents=True)
    attackers = nodes[settings.honest :]
    say(
        f"network: {settings.honest} learning nodes and {settings.attackers} Byzantine, all registry members, "
        f"{network.registry.address}"
    )

    rng = random.Random(config.train.seed)
    slices = [train_set[i :: settings.honest] for i in range(settings.honest)]
    extractors = [
        Extractor.from_train(solver, node.library, config.train, prompts=prompts, log=hooks.log)
        for node in nodes[: settings.honest]
    ]
    greedy = SolveSettings.from_train(
        config.train,
        seed=config.train.seed + 1,
        parallel=config.llm.parallel,
        prompt_version=prompts.versions.solver,
    )

    def accuracy(arm: str, library: ExperienceLibrary | None, instruction: str | None = None) -> tuple[Any, Any]:
        if hooks.on_stage:
            hooks.on_stage(f"held-out: {arm}", len(heldout))
        settings = greedy if instruction is None else dataclasses.replace(greedy, instruction=instruction)
        return evaluate(heldout, solver, verifier, settings, library, arm=arm, on_done=hooks.on_rollouts)

    baseline = accuracy("no experiences", None)[0].accuracy if settings.baseline else None
    rounds: list[dict[str, Any]] = []
    attack_texts: set[str] = set()
    for round_ in range(1, settings.rounds + 1):
        if hooks.on_stage:
            hooks.on_stage(f"round {round_}: {settings.honest} nodes learn", settings.honest * settings.questions)

        def learn(index: int) -> None:
            train(
                train_settings,
                _run(run_dir, index),
                slices[index],
                solver,
                extractors[index],
                verifier,
                parallel=max(1, config.llm.parallel // settings.honest),
                on_rollouts=hooks.on_rollouts,
                max_batches=1,
            )

        # the nodes learn at the same time: one node's extraction calls fill the model's slots while another's
        # attempts are sampled (each node has its own library and extractor; the model serves them all)
        with ThreadPoolExecutor(max_workers=settings.honest) as pool:
            list(pool.map(learn, range(settings.honest)))
        for attacker in attackers:
            for text in demo_attack(rng):
                attack_texts.add(text)
                with contextlib.suppress(LibraryError):  # a text the library refuses is one the attacker loses
                    attacker.library.add(text, confidence=1.0)
        say(f"round {round_}: every node publishes, the members vote, every node pulls and merges")
        summaries: dict[str, list[SyncReport]] = {node.address: [] for node in nodes}
        for reports in network.sync_round(range(count)):  # publish, vote, the epoch closes, pull
            for node, report in zip(nodes, reports, strict=True):
                summaries[node.address].append(report)
        rounds.append(_round_summary(round_, network, summaries, attack_texts))
        if not settings.every_round and round_ < settings.rounds:
            continue
        alone_library = _alone(nodes[0].library, run_dir / "node0000" / f"alone-round{round_}.db")
        alone, alone_answers = accuracy(f"round {round_}: node 0 alone", alone_library)
        merged, network_answers = accuracy(f"round {round_}: node 0 with the global library", nodes[0].library)
        rounds[-1]["accuracy"] = {"alone": alone.accuracy, "network": merged.accuracy}
        rounds[-1]["paired"] = paired_comparison(alone_answers, network_answers).to_json()
        if round_ == settings.rounds:  # the placebo, once: what a generic instruction does, no lessons at all
            placebo, placebo_answers = accuracy(
                "node 0 with the placebo instruction alone", None, placebo_instruction()
            )
            rounds[-1]["accuracy"]["placebo"] = placebo.accuracy
            rounds[-1]["paired_placebo"] = paired_comparison(placebo_answers, network_answers).to_json()
        rounds[-1]["libraries"] = {"alone": len(alone_library), "network": len(nodes[0].library)}
        alone_library.close()
        say(
            f"round {round_}: node 0 alone {alone.accuracy:.3f}, with the global library {merged.accuracy:.3f} "
            f"on {len(heldout)} held-out questions"
        )

    computed = nodes[0].global_library()
    accepted, rejected = computed.accepted, computed.rejected
    refused_votes = [
        {"node": row["node"], "reason": row["vote_reason"]}
        for row in (nodes[0].state.batch_row(b) for b in nodes[0].state.batches_in("rejected"))
        if row is not None
    ]
    lora = 2 * QWEN25_1_5B.lora_parameters() * BYTES_PER_PARAMETER
    full = 2 * QWEN25_1_5B.parameters() * BYTES_PER_PARAMETER
    result = {
        "mode": "live",
        "model": config.llm.model,
        "dataset": config.train.dataset,
        "settings": dataclasses.asdict(settings),
        "heldout": len(heldout),
        "baseline_accuracy": baseline,
        "rounds": rounds,
        "global_library": [g.to_json() for g in accepted],
        "rejected_experiences": [
            {"text": d.text, "reason": d.reason, "from_attacker": d.text in attack_texts} for d in rejected
        ],
        "rejected_batches": refused_votes,
        "attackers": [a.address for a in attackers],
        "attacker_items_accepted": sum(1 for g in accepted if g.text in attack_texts),
        "fedavg_bytes_per_node_round": {"full": full, "lora8": lora, "model": QWEN25_1_5B.name},
    }
    (run_dir / "demo.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    result["plots"] = [str(p) for p in _plots(result, run_dir)]
    network.close()
    solver_close = getattr(solver, "close", None)
    if solver_close:
        solver_close()
    return result


def _run(run_dir: Path, index: int) -> Path:
    """Where node `index` keeps its learning run (beside its library and state)."""
    return run_dir / f"node{index:04d}" / "run"


def _round_summary(
    round_: int, network: Network, summaries: dict[str, list[SyncReport]], attack: set[str]
) -> dict[str, Any]:
    figures = network.round_figures(round_, summaries, lambda g: g.text in attack)
    keep = ("batches", "global_library", "poisoned_accepted", "bytes_per_honest_node")
    summary = {"round": round_, **{key: figures[key] for key in keep}}
    summary["bytes_per_honest_node"] = {
        k: v for k, v in figures["bytes_per_honest_node"].items() if k in ("sent_median", "received_median")
    }
    return summary


def _plots(result: dict[str, Any], run_dir: Path) -> list[Path]:
    from dso.plots import accuracy_per_round, batches_per_round, bytes_per_round

    rounds = result["rounds"]
    settings = result["settings"]
    title = f"{settings['honest']} learning nodes + {settings['attackers']} Byzantine, {result['model']}"
    lora = {f"FedAvg, rank-8 LoRA of {QWEN25_1_5B.name}": result["fedavg_bytes_per_node_round"]["lora8"]}
    return [
        accuracy_per_round(result["baseline_accuracy"], result["rounds"], run_dir / "accuracy.png", title),
        bytes_per_round(rounds, run_dir / "bytes.png", title, lora),
        batches_per_round(rounds, run_dir / "batches.png", title),
    ]
