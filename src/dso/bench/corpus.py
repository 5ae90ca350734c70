"""Experience-like sentences for benchmarks, generated deterministically (no data download)."""

from __future__ import annotations

import itertools
import random

CONDITIONS = [
    "a word problem mixes units",
    "the question asks for a percentage change",
    "two rates work together",
    "a total is split into unequal parts",
    "a price is discounted twice",
    "the answer must be a whole number",
    "a ratio is given between three quantities",
    "an average of several groups is asked",
    "time spans cross midnight",
    "interest compounds yearly",
    "a shape's area and perimeter both appear",
    "a function raises an exception on empty input",
    "a test fails only on the CI machine",
    "a SQL query returns duplicate rows",
    "a regular expression must match nested brackets",
    "a web search returns outdated pages",
    "a user asks for a summary of a long thread",
    "an API answers with HTTP 429",
    "a date is written in an ambiguous format",
    "a family tree question names in-laws",
    "a list must be sorted alphabetically",
    "an estimate seems too large",
    "a proof needs a case split",
    "the input file may be corrupted",
    "two sources contradict each other",
    "a plan has steps that depend on each other",
    "a recipe must be scaled",
    "a map gives distances in miles",
    "the problem states a probability without replacement",
    "a loop processes millions of items",
]
STRATEGIES = [
    "convert every quantity to one unit before computing",
    "write each known value down first",
    "compute the parts separately and add them once",
    "check the answer against a rough estimate",
    "restate what is asked before answering",
    "keep exact fractions until the last step",
    "set up one equation per unknown",
    "test the smallest input by hand",
    "read the error message in full",
    "prefer the most recent primary source",
    "answer with one word as the convention requires",
    "retry with exponential backoff",
    "normalise the format before comparing",
    "draw the relationships first",
    "list the cases and handle each",
    "validate the input before using it",
    "cite which source each claim uses",
    "order the steps by their dependencies",
    "multiply every ingredient by the same factor",
    "work with complements when counting is hard",
    "profile before optimising",
]
OPENERS = ["When {c}, {s}", "If {c}, {s}", "Whenever {c}, first {s}", "When {c}: {s}, then verify"]
ENDINGS = [".", " before answering.", " in multi-step tasks.", " even under time pressure."]


def experience_corpus(count: int, seed: int = 0) -> list[str]:
    """Up to 10,080 distinct sentences (openers x conditions x strategies x endings), shuffled by seed."""
    combos = list(itertools.product(OPENERS, CONDITIONS, STRATEGIES, ENDINGS))
    random.Random(seed).shuffle(combos)
    if count > len(combos):
        raise ValueError(f"at most {len(combos)} distinct sentences")
    return [opener.format(c=c, s=s) + end for opener, c, s, end in combos[:count]]


def query_corpus(count: int, seed: int = 1) -> list[str]:
    """Questions an agent might retrieve experiences for."""
    rng = random.Random(seed)
    forms = ["How should I handle it when {c}?", "What to do if {c}", "Tips: {c}", "{c} - what works?"]
    return [rng.choice(forms).format(c=rng.choice(CONDITIONS)) + f" ({i})" for i in range(count)]
