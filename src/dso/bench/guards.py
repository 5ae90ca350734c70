"""Guard accuracy (`dso bench guards`): false positives on lessons, detection of attacks, in and out of sample.

In sample: the shipped exemplar sets (218 lessons: the project's learned libraries and hand-written tips;
115 attacks). The keyword rules were written while looking at them, so their figures there are optimistic;
the semantic guard is scored leave-one-out (each text without itself among the exemplars). Held out, each
set scored once for the guards as they stood when it was written:
- `heldout` (tests/data/*_heldout.txt): written after both guards were fixed (2026-11-27);
- `heldout2` (tests/data/*_heldout2.txt, 2026-12-07): 30 attacks dressed as lessons in four families the
  live node must stop (answer forcing, output-format hijack, exfiltration, instruction override), written
  before any guard change; the lessons are every learned lesson of the committed libraries
  (`bench/results/learning-*.library.json`) that is in neither the exemplars nor the first held-out set;
- `heldout3` (2026-12-07): 30 attacks in the same four families and 15 lessons (several about the answer
  line and its form, the lessons a format rule could wrongly refuse), written after the answer-forcing and
  format-hijack rules were widened on `attack_texts_dev3.txt` and scored once with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dso.config import DSOConfig
from dso.consensus.guards import check_text
from dso.consensus.semantic_guard import DEFAULT_K, DEFAULT_MARGIN, exemplars
from dso.embed import make_embedder
from dso.machine import machine

HELD_OUT = Path("tests/data")
HELD_OUT_SETS = ("heldout", "heldout2", "heldout3")


def _rate(flags: npt.NDArray[np.bool_] | list[bool]) -> dict[str, Any]:
    values = np.asarray(flags, dtype=bool)
    return {
        "flagged": int(values.sum()),
        "of": len(values),
        "rate": round(float(values.mean()), 4) if len(values) else 0.0,
    }


def _knn(
    vectors: npt.NDArray[np.float32], reference: npt.NDArray[np.float32], k: int, exclude_self: bool
) -> npt.NDArray[np.float64]:
    scores = vectors @ reference.T
    if exclude_self:
        np.fill_diagonal(scores, -1.0)
    result: npt.NDArray[np.float64] = np.sort(scores, axis=1)[:, -k:].mean(axis=1).astype(np.float64)
    return result


def run_guard_bench(
    config: DSOConfig,
    held_out: Path = HELD_OUT,
    margin: float = DEFAULT_MARGIN,
    k: int = DEFAULT_K,
    held_out_set: str = "heldout",
) -> dict[str, Any]:
    embedder = make_embedder(config.embedder)
    settings = config.consensus
    attacks, lessons = exemplars("attack_exemplars"), exemplars("benign_exemplars")
    va, vl = embedder.embed(attacks), embedder.embed(lessons)

    def rules(texts: list[str]) -> list[bool]:
        return [bool(check_text(t, max_words=settings.max_words, max_bytes=settings.max_bytes)) for t in texts]

    semantic_attacks = (_knn(va, va, k, True) - _knn(va, vl, k, False)) > margin
    semantic_lessons = (_knn(vl, va, k, False) - _knn(vl, vl, k, True)) > margin
    rule_attacks, rule_lessons = np.array(rules(attacks)), np.array(rules(lessons))
    result: dict[str, Any] = {
        "machine": machine(),
        "embedder": embedder.identity,
        "k": k,
        "margin": margin,
        "in_sample": {
            "rules": {"detection": _rate(rule_attacks), "false_positives": _rate(rule_lessons)},
            "semantic_leave_one_out": {
                "detection": _rate(semantic_attacks),
                "false_positives": _rate(semantic_lessons),
            },
            "combined": {
                "detection": _rate(rule_attacks | semantic_attacks),
                "false_positives": _rate(rule_lessons | semantic_lessons),
            },
        },
    }
    files = {
        "attacks": held_out / f"attack_texts_{held_out_set}.txt",
        "lessons": held_out / f"benign_experiences_{held_out_set}.txt",
    }
    result["held_out_set"] = held_out_set
    if all(path.is_file() for path in files.values()):
        texts = {
            name: [line for line in path.read_text(encoding="utf-8").split("\n") if line]
            for name, path in files.items()
        }
        flags: dict[str, dict[str, npt.NDArray[np.bool_]]] = {}
        for name, items in texts.items():
            vectors = embedder.embed(items)
            semantic = (_knn(vectors, va, k, False) - _knn(vectors, vl, k, False)) > margin
            flags[name] = {"rules": np.array(rules(items)), "semantic": semantic}
            flags[name]["combined"] = flags[name]["rules"] | semantic
        result["held_out"] = {
            guard: {"detection": _rate(flags["attacks"][guard]), "false_positives": _rate(flags["lessons"][guard])}
            for guard in ("rules", "semantic", "combined")
        }
        result["held_out_missed"] = [
            t for t, hit in zip(texts["attacks"], flags["attacks"]["combined"], strict=True) if not hit
        ]
        result["held_out_false_positives"] = [
            t for t, hit in zip(texts["lessons"], flags["lessons"]["combined"], strict=True) if hit
        ]
    return result
