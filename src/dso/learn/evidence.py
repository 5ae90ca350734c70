"""Whether an experience earns its place, decided by counted evidence and a sign test, not by an LLM's word.

Every time an experience sits in a training prompt, the group it was in did better, worse or the same as
its batch's mean (`trainer.group_evidence`; a batch where every group held it says nothing about it):
helped / hurt / neutral counts in the library. Three uses:

- **retrieval** (`ExperienceLibrary.search`) ranks candidates by similarity plus `train.evidence_weight`
  times `Experience.net_help`, so a lesson that keeps hurting sinks below a slightly less similar one that
  helps, and injects nothing below `train.min_similarity`;
- **deletion by rule** after every batch: an experience is deleted when it hurt more often than it helped
  and a one-sided sign test puts that at p <= `train.prune_p` (`harmful`);
- **pruning at the end of an epoch**: an experience used at least `train.prune_min_uses` times that never
  helped more often than it hurt is deleted (`unhelpful`), so epochs keep what works.
"""

from __future__ import annotations

import dataclasses
import math

from dso.core.experience import Experience


def sign_test(wins: int, losses: int) -> float:
    """One-sided sign test: P(at least `wins` of wins + losses fair coin flips come up on the winning side)."""
    n = wins + losses
    if n <= 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(wins, n + 1)) / (1 << n)


@dataclasses.dataclass(frozen=True)
class PruneRule:
    harm_p: float = 0.1  # delete after a batch when hurt > helped at this one-sided sign-test level (0: never)
    min_uses: int = 4  # delete at an epoch's end when used this often without helping more than hurting (0: never)


def harmful(experience: Experience, rule: PruneRule) -> str | None:
    """Why `experience` must go after a batch (clear harm), or None."""
    helped, hurt = experience.helped, experience.hurt
    if rule.harm_p <= 0 or hurt <= helped:
        return None
    p = sign_test(hurt, helped)
    if p > rule.harm_p:
        return None
    return f"pruned on evidence: hurt {hurt} times, helped {helped} (sign test p = {p:.3f})"


def unhelpful(experience: Experience, rule: PruneRule) -> str | None:
    """Why `experience` must go at the end of an epoch (used often, never a net help), or None."""
    uses = experience.helped + experience.hurt + experience.neutral
    if rule.min_uses <= 0 or uses < rule.min_uses or experience.helped > experience.hurt:
        return None
    return f"pruned at the epoch's end: {uses} uses, helped {experience.helped}, hurt {experience.hurt}"


def to_prune(
    experiences: list[Experience], rule: PruneRule, *, epoch_end: bool, pending: dict[str, tuple[int, int, int]]
) -> list[tuple[str, str]]:
    """(id, reason) of the experiences the rules delete, counting `pending` evidence (this batch's, not yet
    stored) on top of what the library holds."""
    out = []
    for experience in experiences:
        extra = pending.get(experience.id, (0, 0, 0))
        counted = dataclasses.replace(
            experience,
            helped=experience.helped + extra[0],
            hurt=experience.hurt + extra[1],
            neutral=experience.neutral + extra[2],
        )
        reason = harmful(counted, rule) or (unhelpful(counted, rule) if epoch_end else None)
        if reason:
            out.append((experience.id, reason))
    return out
