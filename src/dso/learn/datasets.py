"""Problems for learning and evaluation, generated offline, with a deterministic train / held-out split.

Built-in sources: reasoning-gym tasks generated locally by seed (``gsm_symbolic``, ``basic_arithmetic``,
``family_relationships``, or any other reasoning-gym task name, with generator parameters as
``leg_counting:max_animals=4``), ``champ`` (270 competition problems in
the champ-dataset wheel), and a JSONL file of ``{"question", "answer"}`` lines (GSM8K's ``#### 72``
answers and AIME-style integers work).
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import hashlib
import random
import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from dso.core.untrusted import load_json
from dso.errors import DSOError
from dso.files import read_input

MATH_TASKS = {"gsm_symbolic", "basic_arithmetic", "champ", "jsonl"}
COMPLEX_TASKS = {"complex_arithmetic"}  # answers are complex numbers: "-15.0 + 3.0i"
POLYNOMIAL_TASKS = {"simple_integration", "polynomial_multiplication"}  # one-variable polynomials: "9*x**4/2 + C"


@dataclasses.dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str
    task: str  # decides the verifier: math tasks compare values, others compare the final word
    reference: str | None = None  # a worked solution, when the source has one


def _leg_counting_reference(metadata: dict[str, Any]) -> str:
    """leg_counting carries no worked solution; its generator's legs-per-animal table gives one."""
    from reasoning_gym.arithmetic.leg_counting import ANIMALS

    counts = metadata["animals"]
    counts = ast.literal_eval(counts) if isinstance(counts, str) else counts
    terms = [f"{n} {animal} x {ANIMALS[animal]} legs = {n * ANIMALS[animal]}" for animal, n in counts.items()]
    return "; ".join(terms) + f". Total: {sum(n * ANIMALS[a] for a, n in counts.items())} legs."


_AIW_COUNTS = re.compile(
    r"^(?P<name>\w+) has (?P<a>\d+) (?P<a_kind>sisters|brothers|male friends|male colleagues) and she also has "
    r"(?P<b>\d+) (?P<b_kind>sisters|brothers|female friends|female colleagues)"
)


_AIW_STEPS = {  # the counting step each kind of aiw question hinges on
    "sisters": "{name}'s brother has {name}'s {count} sisters and {name} herself as sisters",
    "female friends": "The male friend's female friends are {name}'s {count} female friends and {name} herself",
    "female colleagues": "Matilda is in {name}'s circle; its women are {name}'s {count} female colleagues plus "
    "{name} herself",
}


def _aiw_reference(question: str, answer: str) -> str | None:
    """aiw carries no worked solution; the count it asks for always includes the woman herself."""
    match = _AIW_COUNTS.match(question)
    if not match:
        return None
    first = match["a_kind"] == "sisters"
    group, count = (match["a_kind"], int(match["a"])) if first else (match["b_kind"], int(match["b"]))
    if str(count + 1) != answer.strip():
        return None
    return _AIW_STEPS[group].format(name=match["name"], count=count) + f": {count} + 1 = {answer}."


def _word_sorting_reference(metadata: dict[str, Any], answer: str) -> str:
    """word_sorting carries no worked solution; the character codes that decide the order give one."""
    codes = ", ".join(f"{word} {word[0]}={ord(word[0])}" for word in metadata["transformed_words"])
    return f"Character codes of the first letters: {codes}. Sorted {metadata['direction']} by code: {answer}."


def _letter_counting_reference(metadata: dict[str, Any], answer: str) -> str:
    """letter_counting carries no worked solution; spelling every word out gives one."""
    letter = metadata["target_letter"]
    words = [f"{word} = {'-'.join(word)} ({word.lower().count(letter)})" for word in metadata["span"]]
    return f"Spelled out, with the count of '{letter}' in each word: {'; '.join(words)}. Total: {answer}."


def _products_reference(expression: str, answer: str) -> str | None:
    """products carries no worked solution; long multiplication by the second factor's place values gives one."""
    match = re.fullmatch(r"\s*(\d+) \* (\d+)\s*", expression)
    if not match or int(match[1]) * int(match[2]) != int(answer):
        return None
    first, second = match[1], match[2]
    parts = [int(digit) * 10 ** (len(second) - 1 - i) for i, digit in enumerate(second) if digit != "0"]
    products = [int(first) * part for part in parts]
    lines = [f"{first} x {part} = {product}" for part, product in zip(parts, products, strict=True)]
    return f"Split {second} by place value: {'; '.join(lines)}; {' + '.join(map(str, products))} = {answer}."


def _reference(task: str, entry: dict[str, Any]) -> str | None:
    metadata = entry.get("metadata") or {}
    answer = str(entry["answer"])
    if task == "leg_counting" and "animals" in metadata:
        return _leg_counting_reference(metadata)
    if task == "aiw":
        return _aiw_reference(entry["question"], answer)
    if task == "word_sorting" and "transformed_words" in metadata:
        return _word_sorting_reference(metadata, answer)
    if task == "letter_counting" and "span" in metadata:
        return _letter_counting_reference(metadata, answer)
    if task == "products" and "expression" in metadata:
        return _products_reference(str(metadata["expression"]), answer)
    cot = metadata.get("answer_cot")
    return str(cot) if cot else None


def _parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``task`` or ``task:key=value,key=value`` (generator parameters, e.g. ``leg_counting:max_animals=4``)."""
    task, _, options = spec.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, re.split(r",(?![^\[]*\])", options)):  # commas inside [...] belong to a list
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise DSOError(f"dataset {spec!r}: parameters are key=value, separated by commas")
        try:
            params[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            params[key.strip()] = value.strip()
    return task.strip(), params


def _enums(task: str, params: dict[str, Any]) -> dict[str, Any]:
    """Generator options typed as enums (``aiw:task_types=['siblings']``) are given by their values."""
    from reasoning_gym.factory import DATASETS

    if task not in DATASETS:
        return params
    defaults = {f.name: f for f in dataclasses.fields(DATASETS[task][1])}
    converted = dict(params)
    for key, value in params.items():
        field = defaults.get(key)
        if field is None or not callable(field.default_factory):
            continue
        default = field.default_factory()
        if isinstance(default, list) and default and isinstance(default[0], enum.Enum) and isinstance(value, list):
            try:
                converted[key] = [type(default[0])(item) for item in value]
            except ValueError:
                choices = ", ".join(str(member.value) for member in type(default[0]))
                raise DSOError(f"dataset {task}: {key} takes values among {choices}") from None
    return converted


def _reasoning_gym(spec: str, count: int, seed: int) -> list[Problem]:
    import reasoning_gym

    task, params = _parse_spec(spec)
    try:
        dataset = reasoning_gym.create_dataset(task, size=count, seed=seed, **_enums(task, params))
    except (KeyError, ValueError, TypeError, AssertionError) as exc:
        raise DSOError(f"unknown dataset or parameters {spec!r}: {exc}") from None
    problems = []
    for index in range(count):
        entry = dataset[index]
        problems.append(
            Problem(f"{spec}-{seed}-{index}", entry["question"], str(entry["answer"]), task, _reference(task, entry))
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
    return problems[:count] if count else problems


def _gsm8k_answer(text: str) -> tuple[str, str | None]:
    if "####" in text:
        reasoning, final = text.rsplit("####", 1)
        return final.strip().replace(",", ""), reasoning.strip() or None
    return text.strip(), None


def _jsonl(path: Path, count: int) -> list[Problem]:
    problems = []
    raw = read_input(path, DSOError)
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise DSOError(f"dataset {path} is not UTF-8 text") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        row = load_json(line, DSOError, f"{path}:{number}")
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or "answer" not in row:
            raise DSOError(f"{path}:{number}: needs a 'question' string and an 'answer'")
        answer, reference = _gsm8k_answer(str(row["answer"]))
        digest = hashlib.sha256(row["question"].encode()).hexdigest()[:12]
        problems.append(Problem(f"jsonl-{digest}", row["question"], answer, "jsonl", row.get("solution") or reference))
    if not problems:
        raise DSOError(f"{path} holds no problems")
    return problems[:count] if count else problems


def load_problems(source: str, count: int, seed: int = 0) -> list[Problem]:
    """`count` problems from `source`; for the fixed pools (JSONL, champ) 0 means all of them."""
    if source.endswith(".jsonl"):
        return _jsonl(Path(source), count)
    if source == "champ":
        return _champ(count)
    return _reasoning_gym(source, count, seed)


def _distinct_pool(source: str, wanted: int, seed: int) -> list[Problem]:
    """At least `wanted` distinct problems in the source's fixed order for `seed` (problem i never moves)."""
    unique = _pool(source, wanted, seed)
    if len(unique) < wanted:
        raise DSOError(f"{source} gave {len(unique)} distinct problems; {wanted} requested")
    return unique


def _pool(source: str, wanted: int, seed: int) -> list[Problem]:
    """Distinct problems in the source's fixed order for `seed`: `wanted` or more, fewer only when the source
    has no more (a file's whole pool, or a generator that keeps repeating itself)."""
    if source.endswith(".jsonl") or source == "champ":
        problems = load_problems(source, 0, seed)  # the whole pool
        random.Random(seed).shuffle(problems)
        unique = _distinct(problems)
    else:  # small generators repeat questions (aiw): generate more; problem i stays the same
        count = wanted
        unique = _distinct(load_problems(source, count, seed))
        while len(unique) < wanted and count < 8 * wanted:
            count *= 2
            unique = _distinct(load_problems(source, count, seed))
    return unique


def train_heldout_split(
    source: str, train_size: int, heldout_size: int, seed: int = 0
) -> tuple[list[Problem], list[Problem]]:
    """Deterministic by seed; the two parts never share a problem (nor a question text).

    The held-out part depends only on (source, seed, heldout_size), never on the train size, so runs
    with different train sizes are evaluated on the same questions. Generated tasks give problem i from
    (seed, i) alone: held-out is the first problems, train the next. Fixed pools (JSONL, champ) are
    shuffled whole by seed first, since a file may be sorted by difficulty or topic.
    """
    wanted = train_size + heldout_size
    unique = _distinct_pool(source, wanted, seed)
    return unique[heldout_size:wanted], unique[:heldout_size]


def validation_split(
    source: str, train_size: int, heldout_size: int, validation_size: int, seed: int = 0
) -> list[Problem]:
    """The validation questions (the gate and pruning judge lessons on them): the problems after train and
    held-out, so they share no question with either and adding them changes neither."""
    if validation_size <= 0:
        return []
    wanted = train_size + heldout_size
    return _distinct_pool(source, wanted + validation_size, seed)[wanted : wanted + validation_size]


def fresh_heldout(source: str, size: int, seed: int, seen: Collection[str]) -> list[Problem]:
    """`size` held-out questions drawn with another seed, none of whose texts is in `seen`.

    A run tuned on one seed's questions is checked on these: generators with a small question space
    (one or two animals of a short list) repeat texts across seeds, so a repeat of a question the run
    trained, validated or was evaluated on is skipped rather than counted as new.
    """
    if size <= 0:
        raise DSOError(f"held-out size must be positive, not {size}")
    count = size
    while True:
        pool = _pool(source, count, seed)
        fresh = [p for p in pool if p.question not in seen]
        if len(fresh) >= size:
            return fresh[:size]
        if count >= 8 * size or len(pool) < count:  # tried enough, or the source has no more
            raise DSOError(
                f"{source} with seed {seed} gave {len(fresh)} questions not seen by the run; {size} requested"
            )
        count *= 2


class QuestionDraws:
    """Disjoint sets of `size` fresh questions of one source: draw 0 is `first` (or drawn with `seed`), draw k
    is drawn with a seed derived from (`seed`, k), leaving out `seen` and every earlier draw. The same arguments
    give the same draws, so a node that restarts asks the k-th look the same questions."""

    def __init__(
        self, source: str, size: int, seed: int, seen: Collection[str], first: Sequence[Problem] | None = None
    ) -> None:
        self._source, self._size, self._seed, self._seen = source, size, seed, frozenset(seen)
        self._draws: list[list[Problem]] = [list(first)] if first else []

    def seed_of(self, index: int) -> int:
        """Draw 0 uses `seed` itself; the others a hash of it, far from the small seeds people pick by hand."""
        if index == 0:
            return self._seed
        digest = hashlib.sha256(f"dso-question-draw:{self._seed}:{index}".encode()).digest()
        return int.from_bytes(digest[:4], "big")

    def __call__(self, index: int) -> list[Problem]:
        if index < 0:
            raise DSOError(f"draw numbers start at 0, not {index}")
        while len(self._draws) <= index:
            asked = self._seen | {p.question for draw in self._draws for p in draw}
            self._draws.append(fresh_heldout(self._source, self._size, self.seed_of(len(self._draws)), asked))
        return self._draws[index]


def one_draw(questions: Sequence[Problem]) -> Callable[[int], list[Problem]]:
    """The same questions for every draw: for a trial of one look (counts over repeated questions must not add up)."""
    fixed = list(questions)
    return lambda _: fixed


def _distinct(problems: list[Problem]) -> list[Problem]:
    """The first occurrence of a question wins, so train and held-out never share a question text."""
    seen: set[str] = set()
    unique = []
    for problem in problems:
        if problem.question not in seen:
            seen.add(problem.question)
            unique.append(problem)
    return unique
