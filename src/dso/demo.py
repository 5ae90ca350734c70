"""The main job on embedded defaults, end to end over what exists so far.

It builds a small library, shows a paraphrase being merged rather than added, retrieves the
experiences relevant to each question, and asks the embedded LLM with them in its prompt.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dso.config import DSOConfig
from dso.embed import make_embedder
from dso.library import ExperienceLibrary
from dso.llm import ChatMessage, make_llm

SEED_EXPERIENCES = [
    ("When a problem asks for a total, add every part exactly once before answering.", "math"),
    ("When a quantity is given as a percentage, convert it to a fraction of the base first.", "math"),
    ("When units differ, convert everything to one unit before computing.", "math"),
    ("When asked for a difference, subtract the smaller value from the larger value.", "math"),
    ("When a word problem describes time, write down the start and end times explicitly.", "math"),
    ("When answering, finish with a line 'Answer: <number>' and nothing after it.", "format"),
]
PARAPHRASE = "When asked for a difference, subtract the smaller number from the larger number."
QUESTIONS = [
    "A shop sells 12 apples in the morning and 17 in the afternoon. How many apples does it sell in total?",
    "Tom is 31 years old and his sister is 19. What is the difference in their ages?",
    "A recipe needs 250 grams of flour per cake. How many grams are needed for 4 cakes?",
]
SYSTEM = "You solve short math word problems. Think briefly, no code. End with 'Answer: <number>'."


def run_demo(config: DSOConfig, run_dir: Path, *, quiet: bool = False) -> dict[str, object]:
    console = Console(quiet=quiet)
    started = time.perf_counter()
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    llm = make_llm(config)  # fails early, with the fix named, if the model is not pulled
    embedder = make_embedder(config.embedder)
    library = ExperienceLibrary(
        run_dir / "library.db",
        embedder,
        dedup_threshold=config.library.dedup_threshold,
        word_cap=config.library.word_cap,
    )
    for text, domain in SEED_EXPERIENCES:
        library.add(text, confidence=0.6, domain=domain)
    merged = library.add(PARAPHRASE, confidence=0.7, domain="math")
    console.print(
        f"library: {len(library)} experiences; paraphrase -> {merged.op} "
        f"(cosine {merged.similarity or 0:.3f}) into {merged.experience.id}"
    )

    table = Table(title=f"{llm.name} with retrieved experiences")
    for column in ("question", "experiences", "answer", "tokens", "tok/s"):
        table.add_column(column)
    answers = []
    for question in QUESTIONS:
        hits = library.retrieve(question, k=config.library.top_k, count_usage=True)
        context = library.format_for_prompt(question, k=2)
        messages: list[ChatMessage] = [
            {"role": "system", "content": SYSTEM + "\nUseful experiences:\n" + context},
            {"role": "user", "content": question},
        ]
        reply = llm.chat(messages, max_tokens=160, temperature=0.0, seed=0)
        answers.append(
            {
                "question": question,
                "experiences": [h.experience.id for h in hits[:2]],
                "answer": reply.text,
                "completion_tokens": reply.completion_tokens,
                "tokens_per_second": round(reply.tokens_per_second, 1),
            }
        )
        table.add_row(
            question,
            ", ".join(h.experience.id for h in hits[:2]),
            reply.text.strip()[-120:],
            str(reply.completion_tokens),
            f"{reply.tokens_per_second:.0f}",
        )
    console.print(table)
    exported = library.export_json(run_dir / "library.json")
    library.close()
    llm.close()
    summary: dict[str, object] = {
        "model": llm.name,
        "embedder": embedder.identity,
        "library_size": exported,
        "paraphrase_op": merged.op,
        "answers": answers,
        "export": str(run_dir / "library.json"),
        "seconds": round(time.perf_counter() - started, 2),
    }
    console.print(f"exported {exported} experiences to {run_dir / 'library.json'} in {summary['seconds']} s")
    return summary
