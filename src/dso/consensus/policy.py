"""The guard policy: which content checks a text must pass, the same for a member's vote and for a merge.

One object decides both, so the two cannot drift: the keyword rules and size caps of `consensus.guard_rules`
/ `max_words` / `max_bytes`, and the semantic guard when `consensus.semantic_guard` is on. Pure: the
caller embeds the texts with its own embedder and hands the vectors in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from dso.config import ConsensusConfig
from dso.consensus.guards import RULE_NAMES, check_text
from dso.consensus.semantic_guard import NAME as SEMANTIC_GUARD
from dso.consensus.semantic_guard import SemanticGuard
from dso.embed.base import Embedder, Vectors
from dso.errors import ConfigError


def guard_rules(spec: str) -> tuple[str, ...]:
    """The rule names a `consensus.guard_rules` setting selects."""
    if spec.strip() == "all":
        return RULE_NAMES
    if spec.strip() in ("", "none"):
        return ()
    names = tuple(name.strip() for name in spec.split(",") if name.strip())
    unknown = [name for name in names if name not in RULE_NAMES]
    if unknown:
        raise ConfigError(f"consensus.guard_rules: unknown rules {unknown}; known: {', '.join(RULE_NAMES)}")
    return names


@dataclasses.dataclass(frozen=True)
class GuardPolicy:
    rules: tuple[str, ...]
    max_words: int
    max_bytes: int
    semantic: SemanticGuard | None = None

    @classmethod
    def from_settings(cls, settings: ConsensusConfig, semantic: SemanticGuard | None = None) -> GuardPolicy:
        return cls(guard_rules(settings.guard_rules), settings.max_words, settings.max_bytes, semantic)

    @classmethod
    def for_embedder(cls, settings: ConsensusConfig, embedder: Embedder) -> GuardPolicy:
        """The policy a node runs: the semantic guard over `embedder` when the settings turn it on."""
        semantic = SemanticGuard.shipped(embedder) if settings.semantic_guard else None
        return cls.from_settings(settings, semantic)

    def text_rules(self, text: str) -> list[str]:
        """The keyword rules and size caps `text` breaks ([] = none)."""
        return check_text(text, max_words=self.max_words, max_bytes=self.max_bytes, rules=self.rules)

    def findings(self, texts: Sequence[str], vectors: Vectors | Sequence[Vectors]) -> list[list[str]]:
        """Per text, every rule it breaks, the semantic guard last; `vectors` are the texts' unit vectors."""
        found = [self.text_rules(text) for text in texts]
        if self.semantic is not None and len(texts):
            for broken, flagged in zip(found, self.semantic.flags(vectors), strict=True):
                if flagged:
                    broken.append(SEMANTIC_GUARD)
        return found
