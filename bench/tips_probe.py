"""Do hand-written tips help the embedded solver on a task? -> bench/results/tips-<task>.json.

A ceiling check for learning: if tips written by a person do not help, learned ones will not either. The
held-out questions are answered without and with a library holding only the tips, one prompt and one token
budget for both arms (the same path `dso eval` takes).

    python bench/tips_probe.py leg_counting 20 512
"""

import json
import sys
import tempfile
from pathlib import Path

from dso.config import load_config
from dso.embed import make_embedder
from dso.learn.datasets import train_heldout_split
from dso.learn.evaluate import summarise
from dso.learn.rewards import DefaultVerifier
from dso.learn.solve import SolveSettings, solve
from dso.library import ExperienceLibrary
from dso.llm import make_llm

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
    "number_format": [
        "When comparing numbers written in different formats, rewrite each as a plain decimal first (drop thousands "
        "commas, expand e+08 as times 100,000,000), then compare digit by digit from the left.",
    ],
}

task, count, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
config = load_config()
config.llm.model = "qwen2.5-1.5b"
solver, verifier = make_llm(config), DefaultVerifier()
name = task.split(":")[0]
tips = TIPS[name]
_, heldout = train_heldout_split(task, 0, count, seed=0)
settings = SolveSettings(max_tokens=max_tokens, top_k=5)
with tempfile.TemporaryDirectory() as home:
    library = ExperienceLibrary(Path(home) / "tips.db", make_embedder())
    for tip in tips:
        library.add(tip)
    arms = {}
    for arm, lib in (("baseline", None), ("tips", library)):
        result = summarise(arm, solve(heldout, solver, verifier, settings, lib), len(lib) if lib else 0)
        arms[arm] = result.to_json()
        print(arm, arms[arm], flush=True)
report = {"task": task, "max_tokens": max_tokens, "tips": tips, "arms": arms}
Path(f"bench/results/tips-{name}.json").write_text(json.dumps(report, indent=1) + "\n")
