"""Problems for learning and evaluation, generated offline, with a deterministic train / held-out split.

Built-in sources: reasoning-gym tasks generated locally by seed (``gsm_symbolic``, ``basic_arithmetic``,
``family_relationships``, or any other reasoning-gym task name), ``champ`` (270 competition problems in
the champ-dataset wheel), and a JSONL file of ``{"question", "answer"}`` lines (GSM8K's ``#### 72``
answers and AIME-style integers work).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path

from dso.errors import DSOError

MATH_TASKS = {"gsm_symbolic", "basic_arithmetic", "champ", "jsonl"}


@dataclasses.dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str
    task: str  # decides the verifier: math tasks compare values, others compare the final word
    reference: str | None = None  # a worked solution, when the source has one


def _reasoning_gym(task: str, count: int, seed: int) -> list[Problem]:
    import reasoning_gym

    try:
        dataset = reasoning_gym.create_dataset(task, size=count, seed=seed)
    except (KeyError, ValueError) as exc:
        raise DSOError(f"unknown dataset {task!r}: {exc}") from None
    problems = []
    for index in range(count):
        entry = dataset[index]
        metadata = entry.get("metadata") or {}
        problems.append(
            Problem(f"{task}-{seed}-{index}", entry["question"], str(entry["answer"]), task, metadata.get("answer_cot"))
        )
    return problems


def _champ(count: int) -> list[Problem]:
    import champ_dataset

    dataset = champ_dataset.load("v0")
    problems = []
    for identifier, item in sorted(dataset.problems.items()):
        if not item.answer:
            continue
        reference = " ".join(step.text for step in item.solution.steps) if item.solution else None
        problems.append(Problem(f"champ-{identifier}", item.text, str(item.answer), "champ", reference))
    return problems[:count]


def _gsm8k_answer(text: str) -> tuple[str, str | None]:
    if "####" in text:
        reasoning, final = text.rsplit("####", 1)
        return final.strip().replace(",", ""), reasoning.strip() or None
    return text.strip(), None


def _jsonl(path: Path, count: int) -> list[Problem]:
    problems = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DSOError(f"dataset file not found: {path}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise DSOError(f"{path}:{number}: not valid JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or "answer" not in row:
            raise DSOError(f"{path}:{number}: needs a 'question' string and an 'answer'")
        answer, reference = _gsm8k_answer(str(row["answer"]))
        digest = hashlib.sha256(row["question"].encode()).hexdigest()[:12]
        problems.append(Problem(f"jsonl-{digest}", row["question"], answer, "jsonl", row.get("solution") or reference))
    if not problems:
        raise DSOError(f"{path} holds no problems")
    return problems[:count] if count else problems


def load_problems(source: str, count: int, seed: int = 0) -> list[Problem]:
    if source.endswith(".jsonl"):
        return _jsonl(Path(source), count)
    if source == "champ":
        return _champ(count)
    return _reasoning_gym(source, count, seed)


def train_heldout_split(
    source: str, train_size: int, heldout_size: int, seed: int = 0
) -> tuple[list[Problem], list[Problem]]:
    """Deterministic by seed; the two parts never share a problem (nor a question text)."""
    problems = load_problems(source, train_size + heldout_size, seed)
    unique = list({p.question: p for p in problems}.values())
    random.Random(seed).shuffle(unique)
    if len(unique) < train_size + heldout_size:
        raise DSOError(f"{source} gave {len(unique)} distinct problems; {train_size + heldout_size} requested")
    return unique[heldout_size : heldout_size + train_size], unique[:heldout_size]
