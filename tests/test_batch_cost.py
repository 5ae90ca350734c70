"""`dso bench batch-cost`: one batch's rollouts shared, extracted under each setting, costs counted by prompt."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dso.bench.batch_cost import run_batch_cost_bench
from dso.config import load_config


@pytest.mark.slow
def test_each_setting_extracts_the_same_rollouts_and_counts_where_tokens_go(tmp_path: Path) -> None:
    overrides = {"llm.model": "smollm2-135m", "llm.parallel": 2, "train.summarize_min_words": 0}
    config = load_config(environ={}, overrides=overrides)
    lessons = tmp_path / "lessons.json"
    lessons.write_text(json.dumps(["When a price rises by a percent, multiply the old price by one plus the rate."]))
    result = run_batch_cost_bench(
        config, "basic_arithmetic", batch_size=2, group_size=2, max_tokens=48, library_file=lessons, quiet=True
    )
    assert result["rollouts"]["attempts"] == 4 and result["starting_library"] == 1
    settings = result["extraction"]
    assert [settings[name]["groups_side_by_side"] for name in ("before", "side by side")] == [1, 2]
    for name, cost in settings.items():
        kinds = cost["by_kind"]
        assert sum(k["calls"] for k in kinds.values()) == cost["llm_calls"]
        assert sum(k["prompt_tokens"] + k["completion_tokens"] for k in kinds.values()) == cost["tokens"]
        summaries = kinds.get("summary", {"calls": 0})["calls"]
        extracted = (2 - cost["groups_skipped"]) * 2  # attempts of the groups not skipped (an empty one needs none)
        assert summaries == 0 if name == "no summaries" else 0 < summaries <= extracted
        assert result["batch_seconds"][name] > result["rollouts"]["seconds"]
    before, side_by_side = (settings[name]["by_kind"]["summary"]["calls"] for name in ("before", "side by side"))
    assert before == side_by_side  # the same rollouts, summarized alike one group at a time or side by side


def test_bad_sizes_are_one_line_errors() -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "dso", "bench", "batch-cost", "basic_arithmetic", "--group-size", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
