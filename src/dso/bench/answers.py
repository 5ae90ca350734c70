"""Where two held-out arms differ, read from the answers `dso eval` saved (`dso bench answers RUN_DIR`).

A library can raise accuracy by better reasoning or by answers that now mark their result where the
verifier reads it (an "ANSWER:" line). The saved answers (``eval[-seedN]-{baseline,library}.jsonl`` in the
run directory) separate the two without calling the model again: per arm, how many answers were marked and
how many of the marked ones were right; per changed question, whether the baseline's answer was unmarked.
With a second run of the same questions (``--against``), how many of them were answered differently and how
many changed score: greedy answers on parallel llama.cpp slots are not exactly repeatable, and that share of
flips is noise inside every fixed / broken count.
"""

from __future__ import annotations

import contextlib
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from dso.config import TrainConfig
from dso.core.untrusted import is_number, load_json
from dso.errors import DSOError
from dso.files import read_input
from dso.learn.evaluate import changed_questions, constant_answer, question_score
from dso.learn.extract import Rollout, shown_answer
from dso.learn.rewards import marked_answer
from dso.learn.run import heldout_questions, heldout_suffix, load_run_config
from dso.machine import machine

ARMS = ("baseline", "library")


def _run_settings(run_dir: Path) -> TrainConfig | None:
    """The run's recorded training settings, read once per report; None when they cannot be read."""
    with contextlib.suppress(DSOError, OSError, ValueError):
        return load_run_config(run_dir).train
    return None


def _suffix(settings: TrainConfig | None, heldout_seed: int | None) -> str:
    """The suffix `dso eval` gave the answer files of this held-out check (``eval-seed101-library.jsonl``); a
    run's own seed names its own split. Without the run's configuration, any seed is taken as another one."""
    run_seed = settings.seed if settings is not None and heldout_seed is not None else None
    return heldout_suffix(heldout_seed, run_seed)


def _saved(run_dir: Path, suffix: str, arm: str) -> dict[str, list[Rollout]]:
    path = run_dir / f"eval{suffix}-{arm}.jsonl"
    if not path.is_file():
        raise DSOError(f"no saved answers at {path}: run `dso eval` on this run (and held-out seed) first")
    saved: dict[str, list[Rollout]] = {}
    try:
        for number, line in enumerate(read_input(path).splitlines(), 1):
            if line.strip():
                row = Rollout.from_json(load_json(line, DSOError, f"line {number}"))
                if not (is_number(row.reward) and isinstance(row.response, str)):
                    raise DSOError(f"line {number}: a reward or a response of the wrong type")
                saved.setdefault(row.problem_id, []).append(row)
    except DSOError as exc:
        raise DSOError(f"{path} is not a file of saved answers ({exc})") from None
    except (KeyError, TypeError) as exc:
        raise DSOError(f"{path} is not a file of saved answers ({type(exc).__name__})") from None
    return saved


def _marked(group: list[Rollout]) -> bool:
    return all(marked_answer(r.response) is not None for r in group)


def answer_report(
    run_dir: Path, heldout_seed: int | None = None, top: int = 5, against: Path | None = None
) -> dict[str, Any]:
    """Per arm: answers marked, accuracy of the marked ones, the commonest answers and how often each was right;
    per changed question: fixed or broken, and whether the baseline's answer was unmarked. With `against`,
    also `repeat_report` against that run, from the answers read here."""
    settings = _run_settings(run_dir)
    suffix = _suffix(settings, heldout_seed)
    answers = {arm: _saved(run_dir, suffix, arm) for arm in ARMS}
    arms: dict[str, Any] = {}
    for arm, groups in answers.items():
        flat = [r for group in groups.values() for r in group]
        marked = [r for r in flat if marked_answer(r.response) is not None]
        shown = [(shown_answer(r.response, 40), r.reward >= 1) for r in flat]
        common = Counter(text for text, _ in shown)
        right = Counter(text for text, is_right in shown if is_right)
        arms[arm] = {
            "answers": len(flat),
            "accuracy": statistics.fmean(r.reward for r in flat) if flat else 0.0,
            "marked": len(marked),
            "accuracy_when_marked": statistics.fmean(r.reward for r in marked) if marked else None,
            # [answer, times given, times right]: an answer given to most questions and right only where the
            # majority answer is (a constant "Yes") shows a format and a prior, not the task, was learned
            "commonest_answers": [[text, count, right[text]] for text, count in common.most_common(top)],
        }
    base, lib = answers["baseline"], answers["library"]
    common_ids = sorted(base.keys() & lib.keys())
    changed = {kind: {"baseline unmarked": 0, "baseline marked": 0} for kind in ("fixed", "broken")}
    for problem_id, kind in changed_questions(base, lib).items():
        changed[kind]["baseline unmarked" if not _marked(base[problem_id]) else "baseline marked"] += 1
    report = {
        "machine": machine(),
        "run_dir": str(run_dir),
        "heldout_seed": heldout_seed,
        "questions": len(common_ids),
        "arms": arms,
        "changed": changed,
        "constant_answer": _floor(settings, heldout_seed, set(common_ids)),
    }
    if against is not None:
        report["repeat"] = repeat_report(run_dir, against, heldout_seed, saved=answers)
    return report


def repeat_report(
    run_dir: Path,
    other_dir: Path,
    heldout_seed: int | None = None,
    *,
    saved: dict[str, dict[str, list[Rollout]]] | None = None,
) -> dict[str, Any]:
    """Per arm saved in both runs: the questions both answered, how many got another response, and how many
    another score (right only in this run, right only in the other). `saved`: this run's answers per arm,
    when already read."""
    suffixes = {d: _suffix(_run_settings(d), heldout_seed) for d in (run_dir, other_dir)}
    arms: dict[str, Any] = {}
    for arm in ARMS:
        if not all((d / f"eval{suffixes[d]}-{arm}.jsonl").is_file() for d in (run_dir, other_dir)):
            continue
        here = saved[arm] if saved is not None and arm in saved else _saved(run_dir, suffixes[run_dir], arm)
        there = _saved(other_dir, suffixes[other_dir], arm)
        common = sorted(here.keys() & there.keys())
        scores = [(question_score(here[q]), question_score(there[q])) for q in common]
        arms[arm] = {
            "questions": len(common),
            "responses_differ": sum([r.response for r in here[q]] != [r.response for r in there[q]] for q in common),
            "better_here": sum(a > b for a, b in scores),
            "better_there": sum(a < b for a, b in scores),
        }
    if not arms:
        raise DSOError(f"{run_dir} and {other_dir} have no arm of saved answers in common")
    return {"against": str(other_dir), "arms": arms}


def _floor(settings: TrainConfig | None, heldout_seed: int | None, answered: set[str]) -> dict[str, Any] | None:
    """`dso eval`'s constant-answer floor for the questions answered, from the run's recorded split; None
    when the run's configuration is not there or its questions are not the ones answered."""
    if settings is None:
        return None
    try:
        problems, _ = heldout_questions(settings, heldout_seed, len(answered))
    except (DSOError, OSError, ValueError):
        return None
    asked = [p for p in problems if p.id in answered]
    floor = constant_answer(asked) if len(asked) == len(answered) else None
    return floor.to_json() if floor else None
