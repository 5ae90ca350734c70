"""Do hand-written tips help the solver on a task? A ceiling check for learning (`dso bench tips TASK`).

If tips written by a person do not help, learned ones will not either. The held-out questions are answered
without and with a library holding only the tips, one prompt and one token budget for both arms (the same
path `dso eval` takes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dso.config import DSOConfig
from dso.core.experience import normalise_text
from dso.embed import make_embedder
from dso.errors import ConfigError
from dso.files import read_input
from dso.learn.datasets import Problem, train_heldout_split
from dso.learn.evaluate import changed_questions, paired_comparison, summarise
from dso.learn.extract import Rollout, shown_answer
from dso.learn.rewards import DefaultVerifier
from dso.learn.solve import SolveSettings, placebo_instruction, solve
from dso.library import ExperienceLibrary
from dso.llm import make_llm
from dso.machine import machine

TIPS = {
    "leg_counting": [
        "When counting legs, spiders and scorpions have 8 legs; insects (ants, bees, beetles, cockroaches, "
        "fireflies, mantises, wasps) have 6.",
        "When counting legs, crabs, lobsters and shrimps have 10 legs; a woodlouse has 14; a starfish has 5.",
        "When counting legs, snakes, leeches, flatworms, jellyfish and sea slugs have 0 legs; birds and humans have 2.",
    ],
    "aiw": [
        "When asked how many sisters a woman's brother has, or how many female friends a male friend of a woman "
        "has, count the woman herself: her sisters (or female friends) plus 1.",
    ],
    "word_sorting": [
        "When sorting words in ASCII order, every uppercase letter (A-Z) comes before every lowercase letter "
        "(a-z): capitalised words come first in ascending order and last in descending order.",
    ],
    "letter_counting": [
        "When counting how often a letter appears in a text, spell each word letter by letter, count the letter "
        "in each word (upper and lower case alike), then add the counts.",
    ],
    "calendar_arithmetic": [
        "When finding a weekday in 2022, count days from Saturday, January 1, 2022 (months: 31, 28, 31, 30, 31, "
        "30, 31, 31, 30, 31, 30, 31), then take the count modulo 7.",
        "When asked whether a year is a leap year, it is one if divisible by 4, except years divisible by 100 "
        "that are not divisible by 400.",
        "When counting days between two dates, subtract their days of the year and add 1 if both dates count; "
        "every 7 consecutive days hold each weekday once.",
    ],
    "calendar_arithmetic:tasks=['weekday_offset']": [
        "When counting N days forward from a weekday, take the remainder of N divided by 7, then step that many "
        "days forward from the start day (Monday, Tuesday, ..., Sunday, Monday).",
    ],
    "simple_geometry": [
        "When finding a polygon's last interior angle, the n interior angles sum to (n - 2) x 180 degrees: "
        "subtract the given angles from that total.",
    ],
    "time_intervals": [
        "When giving a duration in HH:MM:SS, subtract start from end field by field, borrowing 60 seconds, "
        "60 minutes or 24 hours, and write each field with two digits.",
        "When counting days between dates, add the days left in the start month, the months between (30 or "
        "31 days; February 28, 29 in leap years) and the end day.",
    ],
    "coin_flip": [
        "For exactly k heads in n fair coin flips the probability is C(n, k) / 2^n; for at least k heads, "
        "sum C(n, j) for j = k..n and divide by 2^n.",
    ],
    "gcd": [
        "When finding a greatest common divisor, use Euclid's algorithm: replace (a, b) with (b, a mod b) until "
        "the remainder is 0; the last nonzero remainder is the GCD.",
    ],
    "lcm": [
        "When finding the LCM of two numbers, find their GCD by Euclid's algorithm ((a, b) -> (b, a mod b) "
        "until remainder 0), then LCM = a x b / GCD.",
    ],
    "prime_factorization": [
        "When factorizing, divide by 2, 3, 5, 7, 11, 13, ... while each divides evenly; once the divisor squared "
        "exceeds what is left, that is prime. List every factor, repeats included.",
    ],
    "family_relationships": [
        "When asked how two people in a family are related, first write step by step who is married to whom and "
        "whose child each one is, then give the one relation word.",
    ],
    "syllogism": [
        "When judging a syllogism, two negative premises prove nothing, two premises with Some prove nothing, and "
        "a premise with Some never proves an All or No conclusion.",
        "When a conclusion swaps a premise's terms: No A are B gives No B are A; Some or All A are B gives Some B "
        "are A; nothing else follows.",
    ],
    "spell_backward": [
        "When spelling a word backward, first write its letters one by one separated by spaces, then write them "
        "again from the last to the first, and join them without spaces.",
    ],
    "ransom_note": [
        "When building a ransom note from a magazine, do not write code: find each note letter in the magazine, "
        "using each magazine letter once; all found means True.",
    ],
    "isomorphic_strings": [
        "When testing two strings for isomorphism, do not write code: pair their letters in order; False if a letter "
        "pairs with two different letters either way, else True.",
    ],
    "number_sorting": [
        "When sorting numbers, negative numbers come before positive ones in ascending order; among negatives, "
        "the one with the larger absolute value is smaller (-81 < -49).",
        "When asked to sort a list of numbers, keep every number exactly as given and end with the line "
        "ANSWER: followed by the sorted list in square brackets.",
    ],
    "word_sequence_reversal": [
        "When reversing a list of words, number the words 1 to n first, then write them from number n down to 1, "
        "each word exactly as given.",
    ],
    "chain_sum": [
        "When adding and subtracting a chain of numbers, never answer at once: go left to right and write each "
        "running total on its own line.",
    ],
    "decimal_chain_sum": [
        "When adding and subtracting decimal numbers, never answer at once: go left to right, one running total "
        "per line, lining up the decimal points.",
    ],
    "products": [
        "When multiplying two numbers, never answer at once: split the second number by place value, multiply "
        "by each part on its own line, then add the parts.",
    ],
    "color_cube_rotation": [
        "When a cube side is turned to the top, the old top goes opposite that side's old place, the old bottom "
        "takes that place, and the opposite side goes down.",
        "When a cube's back or front is turned to the top, left and right keep their colors; when left or right "
        "is, front and back keep theirs.",
    ],
    "number_filtering": [
        "When removing numbers from a list, never answer at once: for each number write whether it is below the "
        "limit, then list the kept ones exactly as written.",
    ],
    "base_conversion": [
        "When converting between bases, never answer at once: write the base-10 value digit by digit (digit times "
        "base to its place's power), then divide by the target base repeatedly.",
    ],
    "simple_equations": [
        "When solving an equation for a variable, never answer at once: move one term per line, then check the "
        "value by putting it back into the equation.",
    ],
    "number_sequence": [
        "When finding the next number of a sequence, never answer at once: write the differences (or ratios) of "
        "neighbouring numbers on one line, find their pattern, then extend it by one.",
    ],
    "count_bits": [
        "When counting 1 bits, never answer at once: write the number as a sum of powers of two, largest first "
        "(128, 64, 32, ...), then count the terms.",
    ],
    "fraction_simplification": [
        "When simplifying a fraction, never answer at once: find the GCD of top and bottom by Euclid's algorithm, "
        "divide both by it, then answer a/b.",
    ],
    "complex_arithmetic": [
        "When multiplying complex numbers, never answer at once: (a + bi)(c + di) = (ac - bd) + (ad + bc)i; "
        "write ac, bd, ad and bc first.",
        "When dividing complex numbers, multiply top and bottom by the bottom's conjugate (c - di), then divide "
        "the real and imaginary parts by c^2 + d^2.",
    ],
    "sentence_reordering": [
        "When restoring a sentence's word order, start with the capitalized word or the one with an opening quote, "
        "and end with the word carrying the final period or question mark.",
        "When restoring a sentence's word order, use every given word exactly once, keep its punctuation "
        "attached, and check that the sentence reads naturally.",
    ],
    "knights_knaves": [
        "When some inhabitants always tell the truth and others always lie, try each assignment in turn and keep "
        "the one where every truth-teller's statement is true and every liar's is false.",
    ],
    "simple_integration": [
        "When integrating a polynomial, never answer at once: for each term write c*x**n -> c*x**(n+1)/(n+1) on its "
        "own line, simplify the fraction, then add + C.",
    ],
    "polynomial_multiplication": [
        "When multiplying polynomials, never answer at once: multiply each term of the first by each term of the "
        "second, one product per line (add the exponents), then add like terms.",
    ],
    "list_functions": [
        "When inferring a rule from input/output list examples, first try simple rules (same list, sorted, reversed, "
        "minimum, maximum, length, add the position) and keep the one that fits every example.",
    ],
    "string_insertion": [
        "When inserting characters after patterns, never answer at once: go left to right, write each match and its "
        "inserted letter, skip past both, then write the final string.",
    ],
    "number_format": [
        "When comparing numbers written in different formats, rewrite each as a plain decimal first (drop thousands "
        "commas, expand e+08 as times 100,000,000), then compare digit by digit from the left.",
    ],
    "acre": [
        "When judging a blicket detector, an object that turns the light on alone is a blicket; every object in a "
        "combination that stays off is not a blicket.",
        "When judging a new blicket case, answer on if it holds a known blicket, off if every object in it is known "
        "not to be one, else undetermined.",
    ],
    "binary_alternation": [
        "When counting swaps to make a binary string alternate, count the 0s and 1s first: if they differ by more "
        "than 1, the answer is -1.",
        "When counting swaps to make a binary string alternate, count the positions that differ from 0101... and "
        "from 1010... of the same length; answer half the smaller even count.",
    ],
    "count_primes": [
        "Primes below 100: 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, "
        "47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97.",
    ],
    "needle_haystack": [
        "When asked who has a stated attitude toward a thing, find the sentence with exactly that verb and that "
        "thing and answer with the name it starts with.",
    ],
}


def tips_for(task: str) -> list[str]:
    """The tips written for this setting of a generator ("calendar_arithmetic:tasks=['weekday_offset']"), else those
    for the whole task."""
    name = task.split(":")[0]
    tips = TIPS.get(task) or TIPS.get(name)
    if tips is None:
        raise ConfigError(f"no hand-written tips for {name!r} (known: {', '.join(TIPS)})")
    return tips


def read_lessons(path: Path) -> list[str]:
    """Lessons to probe in place of the hand-written tips: one per line of a text file, blank lines skipped."""
    try:
        text = read_input(path, ConfigError).decode("utf-8")  # a regular file of bounded size, never a pipe
    except ConfigError as exc:
        raise ConfigError(f"cannot read lessons: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read lessons: {path} is not UTF-8 text") from None
    lessons = [line.strip() for line in text.splitlines() if line.strip()]
    if not lessons:
        raise ConfigError(f"{path} holds no lessons (one per line)")
    return lessons


def run_tips_probe(
    config: DSOConfig,
    task: str,
    count: int,
    max_tokens: int,
    *,
    lessons: list[str] | None = None,
    each: bool = False,
    instructions: Sequence[str] = (),
    placebo: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Every arm on the same held-out questions, paired against the bare prompt (`baseline`: no instruction, no
    tips). `lessons` replaces the hand-written tips (a learned library's candidates, say); with `each`, every
    tip is its own arm, which tells the tip that helps from the one that harms where a library of all of them
    would show only their sum. `instructions` adds one arm per generic instruction (no tips): how candidates
    for the placebo are compared; with instructions and no `lessons`, the hand-written tips are left out.
    With `placebo`, a `placebo` arm (the placebo instruction alone) is added, every tip arm carries the
    placebo too, and each tip arm is also paired against the placebo arm: what the tips' content adds beyond
    an instruction to reason carefully."""
    tips = lessons if lessons is not None else ([] if instructions else tips_for(task))
    groups = [(f"tip {i}", [tip]) for i, tip in enumerate(tips, 1)] if each else [("tips", tips)]
    groups = [(arm, group) for arm, group in groups if group]
    extra = placebo_instruction() if placebo else ""
    plan: list[tuple[str, list[str], str]] = [("baseline", [], "")]
    plan += [(f"instruction {i}", [], text.strip()) for i, text in enumerate(instructions, 1)]
    plan += [("placebo", [], extra)] if placebo else []
    plan += [(arm, group, extra) for arm, group in groups]
    _, heldout = train_heldout_split(task, 0, count, seed=config.train.seed)
    base = SolveSettings(
        max_tokens=max_tokens,
        top_k=config.train.top_k,
        parallel=config.llm.parallel,
        prompt_version=config.prompts.solver,
    )
    arms, answers = {}, {}
    with tempfile.TemporaryDirectory() as home, contextlib.ExitStack() as stack:
        embedder = make_embedder()
        libraries: dict[str, ExperienceLibrary | None] = {}
        for number, (arm, group, _) in enumerate(plan):
            libraries[arm] = None
            if group:
                lib = stack.enter_context(ExperienceLibrary(Path(home) / f"arm-{number}.db", embedder))
                for tip in group:
                    lib.add(tip)  # a tip over the library's caps is refused before the model is even loaded
                libraries[arm] = lib
        solver, verifier = make_llm(config), DefaultVerifier()
        try:
            for arm, _, instruction in plan:
                settings = dataclasses.replace(base, instruction=instruction)
                answers[arm] = solve(heldout, solver, verifier, settings, libraries[arm])
                arms[arm] = summarise(arm, answers[arm], len(libraries[arm] or [])).to_json()
                arms[arm]["instruction"] = instruction
                if not quiet:  # a line per arm on standard error, with --json too: these runs take an hour
                    summary = f"{arms[arm]['accuracy']:.3f} on {arms[arm]['questions']} questions"
                    print(f"{arm}: {summary}", file=sys.stderr, flush=True)
        finally:
            solver.close()
    comparisons = []
    for arm, group, instruction in plan[1:]:
        row: dict[str, Any] = {
            "arm": arm,
            "tips": group,
            "instruction": instruction,
            "paired": paired_comparison(answers["baseline"], answers[arm]).to_json(),
            "changed": _changed(heldout, answers["baseline"], answers[arm]),
        }
        if placebo and group:
            row["paired_placebo"] = paired_comparison(answers["placebo"], answers[arm]).to_json()
        comparisons.append(row)
    return {
        "machine": machine(),
        "task": task,
        "model": config.llm.model,
        "seed": config.train.seed,
        "max_tokens": max_tokens,
        "solver_prompt": config.prompts.solver,
        "placebo": extra,
        "tips": tips,
        "source": "lessons file" if lessons is not None else "hand-written",
        "arms": arms,
        # the first comparison at the top, as files written before `each` had it
        "paired": comparisons[0]["paired"],
        "changed": comparisons[0]["changed"],
        "comparisons": comparisons,
    }


def _changed(
    problems: list[Problem], baseline: dict[str, list[Rollout]], tips: dict[str, list[Rollout]]
) -> list[dict[str, Any]]:
    """The questions the tips fixed or broke, with both answers: which kind of question a tip helps."""
    changed = changed_questions(baseline, tips)
    rows = []
    for problem in problems:
        if problem.id in changed:
            rows.append(
                {
                    "id": problem.id,
                    "change": changed[problem.id],
                    "correct": normalise_text(problem.answer)[:40],
                    "baseline": shown_answer(baseline[problem.id][0].response, 40),
                    "tips": shown_answer(tips[problem.id][0].response, 40),
                }
            )
    return rows
