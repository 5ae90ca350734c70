"""From many nodes' submissions to one global library, identically on every node.

Pure and deterministic: the same submissions, validations and reputations give byte-identical output on
every node, whatever their order or duplication. The steps, each explained in every decision:

1. Caps and guards: at most `max_per_node` submissions per node count (the first by text hash); a text
   that breaks a size cap or a content rule (`dso.consensus.guards`) is refused whatever its support.
2. Semantic grouping (`grouping.cluster`): paraphrases are one experience, with its supporters counted
   across all wordings; one node counts once however many copies or paraphrases it sends.
3. Support, weighted by reputation: the share of established nodes' reputation behind the experience.
   Nodes without history start low and together add at most `newcomer_share_cap`, so a flood of fresh
   identities carries little weight. Submissions in batches the registry rejected do not count.
4. Evidence over claims: validators (established nodes) replay an experience on their own questions and
   report helped / hurt counts. Each validator's verdict is the sign of its net count; once
   `min_validations` have given one, the experience is vetoed when the reputation-weighted share of
   validators that saw harm is above one half by more than `evidence_z` standard errors (with the
   effective number of validators under the weights). Self-reported confidence never decides: the
   supporters' claims are combined by `confidence_rule` (median by default, robust to inflated claims).
5. Reputation: each node moves toward the share of its counted submissions that were accepted.
6. Candidates: an experience that passes every guard and is not vetoed by evidence, but whose support is
   below the threshold (the lesson only one specialist could learn), is not accepted: it is a *candidate*.
   No count can tell a lone specialist from a lone attacker, so no node merges a candidate untried: a node
   that holds questions of its domain tries it on them (`dso.node.trial`) and adopts it only when it beats
   that node's own prompt there. Candidates are ranked by support, so established reputation (lessons
   accepted before) comes first and a flood from fresh identities comes last.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from dso.config import ConsensusConfig
from dso.consensus.grouping import cluster
from dso.consensus.policy import GuardPolicy
from dso.core import robust
from dso.core.experience import normalise_text, text_key
from dso.embed.base import Vectors

BatchState = Literal["accepted", "rejected", "pending", "unknown"]
CANDIDATE = "candidate"  # how a candidate's reason starts


@dataclasses.dataclass(frozen=True)
class Submission:
    node: str
    text: str
    confidence: float
    domain: str = "general"
    round: int = 0
    batch_state: BatchState = "unknown"  # the registry's outcome for the batch that carried it


@dataclasses.dataclass(frozen=True)
class Validation:
    """A validator's replay of one text on its own questions."""

    validator: str
    text: str
    helped: int
    hurt: int


@dataclasses.dataclass(frozen=True)
class Reputation:
    value: float
    rounds: int  # rounds in which the node was active; 0 = no history


@dataclasses.dataclass(frozen=True)
class Decision:
    accepted: bool
    text: str  # the canonical wording
    wordings: tuple[str, ...]  # every distinct wording grouped with it
    domain: str
    supporters: tuple[str, ...]
    support: float  # reputation-weighted share of established nodes
    confidence: float  # the supporters' own confidences by `confidence_rule`; never decides acceptance
    evidence: dict[str, Any]  # validators, helped, hurt, median net
    guards: tuple[str, ...]  # rules the canonical text breaks
    reason: str
    # below the support threshold only, every other check passed: nodes may try it on their own questions
    candidate: bool = False

    def to_json(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["support"], row["confidence"] = _round(self.support), _round(self.confidence)
        return row


@dataclasses.dataclass(frozen=True)
class Result:
    accepted: tuple[Decision, ...]
    rejected: tuple[Decision, ...]
    dropped: tuple[dict[str, Any], ...]  # submissions not counted at all (over the per-node cap), with the cap
    reputations: dict[str, Reputation]

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": [d.to_json() for d in self.accepted],
            "rejected": [d.to_json() for d in self.rejected],
            "dropped": list(self.dropped),
            "reputations": {
                n: {"value": _round(r.value), "rounds": r.rounds} for n, r in sorted(self.reputations.items())
            },
        }

    def to_bytes(self) -> bytes:
        """The canonical encoding every node computes identically."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _round(value: float) -> float:
    return round(float(value), 6)


def combined_confidence(values: Sequence[float], rule: str) -> float:
    """One confidence from each supporter's own, by `consensus.confidence_rule` (`dso.core.robust`): the
    median or a trimmed mean (a third of the supporters at each end, rounded down) bound what inflated
    claims can do; the mean is the ablation's baseline."""
    column = np.asarray(values, dtype=np.float64)[:, None]
    method: robust.Method = "trimmed_mean" if rule == "trimmed_mean" else ("mean" if rule == "mean" else "median")
    return round(float(robust.aggregate(column, method, (len(values) - 1) // 3)[0]), 6)


def unique_texts(submissions: Sequence[Submission]) -> list[str]:
    """The normalised distinct texts, in canonical order: what the caller embeds (with its own embedder)."""
    return sorted({normalise_text(raw) for raw in {s.text for s in submissions}}, key=text_key)


def aggregate(
    submissions: Sequence[Submission],
    vectors: Mapping[str, Vectors],
    settings: ConsensusConfig,
    reputations: Mapping[str, Reputation] | None = None,
    validations: Sequence[Validation] = (),
    guards: GuardPolicy | None = None,
) -> Result:
    """Decide every submitted experience; `vectors` maps each of `unique_texts(submissions)` to its unit vector.

    `guards` is the content policy (`GuardPolicy`); None: the settings' keyword rules and caps only."""
    reputations = dict(reputations or {})
    policy = guards or GuardPolicy.from_settings(settings)
    guard = policy.text_rules

    # 1. one entry per (node, text): duplicates collapse, then the per-node cap keeps the first by text hash
    entries: dict[tuple[str, str], list[Submission]] = {}
    normalised: dict[str, str] = {}
    for submission in submissions:
        text = normalised.get(submission.text)
        if text is None:
            text = normalised[submission.text] = normalise_text(submission.text)
        entries.setdefault((submission.node, text), []).append(submission)
    by_node: dict[str, list[str]] = {}
    for node, text in entries:
        by_node.setdefault(node, []).append(text)
    counted: dict[tuple[str, str], Submission] = {}
    dropped: list[dict[str, Any]] = []
    for node, texts in sorted(by_node.items()):
        ordered = sorted(texts, key=text_key)
        for text in ordered[settings.max_per_node :]:
            dropped.append({"node": node, "text": text, "reason": f"over the cap of {settings.max_per_node} per node"})
        for text in ordered[: settings.max_per_node]:
            copies = sorted(entries[(node, text)], key=lambda s: (s.confidence, s.domain, s.batch_state, s.text))
            # the text as sent is checked too: normalisation would erase hidden characters
            raw = sorted({rule for copy in copies if copy.text != text for rule in guard(copy.text)})
            if raw:
                dropped.append({"node": node, "text": text, "reason": "guard on the text as sent: " + ", ".join(raw)})
                continue
            counted[(node, text)] = copies[len(copies) // 2]  # one deterministic representative
    # 2. guards on each distinct text, then grouping of every text
    texts = sorted({text for _, text in counted}, key=text_key)
    found = policy.findings(texts, [vectors[t] for t in texts]) if texts else []
    failed = dict(zip(texts, found, strict=True))
    by_text: dict[str, list[tuple[str, Submission]]] = {text: [] for text in texts}
    for (node, text), submission in sorted(counted.items()):
        by_text[text].append((node, submission))
    support_count = {text: len(rows) for text, rows in by_text.items()}
    groups = cluster(texts, vectors, support_count, settings.similarity_threshold)
    # 3. weights: established nodes by reputation; newcomers low and capped together
    active = sorted({node for node, _ in counted})
    bootstrap = not any(reputations.get(n, Reputation(0.0, 0)).rounds > 0 for n in active)

    def weight(node: str) -> float:
        known = reputations.get(node)
        if bootstrap:
            return 1.0
        return known.value if known and known.rounds > 0 else settings.new_node_reputation

    established = {n for n in active if bootstrap or reputations.get(n, Reputation(0.0, 0)).rounds > 0}
    total = sum(weight(n) for n in sorted(established)) or 1.0
    evidence_by_text = _evidence(validations, reputations, bootstrap)
    validator_weight = {n: weight(n) for n in {v for per in evidence_by_text.values() for v in per}}
    decisions: list[Decision] = []
    for group in groups:
        rows = [row for text in group for row in by_text[text]]
        live = [(node, s) for node, s in rows if s.batch_state != "rejected"]
        supporters = sorted({node for node, _ in live})
        old = sum(weight(n) for n in supporters if n in established)
        new = sum(weight(n) for n in supporters if n not in established)
        support = (old + min(new, settings.newcomer_share_cap * total)) / total
        per_node_conf: dict[str, list[float]] = {}
        for node, s in live:
            per_node_conf.setdefault(node, []).append(float(s.confidence))
        per_node = [statistics.median(v) for v in per_node_conf.values()]
        confidence = combined_confidence(per_node, settings.confidence_rule) if per_node else 0.0
        domains = sorted(s.domain for _, s in rows)
        domain = max(sorted(set(domains)), key=domains.count) if domains else "general"
        evidence = _group_evidence(group, evidence_by_text, validator_weight, settings.evidence_z)
        canonical = group[0]
        broken = tuple(failed[canonical])
        accepted, reason = _decide(broken, supporters, support, evidence, settings, len(established))
        candidate = not accepted and reason.startswith(CANDIDATE)
        decisions.append(
            Decision(
                accepted,
                canonical,
                tuple(group),
                domain,
                tuple(supporters),
                support,
                confidence,
                evidence,
                broken,
                reason,
                candidate,
            )
        )
    # 5. reputations move toward each node's share of accepted submissions
    accepted_texts = {text for d in decisions if d.accepted for text in d.wordings}
    updated = dict(reputations)
    mine: dict[str, list[str]] = {}
    for node, text in counted:
        mine.setdefault(node, []).append(text)
    for node in active:
        rate = sum(text in accepted_texts for text in mine[node]) / len(mine[node])
        before = reputations.get(node, Reputation(settings.new_node_reputation, 0))
        value = settings.reputation_decay * before.value + (1 - settings.reputation_decay) * rate
        updated[node] = Reputation(value, before.rounds + 1)
    order = sorted(decisions, key=lambda d: (-d.support, text_key(d.text)))
    return Result(
        tuple(d for d in order if d.accepted),
        tuple(d for d in order if not d.accepted),
        tuple(sorted(dropped, key=lambda row: (row["node"], text_key(row["text"])))),
        updated,
    )


def _evidence(
    validations: Sequence[Validation], reputations: Mapping[str, Reputation], bootstrap: bool
) -> dict[str, dict[str, tuple[int, int]]]:
    """Per text, per established validator: summed (helped, hurt). Validators without history are ignored."""
    found: dict[str, dict[str, tuple[int, int]]] = {}
    for v in validations:
        known = reputations.get(v.validator)
        if not bootstrap and not (known and known.rounds > 0):
            continue
        if v.helped < 0 or v.hurt < 0:
            continue
        text = normalise_text(v.text)
        helped, hurt = found.setdefault(text, {}).get(v.validator, (0, 0))
        found[text][v.validator] = (helped + v.helped, hurt + v.hurt)
    return found


def _group_evidence(
    group: Sequence[str],
    by_text: Mapping[str, Mapping[str, tuple[int, int]]],
    weights: Mapping[str, float],
    z: float,
) -> dict[str, Any]:
    per_validator: dict[str, tuple[int, int]] = {}
    for text in group:
        for validator, (helped, hurt) in by_text.get(text, {}).items():
            old = per_validator.get(validator, (0, 0))
            per_validator[validator] = (old[0] + helped, old[1] + hurt)
    verdicts = [(weights.get(v, 0.0), k > h) for v, (h, k) in sorted(per_validator.items()) if h != k]
    total = sum(w for w, _ in verdicts)
    harm = sum(w for w, hurt in verdicts if hurt) / total if total > 0 else 0.0
    effective = total**2 / sum(w * w for w, _ in verdicts) if total > 0 else 0.0
    bound = harm - z * math.sqrt(harm * (1 - harm) / effective) if effective > 0 else 0.0
    return {
        "validators": len(verdicts),
        "helped": sum(h for h, _ in per_validator.values()),
        "hurt": sum(k for _, k in per_validator.values()),
        "harm_share": _round(harm),
        "harm_lower_bound": _round(bound),
    }


def _decide(
    broken: tuple[str, ...],
    supporters: Sequence[str],
    support: float,
    evidence: Mapping[str, Any],
    settings: ConsensusConfig,
    established: int,
) -> tuple[bool, str]:
    if broken:
        return False, f"guard: breaks {', '.join(broken)}"
    if not supporters:
        return False, "registry: every batch carrying it was rejected"
    if evidence["validators"] >= settings.min_validations and evidence["harm_lower_bound"] > 0.5:
        return False, (
            f"evidence: {evidence['harm_share']:.0%} of validators saw harm, lower bound "
            f"{evidence['harm_lower_bound']:.2f} > 0.5 ({evidence['validators']} validators)"
        )
    if support < settings.acceptance_threshold:
        return False, (
            f"{CANDIDATE}: support {support:.3f} < {settings.acceptance_threshold:g} "
            f"({len(supporters)} supporting nodes of {established} established); a node adopts it only where "
            "its own trial shows a gain"
        )
    share = evidence["harm_share"]
    rest = f", {share:.0%} of {evidence['validators']} validators saw harm" if evidence["validators"] else ""
    return True, f"support {support:.3f} >= {settings.acceptance_threshold:g} ({len(supporters)} nodes){rest}"
