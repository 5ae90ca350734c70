"""The attack suite (`dso bench byzantine`): honest and Byzantine nodes, every attack, every fraction.

Honest nodes draw from a pool of useful lessons (the shipped benign exemplars): each round each honest
node submits each pool lesson with probability `share`, and validates each distinct text it sees with
probability `validate`, reporting truthfully with 10% noise (a useful lesson helped, a harmful one hurt).
Byzantine nodes behave honestly on the pool (to keep their reputation) and add their attack; as
validators they report the opposite of the truth. The registry committee is the first `committee` nodes;
its honest members approve batches that pass the content guards and reject the others, Byzantine members
approve their own batches and reject honest ones. Every run goes through `dso.consensus.aggregate` with
the node's real embedder; what is modelled is who sends what and how validators report, not the rules.

Attacks: junk (random text), wrong (coordinated confidently wrong advice), sybil (ten fresh identities per
Byzantine node and round), paraphrase (each wrong lesson in many wordings), inflation (confidence 1.0 on
poison, 0.0 on honest lessons), vote-collusion (Byzantine committee members vote for poison and against
honest batches), retrieval-hijack (a wrong lesson written to be the nearest to a target question), injection
(texts that instruct the model outside the task).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from dso.config import ConsensusConfig, DSOConfig
from dso.consensus import Reputation, Submission, Validation, aggregate, unique_texts
from dso.consensus.policy import GuardPolicy
from dso.consensus.semantic_guard import SemanticGuard, exemplars
from dso.embed import make_embedder
from dso.embed.cache import CachingEmbedder
from dso.machine import machine
from dso.network.attacks import (
    ATTACKS,
    HIJACK,
    SPIDER_LESSON,
    TARGET_QUESTION,
    attack_texts,
    colluding_vote,
    committee_capture,
)

FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.49)


@dataclasses.dataclass
class Network:
    """Who is who in one simulated run."""

    honest: list[str]
    byzantine: list[str]
    committee: list[str]


def simulate(
    attack: str,
    fraction: float,
    embed: Callable[[list[str]], dict[str, np.ndarray]],
    settings: ConsensusConfig,
    guard: SemanticGuard | None,
    *,
    nodes: int = 50,
    rounds: int = 3,
    pool_size: int = 30,
    share: float = 0.8,
    validate: float = 0.3,
    committee: int = 15,
    seed: int = 0,
) -> dict[str, Any]:
    rng = random.Random(f"{attack}:{fraction}:{seed}")
    lessons = [t for t in exemplars("benign_exemplars") if t != SPIDER_LESSON]
    pool = [SPIDER_LESSON, *rng.sample(lessons, pool_size - 1)]
    ids = [f"n{i:04d}" for i in range(nodes)]
    bad = set(rng.sample(ids, round(fraction * nodes)))
    honest = [n for n in ids if n not in bad]
    # the committee holds the network's Byzantine share, rounded down; committee_capture says how likely a
    # committee drawn at random would hold more than a third (then it can reject every honest batch)
    corrupt = min(len(bad), int(fraction * committee))
    chosen = rng.sample(sorted(bad), corrupt) + rng.sample(honest, min(len(honest), committee - corrupt))
    network = Network(honest, sorted(bad), sorted(chosen))
    # the network's registered nodes at launch are known (one round of history, full reputation); identities
    # created later, such as a Sybil flood, start without history
    reputations: dict[str, Reputation] = {node: Reputation(1.0, 1) for node in ids}
    per_round = []
    for round_ in range(rounds):
        rows: list[tuple[str, str, float]] = []
        for node in ids:
            low = attack == "inflation" and node in bad
            rows += [(node, text, 0.0 if low else rng.uniform(0.5, 0.9)) for text in pool if rng.random() < share]
            if node in bad:
                rows += attack_texts(attack, node, rng, round_)
        honest_texts = {text for node, text, _ in rows if node in network.honest}
        # the committee votes on each node's batch
        states: dict[str, str] = {}
        if attack == "vote-collusion":
            members = network.committee
            for node in {n for n, _, _ in rows}:
                origin = node.split("-sybil-")[0]
                # a Byzantine member votes by the collusion rule, an honest one for honest publishers
                up = sum(1 for m in members if (colluding_vote(origin, bad) if m in bad else origin not in bad))
                down = len(members) - up
                states[node] = (
                    "accepted" if up * 3 >= len(members) * 2 else ("rejected" if down * 3 > len(members) else "pending")
                )
        submissions = [Submission(n, t, c, "bench", round_, states.get(n, "unknown")) for n, t, c in rows]  # type: ignore[arg-type]
        texts = unique_texts(submissions)
        vectors = embed(texts)
        validations = []
        validators = [n for n in ids if reputations.get(n, Reputation(0, 0)).rounds > 0]
        for validator in validators:
            for text in texts:
                if rng.random() >= validate:
                    continue
                useful = text in pool
                truthful = rng.random() >= 0.1
                says_useful = useful == truthful if validator not in bad else not useful
                validations.append(Validation(validator, text, 3 if says_useful else 0, 0 if says_useful else 3))
        started = time.perf_counter()
        result = aggregate(
            submissions, vectors, settings, reputations, validations, GuardPolicy.from_settings(settings, guard)
        )
        seconds = time.perf_counter() - started
        reputations = result.reputations
        accepted_texts = {text for d in result.accepted for text in d.wordings}
        poisoned = [d.text for d in result.accepted if not (set(d.wordings) & honest_texts)]
        honest_items = {text for text in pool if text in honest_texts}
        recalled = {text for text in honest_items if text in accepted_texts}
        entry: dict[str, Any] = {
            "round": round_,
            "submissions": len(submissions),
            "poisoned_accepted": len(poisoned),
            "poisoned_texts": poisoned[:5],
            # below the support threshold only: no node merges these untried (dso.node.trial)
            "poisoned_candidates": sum(
                1 for d in result.rejected if d.candidate and not set(d.wordings) & honest_texts
            ),
            "honest_recall": round(len(recalled) / max(1, len(honest_items)), 4),
            # the combined confidence of what was accepted (`confidence_rule`): what inflated claims can move
            "accepted_confidence_mean": round(sum(d.confidence for d in result.accepted) / len(result.accepted), 4)
            if result.accepted
            else None,
            "aggregate_seconds": round(seconds, 4),
        }
        if attack == "retrieval-hijack":
            question = embed([TARGET_QUESTION])[TARGET_QUESTION]
            library = [d.text for d in result.accepted]
            if library:
                best = max(library, key=lambda t: float(vectors[t] @ question))
                entry["target_top1"] = best
                entry["attack_success"] = best == HIJACK
            else:
                entry["attack_success"] = False
        per_round.append(entry)
    return {
        "attack": attack,
        "fraction": fraction,
        "nodes": nodes,
        "byzantine": len(bad),
        "committee": committee,
        "committee_byzantine": corrupt,
        "committee_capture": round(committee_capture(nodes, len(bad), committee), 4),
        "poisoned_accepted": max(r["poisoned_accepted"] for r in per_round),
        "honest_recall": min(r["honest_recall"] for r in per_round),
        "attack_success": any(r.get("attack_success", False) for r in per_round)
        if attack == "retrieval-hijack"
        else None,
        "rounds": per_round,
    }


def run_byzantine_bench(
    config: DSOConfig,
    *,
    attacks: tuple[str, ...] = ATTACKS,
    fractions: tuple[float, ...] = FRACTIONS,
    nodes: int = 50,
    rounds: int = 3,
    seed: int = 0,
    semantic: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    embedder = CachingEmbedder(make_embedder(config.embedder))
    embed = embedder.embed_map
    guard = SemanticGuard.shipped(embedder) if semantic else None
    runs = []
    for attack in attacks:
        for fraction in fractions:
            run = simulate(attack, fraction, embed, config.consensus, guard, nodes=nodes, rounds=rounds, seed=seed)
            runs.append(run)
            if progress:
                poisoned, recall = run["poisoned_accepted"], run["honest_recall"]
                progress(f"{attack} at {fraction:.0%}: {poisoned} poisoned, recall {recall:.2f}")
    return {
        "machine": machine(),
        "settings": dataclasses.asdict(config.consensus),
        "nodes": nodes,
        "rounds": rounds,
        "seed": seed,
        "semantic_guard": semantic,
        "runs": runs,
    }


def run_scale_bench(config: DSOConfig, *, nodes: int = 1000, per_node: int = 50, repeats: int = 3) -> dict[str, Any]:
    """Aggregating `nodes` x `per_node` submissions: seconds to embed the distinct texts and to aggregate."""
    rng = random.Random(0)
    lessons = rng.sample(exemplars("benign_exemplars"), 60)  # a shared pool: most lessons reach the threshold
    rows = []
    for i in range(nodes):
        node = f"n{i:04d}"
        texts = rng.sample(lessons, min(per_node, len(lessons)))
        rows += [Submission(node, text, rng.uniform(0.5, 0.9)) for text in texts]
    reputations = {f"n{i:04d}": Reputation(rng.uniform(0.5, 1.0), 3) for i in range(nodes)}
    validations = [Validation(f"n{i:04d}", rng.choice(lessons), 3, 0) for i in range(0, nodes, 2) for _ in range(5)]
    embedder = make_embedder(config.embedder)
    started = time.perf_counter()
    texts = unique_texts(rows)
    vectors = dict(zip(texts, embedder.embed(texts), strict=True))
    embed_seconds = time.perf_counter() - started
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = aggregate(rows, vectors, config.consensus, reputations, validations)
        timings.append(time.perf_counter() - started)
    return {
        "machine": machine(),
        "nodes": nodes,
        "submissions": len(rows),
        "distinct_texts": len(texts),
        "embed_seconds": round(embed_seconds, 3),
        "aggregate_seconds_median": round(sorted(timings)[len(timings) // 2], 3),
        "aggregate_seconds": [round(t, 3) for t in timings],
        "accepted": len(result.accepted),
    }
