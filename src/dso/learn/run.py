"""One entry point for a learning run and its evaluation, used by `dso train`, `dso eval` and the demo."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dso.config import RANGES, DSOConfig, PromptConfig, TrainConfig
from dso.core.untrusted import load_json
from dso.embed import make_embedder
from dso.errors import ConfigError, DSOError
from dso.files import read_input
from dso.learn.datasets import Problem, fresh_heldout, train_heldout_split, validation_split
from dso.learn.evaluate import EvalResult, constant_answer, evaluate, paired_comparison
from dso.learn.extract import Extractor, Rollout
from dso.learn.prompts import PromptSet
from dso.learn.rewards import DefaultVerifier, LLMJudge, MathVerifier, Verifier, WordVerifier
from dso.learn.solve import SolveSettings, placebo_instruction
from dso.learn.trainer import BatchMetrics, check_run_dir, config_json, train
from dso.library import ExperienceLibrary
from dso.llm import LLM, make_llm
from dso.llm.base import CountingLLM


@dataclasses.dataclass
class Hooks:
    """Progress callbacks (the CLI draws bars with them)."""

    on_rollouts: Callable[[Problem, list[Rollout]], None] | None = None
    on_batch: Callable[[BatchMetrics], None] | None = None
    on_stage: Callable[[str, int], None] | None = None  # (stage name, items in it)
    log: Callable[[str], None] | None = None


def _llm(config: DSOConfig, model: str) -> LLM:
    return make_llm(dataclasses.replace(config, llm=dataclasses.replace(config.llm, model=model)))


# Retrieval settings a run recorded before they existed: it retrieved the top k whatever their similarity.
# Extraction's: it summarized every attempt before comparing.
BEFORE_SETTINGS: dict[str, Any] = {"min_similarity": -1.0, "evidence_weight": 0.0, "summarize_min_words": 0}


@dataclasses.dataclass(frozen=True)
class RecordedRun:
    """What a run's config.json says it ran with."""

    train: TrainConfig
    prompts: PromptConfig
    model: str


def load_run_config(run_dir: Path) -> RecordedRun:
    """A run's recorded configuration; settings added after the run take the values it ran with."""
    saved = run_dir / "config.json"
    if not saved.is_file():
        raise DSOError(f"{run_dir} holds no run (no config.json); train first with: dso train --run-dir {run_dir}")
    recorded = load_json(read_input(saved, DSOError), DSOError, str(saved))
    if not isinstance(recorded, dict) or not isinstance(recorded.get("prompts"), dict):
        raise DSOError(f"{saved} is not a run configuration written by dso train")
    for key, before in BEFORE_SETTINGS.items():
        recorded.setdefault(key, before)
    try:
        prompts = PromptConfig(**recorded.pop("prompts"))
        model = str(recorded.pop("model"))
        return RecordedRun(TrainConfig(**recorded), prompts, model)
    except (TypeError, KeyError) as exc:
        raise DSOError(f"{saved} is not a run configuration this dso reads: {exc}") from None


def extractor_llm(config: DSOConfig, solver: LLM | None = None) -> LLM:
    """The model that writes lessons (and judges, for `llm-judge`): the solver unless told otherwise.

    `train.extractor_base_url` puts it on its own OpenAI-compatible endpoint (a large reflector on an API
    or a GPU server beside a small local solver); `train.extractor_model` names it there, or on the solver's
    backend when no endpoint is given."""
    settings = config.train
    if settings.extractor_base_url:
        endpoint = dataclasses.replace(
            config.llm,
            backend="openai",
            base_url=settings.extractor_base_url,
            model=settings.extractor_model or config.llm.model,
            api_key_env=settings.extractor_api_key_env or config.llm.api_key_env,
        )
        return make_llm(dataclasses.replace(config, llm=endpoint))
    if settings.extractor_model and settings.extractor_model != config.llm.model:
        return _llm(config, settings.extractor_model)
    return solver if solver is not None else make_llm(config)


def make_verifier(name: str, judge: LLM) -> Verifier:
    """`train.verifier`: the per-problem default, math or words only, or an LLM judge (tasks without ground truth)."""
    if name == "default":
        return DefaultVerifier()
    if name == "math":
        return MathVerifier()
    if name == "words":
        return WordVerifier()
    if name == "llm-judge":
        return LLMJudge(judge)
    raise ConfigError(f"unknown verifier {name!r}")


def open_run_library(config: DSOConfig, run_dir: Path) -> ExperienceLibrary:
    return ExperienceLibrary.from_config(config.library, make_embedder(config.embedder), run_dir / "library.db")


def gate_questions(settings: TrainConfig) -> list[Problem]:
    """The validation questions a run's gate judges lessons on (none when it has no gate)."""
    if not settings.gate_lessons:
        return []
    return validation_split(
        settings.dataset, settings.train_size, settings.heldout_size, settings.validation_size, settings.seed
    )


def run_training(
    config: DSOConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    hooks: Hooks | None = None,
    library: ExperienceLibrary | None = None,
) -> dict[str, Any]:
    """Learn on the training split into the run's library (or `library`, left open: a node's)."""
    hooks = hooks or Hooks()
    owned = library is None
    settings = config.train
    train_set, _ = train_heldout_split(settings.dataset, settings.train_size, settings.heldout_size, settings.seed)
    validation = gate_questions(settings)
    prompts = PromptSet(config.prompts)  # every template loaded: a bad version leaves no run behind either
    check_run_dir(run_dir, config, resume)
    solver = make_llm(config)
    reflector = extractor_llm(config, solver)
    if library is None:
        library = open_run_library(config, run_dir)
    extractor = Extractor.from_train(reflector, library, settings, prompts=prompts, log=hooks.log)
    if hooks.on_stage:
        hooks.on_stage("train", settings.epochs * len(train_set))
    counted = CountingLLM(solver)  # rollouts and the gate; the extractor counts its own calls
    metrics = train(
        settings,
        run_dir,
        train_set,
        counted,
        extractor,
        make_verifier(settings.verifier, reflector),
        parallel=config.llm.parallel,
        on_rollouts=hooks.on_rollouts,
        on_batch=hooks.on_batch,
        validation=validation,
    )
    summary = {
        "run_dir": str(run_dir),
        "config": config_json(config),
        "batches": [dataclasses.asdict(m) for m in metrics],
        "library_size": len(library),
        "extraction": dataclasses.asdict(extractor.stats),
        "solver_tokens": counted.counts(),  # this session's rollouts and gate (a resumed run counts from its resume)
        "experiences": [e.text for e in library.all()],
    }
    if owned:
        library.close()
    return summary


def heldout_suffix(heldout_seed: int | None, run_seed: int | None) -> str:
    """How a run names the answer files of a held-out check: "" for its own split (its own seed too), else
    "-seed101" (``eval-seed101-library.jsonl``); a run whose seed is not known takes any seed as another."""
    return "" if heldout_seed is None or heldout_seed == run_seed else f"-seed{heldout_seed}"


def heldout_questions(
    settings: TrainConfig, heldout_seed: int | None = None, heldout_size: int | None = None
) -> tuple[list[Problem], str]:
    """A run's held-out questions and the suffix of their files: its own split, or with `heldout_seed` the
    first `heldout_size` questions of that seed that the run never trained, validated or was evaluated on."""
    train_set, heldout = train_heldout_split(
        settings.dataset, settings.train_size, settings.heldout_size, settings.seed
    )
    suffix = heldout_suffix(heldout_seed, settings.seed)
    if not suffix or heldout_seed is None:
        return heldout, suffix
    seen = {p.question for p in (*train_set, *heldout, *gate_questions(settings))}
    size = settings.heldout_size if heldout_size is None else heldout_size
    return fresh_heldout(settings.dataset, size, heldout_seed, seen), suffix


EVAL_ARMS = ("baseline", "placebo", "library")


def run_evaluation(
    config: DSOConfig,
    run_dir: Path,
    *,
    arms: tuple[str, ...] = EVAL_ARMS,
    heldout_seed: int | None = None,
    heldout_size: int | None = None,
    hooks: Hooks | None = None,
) -> dict[str, Any]:
    """Evaluate a run's held-out split in three arms, same questions and budget: `baseline` (the bare prompt:
    no instruction, no experiences), `placebo` (the placebo instruction alone, `placebo_instruction`) and
    `library` (the run's own solver prompt with its library). The library is paired against both: what the
    lessons' content adds beyond an instruction to reason carefully is the comparison with the placebo.

    With `heldout_seed` the questions are drawn with that seed instead, skipping any the run trained,
    validated or was evaluated on: a check on questions nobody tuned on. Its files are named by the seed,
    so the run's own evaluation is kept. `heldout_size` sets how many (default: the run's held-out size);
    the run's own held-out split is fixed by its configuration.
    """
    hooks = hooks or Hooks()
    recorded = load_run_config(run_dir)
    if heldout_size is not None:
        if heldout_seed is None or heldout_seed == recorded.train.seed:
            raise DSOError("a held-out size other than the run's needs another held-out seed (--heldout-seed)")
        if not 1 <= heldout_size <= RANGES["train.heldout_size"][1]:
            raise DSOError(f"held-out size must be 1 to {RANGES['train.heldout_size'][1]:,}, not {heldout_size}")
    prompts, model = recorded.prompts, recorded.model
    settings = dataclasses.replace(
        recorded.train, eval_samples=config.train.eval_samples, eval_temperature=config.train.eval_temperature
    )
    heldout, suffix = heldout_questions(settings, heldout_seed, heldout_size)
    run_config = dataclasses.replace(config, llm=dataclasses.replace(config.llm, model=model), train=settings)
    solver = make_llm(run_config)
    judge = extractor_llm(run_config, solver) if settings.verifier == "llm-judge" else solver
    verifier = make_verifier(settings.verifier, judge)
    solve_settings = SolveSettings.from_train(
        settings,
        samples=settings.eval_samples,
        temperature=settings.eval_temperature,
        seed=settings.seed + 1,
        parallel=config.llm.parallel,
        prompt_version=prompts.solver,
    )
    library = open_run_library(config, run_dir)
    unknown = [arm for arm in arms if arm not in EVAL_ARMS]
    if unknown:
        raise DSOError(f"unknown arm {unknown[0]!r:.40}; the arms are {', '.join(EVAL_ARMS)}")
    instructions: dict[str, str | None] = {"baseline": "", "placebo": placebo_instruction(), "library": None}
    results: dict[str, EvalResult] = {}
    answers: dict[str, dict[str, list[Rollout]]] = {}
    for arm in arms:
        if hooks.on_stage:
            hooks.on_stage(f"eval {arm}", len(heldout))
        result, rollouts = evaluate(
            heldout,
            solver,
            verifier,
            dataclasses.replace(solve_settings, instruction=instructions[arm]),
            library if arm == "library" else None,
            arm=arm,
            on_done=hooks.on_rollouts,
        )
        results[arm] = result
        answers[arm] = rollouts
        lines = [json.dumps(r.to_json()) for group in rollouts.values() for r in group]
        (run_dir / f"eval{suffix}-{arm}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = {
        "run_dir": str(run_dir),
        "model": model,
        "dataset": settings.dataset,
        "heldout": len(heldout),
        "heldout_seed": settings.seed if heldout_seed is None else heldout_seed,
        "arms": {arm: r.to_json() for arm, r in results.items()},
        "experiences": [e.text for e in library.all()],
    }
    floor = constant_answer(heldout)
    if floor is not None:
        report["constant_answer"] = floor.to_json()
    if "baseline" in results and "library" in results:
        report["gain"] = results["library"].accuracy - results["baseline"].accuracy
        report["paired"] = paired_comparison(answers["baseline"], answers["library"]).to_json()
    if "placebo" in results and "library" in results:
        report["gain_over_placebo"] = results["library"].accuracy - results["placebo"].accuracy
        report["paired_placebo"] = paired_comparison(answers["placebo"], answers["library"]).to_json()
    report["placebo"] = instructions["placebo"]
    (run_dir / f"eval{suffix}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    library.close()
    return report
