"""One typed configuration object, layered: defaults < TOML file < environment < flags.

Environment variables are named ``DSO_<SECTION>_<FIELD>`` (``DSO_LLM_MODEL``), plus ``DSO_HOME``.
Flags arrive as dotted overrides (``{"llm.model": "qwen2.5-0.5b"}``). Unknown keys are errors, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dso.errors import ConfigError


def _default_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dso"


@dataclasses.dataclass
class LLMConfig:
    backend: str = "llamacpp"  # "llamacpp" (embedded) or "openai" (any OpenAI-compatible endpoint)
    model: str = "qwen2.5-1.5b"  # the solver: a named model pack, a .gguf path, or the endpoint's model name
    base_url: str = ""  # for backend "openai", e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # name of the variable holding the key, never the key itself
    threads: int = 2
    n_ctx: int = 4096
    parallel: int = 4  # llama.cpp slots; requests beyond this queue
    timeout_s: float = 120.0
    retries: int = 3
    max_concurrency: int = 4


@dataclasses.dataclass
class EmbedderConfig:
    backend: str = "onnx"  # "onnx" (int8 MiniLM, default) or "sentence-transformers" (fp32)
    threads: int = 1
    batch_size: int = 32


@dataclasses.dataclass
class LibraryConfig:
    path: Path = Path("dso-library.db")
    dedup_threshold: float = 0.9
    word_cap: int = 32


@dataclasses.dataclass
class ChainConfig:
    rpc: str = ""  # "" = the embedded EVM; or a JSON-RPC URL such as http://127.0.0.1:8545
    keystore: Path = Path("node-key.json")
    addresses: Path = Path("runs/addresses.json")  # deployed registry per chain id
    voting_window: int = 100  # blocks
    quorum_bps: int = 1_000  # 10% of members, at least one


@dataclasses.dataclass
class TrainConfig:
    """The learning loop (Training-Free GRPO) and its evaluation."""

    dataset: str = "family_relationships"  # a reasoning-gym task, "champ", or a .jsonl file
    train_size: int = 40
    heldout_size: int = 60
    seed: int = 0
    epochs: int = 1
    batch_size: int = 4
    group_size: int = 5  # G: attempts per question
    rollout_temperature: float = 0.7
    max_tokens: int = 512  # the same budget for every arm
    top_k: int = 5  # experiences injected per question
    max_new_per_group: int = 2  # lessons proposed per group
    learn_from_failures: bool = True  # all-failed groups learn from the answer (and reference solution)
    contrast_batch: bool = True  # one more call per batch: wrong answers across its problems beside the right ones
    gate_lessons: bool = False  # keep a lesson only if it solves more of its own batch (greedy, one pass each)
    verifier: str = "default"  # "default" (math or words per problem), "math", "words", or "llm-judge"
    extractor_model: str = ""  # "" = llm.model, the solver
    eval_samples: int = 1  # k in Mean@k
    eval_temperature: float = 0.0


@dataclasses.dataclass
class PromptConfig:
    """Which version of each prompt template (``dso/prompts/<name>.v<N>.md``) a run uses; recorded per run."""

    solver: int = 1  # the solver's system prompt, with the experiences block
    summarize: int = 1  # one long attempt -> its summary
    advantage: int = 4  # a group's better vs worse attempts -> lessons
    update: int = 1  # lessons -> ADD / UPDATE / DELETE against the closest experiences
    consolidate: int = 1  # a batch's operations -> one consistent set
    contrast: int = 1  # a batch's wrong answers beside the right ones -> lessons


@dataclasses.dataclass
class DSOConfig:
    home: Path = dataclasses.field(default_factory=_default_home)
    llm: LLMConfig = dataclasses.field(default_factory=LLMConfig)
    embedder: EmbedderConfig = dataclasses.field(default_factory=EmbedderConfig)
    library: LibraryConfig = dataclasses.field(default_factory=LibraryConfig)
    chain: ChainConfig = dataclasses.field(default_factory=ChainConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    prompts: PromptConfig = dataclasses.field(default_factory=PromptConfig)

    @property
    def models_dir(self) -> Path:
        return self.home / "models"


_SECTIONS = ("llm", "embedder", "library", "chain", "train", "prompts")
VERIFIERS = ("default", "math", "words", "llm-judge")


def _coerce(value: Any, target: Any, key: str) -> Any:
    try:
        if target in (Path, "Path"):
            return Path(value).expanduser()
        if target in (bool, "bool"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if target in (int, "int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if target in (float, "float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key!r}: cannot use {value!r} as {target}") from None


def _apply(config: DSOConfig, key: str, value: Any) -> None:
    parts = key.split(".")
    if len(parts) == 1 and parts[0] == "home":
        config.home = _coerce(value, Path, key)
        return
    if len(parts) != 2 or parts[0] not in _SECTIONS:
        raise ConfigError(f"unknown config key {key!r}")
    section = getattr(config, parts[0])
    fields = {f.name: f.type for f in dataclasses.fields(section)}
    if parts[1] not in fields:
        raise ConfigError(f"unknown config key {key!r} (known in [{parts[0]}]: {', '.join(fields)})")
    setattr(section, parts[1], _coerce(value, fields[parts[1]], key))


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    if "DSO_HOME" in environ:
        found["home"] = environ["DSO_HOME"]
    for section in _SECTIONS:
        prefix = f"DSO_{section.upper()}_"
        for name, value in environ.items():
            if name.startswith(prefix):
                found[f"{section}.{name[len(prefix) :].lower()}"] = value
    return found


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> DSOConfig:
    """Build the configuration; `path` defaults to $DSO_CONFIG, then ./dso.toml if it exists."""
    env = os.environ if environ is None else environ
    config = DSOConfig()
    if path is None and env.get("DSO_CONFIG"):
        path = Path(env["DSO_CONFIG"])
    if path is None and Path("dso.toml").is_file():
        path = Path("dso.toml")
    if path is not None:
        try:
            table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        for key, value in _flatten(table).items():
            _apply(config, key, value)
    for key, value in _env_overrides(env).items():
        _apply(config, key, value)
    for key, value in (overrides or {}).items():
        if value is not None:
            _apply(config, key, value)
    if config.train.verifier not in VERIFIERS:
        raise ConfigError(f"train.verifier must be one of {', '.join(VERIFIERS)}, got {config.train.verifier!r}")
    return config
