"""Write the replay pool of `dso simulate`: experiences learned on the development machine, from committed runs.

    python -m dso.bench.pool    # reads bench/results/learning-*.json, writes src/dso/data/replay_pool.json

Each entry keeps the run file it came from, so the pool can be traced to the learning run that produced it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dso.core.experience import normalise_text
from dso.files import source_checkout, write_text_atomic


def learned_experiences(results: Path) -> list[dict[str, Any]]:
    pool: dict[str, dict[str, Any]] = {}
    for path in sorted(results.glob("learning-*.json")):
        document = json.loads(path.read_text())
        if "experiences" in document:  # a library export
            texts = [e["text"] for e in document["experiences"]]
            domains = [e.get("domain", "general") for e in document["experiences"]]
        else:  # a run summary
            texts = document["train"]["experiences"]
            domains = [document["train"]["config"]["dataset"].split(":")[0]] * len(texts)
        for text, domain in zip(texts, domains, strict=True):
            pool.setdefault(normalise_text(text), {"text": normalise_text(text), "domain": domain, "run": path.name})
    return sorted(pool.values(), key=lambda e: (e["run"], e["text"]))


def main() -> None:
    root = source_checkout("bench/results")
    if root is None:
        raise SystemExit("run from a source checkout")
    pool = learned_experiences(root / "bench" / "results")
    target = root / "src" / "dso" / "data" / "replay_pool.json"
    write_text_atomic(target, json.dumps({"experiences": pool}, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(pool)} experiences -> {target}")


if __name__ == "__main__":
    main()
