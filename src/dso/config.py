"""One typed configuration object, layered: defaults < TOML file < environment < flags.

Environment variables are named ``DSO_<SECTION>_<FIELD>`` (``DSO_LLM_MODEL``), plus ``DSO_HOME``.
Flags arrive as dotted overrides (``{"llm.model": "qwen2.5-0.5b"}``). Unknown keys are errors, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dso.core.untrusted import MAX_DEPTH, nesting_depth
from dso.errors import ConfigError
from dso.files import read_input


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
    registry: str = ""  # the ExperienceRegistry address; "" = the one in `addresses` for this chain


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
    min_similarity: float = 0.45  # inject none below this cosine to the question (bench/results/relevance.json)
    evidence_weight: float = 0.1  # retrieval ranks by similarity + this x net evidence of helped over hurt
    max_new_per_group: int = 2  # lessons proposed per group
    learn_from_failures: bool = True  # all-failed groups learn from the answer (and reference solution)
    contrast_batch: bool = True  # one more call per batch: wrong answers across its problems beside the right ones
    summarize_min_words: int = 60  # attempts longer are summarized (a call each) before comparison; huge: never
    gate_lessons: bool = False  # keep a lesson only if it solves more validation questions (greedy, one pass each)
    validation_size: int = 20  # questions apart from train and held-out, for the gate (0: the batch's own)
    gate_p: float = 0.1  # the gate keeps a lesson when fixed > broken with a one-sided sign test p at most this
    prune_p: float = 0.1  # delete a lesson that hurt more than helped at this sign-test level (0: never)
    prune_min_uses: int = 4  # at an epoch's end, delete a lesson used this often that never helped on net (0: never)
    verifier: str = "default"  # "default" (math or words per problem), "math", "words", or "llm-judge"
    extractor_model: str = ""  # "" = llm.model, the solver
    extractor_base_url: str = ""  # "" = the solver's backend; else an OpenAI-compatible endpoint for extraction
    extractor_api_key_env: str = ""  # the variable holding that endpoint's key ("" = llm.api_key_env)
    eval_samples: int = 1  # k in Mean@k
    eval_temperature: float = 0.0


@dataclasses.dataclass
class ConsensusConfig:
    """How submissions from many nodes become one global library (dso.consensus)."""

    similarity_threshold: float = 0.9  # cosine at which two texts are one experience (the library's merge threshold)
    acceptance_threshold: float = 0.45  # share of established nodes' reputation that must support an experience
    max_per_node: int = 50  # submissions counted per node and round; the rest are dropped
    max_words: int = 64  # the record format's cap
    max_bytes: int = 1024
    new_node_reputation: float = 0.1  # where a node without history starts
    newcomer_share_cap: float = 0.05  # nodes without history add at most this share to any experience's support
    reputation_decay: float = 0.8  # weight of the old reputation when a round updates it
    min_validations: int = 3  # validators needed before their evidence can veto an experience
    evidence_z: float = 1.645  # veto when the harm share's lower bound (this many standard errors) exceeds one half
    guard_rules: str = "all"  # comma-separated rule names of dso.consensus.guards, or "all" / "none"
    confidence_rule: str = "median"  # median | mean | trimmed_mean (a third trimmed) of supporters' confidences
    semantic_guard: bool = True  # also the semantic guard (dso.consensus.semantic_guard), in votes and merges alike


@dataclasses.dataclass
class NetworkConfig:
    """A node's part in the network (dso.node): when it syncs, how it votes, where its state lives."""

    enable_dso: bool = False  # share through the registry and the content store (`dso train --dso` sets it)
    sync_frequency: int = 2  # learning batches between two syncs
    byzantine_robust: bool = True  # merge what the consensus accepts; False: every record of an accepted batch
    voting_threshold: float = 1.0  # share of a batch's records that must pass this member's checks for a yes
    store: str = ""  # "" = the embedded block store in node_dir; or an IPFS HTTP API URL
    node_dir: Path = Path("dso-node")  # the node's state (outbox, cursors), blocks and learning run
    max_publish: int = 50  # experiences per published batch (consensus.max_per_node counts no more)
    # a stranger's batch listing more records is refused after its manifest is read, before any record is fetched
    # or embedded: what one batch can cost this node (the protocol's own cap is 10,000); one value per network
    max_batch_records: int = 100
    # candidates (lessons below the support threshold) this node tries per sync on its own validation questions
    # of their domain before adopting any (dso.node.trial); 0: never adopt a candidate
    max_trials: int = 4
    # syncs a candidate may be tried on, each on fresh questions, its counts adding up; each is judged at
    # train.gate_p / trial_looks, so a lesson without effect is adopted with probability at most train.gate_p
    trial_looks: int = 3
    # a light node (not a registry member) reads the global library from the registry's certificate (2/3 of the
    # members attested its root) instead of fetching every batch; it stays a full node while no certificate
    # exists, or one is disputed
    light: bool = False
    # the chance that a light node audits a certificate: it then fetches every batch, computes the library
    # itself and disputes a certificate that differs (docs/threat-model.md: how long a forged one survives)
    audit_rate: float = 0.05


@dataclasses.dataclass
class PromptConfig:
    """Which version of each prompt template (``dso/prompts/<name>.v<N>.md``) a run uses; recorded per run."""

    solver: int = 2  # the solver's prompt; from 2 the experiences follow the question in the user turn
    summarize: int = 1  # one long attempt -> its summary
    advantage: int = 4  # a group's better vs worse attempts -> lessons
    update: int = 1  # lessons -> ADD / UPDATE / DELETE against the closest experiences
    consolidate: int = 1  # a batch's operations -> one consistent set
    contrast: int = 3  # a batch's wrong answers beside the right ones -> lessons


@dataclasses.dataclass
class DSOConfig:
    home: Path = dataclasses.field(default_factory=_default_home)
    llm: LLMConfig = dataclasses.field(default_factory=LLMConfig)
    embedder: EmbedderConfig = dataclasses.field(default_factory=EmbedderConfig)
    library: LibraryConfig = dataclasses.field(default_factory=LibraryConfig)
    chain: ChainConfig = dataclasses.field(default_factory=ChainConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    prompts: PromptConfig = dataclasses.field(default_factory=PromptConfig)
    consensus: ConsensusConfig = dataclasses.field(default_factory=ConsensusConfig)
    network: NetworkConfig = dataclasses.field(default_factory=NetworkConfig)

    @property
    def models_dir(self) -> Path:
        return self.home / "models"


_SECTIONS = ("llm", "embedder", "library", "chain", "train", "prompts", "consensus", "network")
VERIFIERS = ("default", "math", "words", "llm-judge")
CHOICES = {
    "llm.backend": ("llamacpp", "openai"),
    "embedder.backend": ("onnx", "sentence-transformers"),
    "train.verifier": VERIFIERS,
    "consensus.confidence_rule": ("median", "mean", "trimmed_mean"),
}
# Every numeric setting has a closed range, checked at load: a value outside it would not fail loudly later
# (a negative threshold merges every lesson into the first; a huge voting window makes every submission revert).
RANGES: dict[str, tuple[float, float]] = {
    "llm.threads": (1, 256),
    "llm.n_ctx": (128, 1_048_576),
    "llm.parallel": (1, 64),
    "llm.timeout_s": (0.1, 3600),
    "llm.retries": (0, 20),
    "llm.max_concurrency": (1, 256),
    "embedder.threads": (1, 256),
    "embedder.batch_size": (1, 4096),
    "library.dedup_threshold": (0.5, 1.0),
    "library.word_cap": (1, 64),
    "chain.voting_window": (1, 1_000_000),
    "chain.quorum_bps": (1, 10_000),
    "train.train_size": (0, 1_000_000),
    "train.heldout_size": (0, 1_000_000),
    "train.seed": (0, 2**32 - 1),
    "train.epochs": (1, 1000),
    "train.batch_size": (1, 10_000),
    "train.group_size": (1, 64),
    "train.rollout_temperature": (0.0, 2.0),
    "train.max_tokens": (1, 32_768),
    "train.top_k": (0, 50),
    "train.min_similarity": (-1.0, 1.0),
    "train.evidence_weight": (0.0, 10.0),
    "train.validation_size": (0, 100_000),
    "train.gate_p": (0.0, 1.0),
    "train.prune_p": (0.0, 1.0),
    "train.prune_min_uses": (0, 1_000_000),
    "train.max_new_per_group": (1, 10),
    "train.summarize_min_words": (0, 1_000_000),
    "train.eval_samples": (1, 64),
    "train.eval_temperature": (0.0, 2.0),
    **{f"prompts.{field.name}": (1, 99) for field in dataclasses.fields(PromptConfig)},
    "consensus.similarity_threshold": (0.5, 1.0),
    "consensus.acceptance_threshold": (0.0, 1.0),
    "consensus.max_per_node": (1, 100_000),
    "consensus.max_words": (1, 64),
    "consensus.max_bytes": (16, 1024),
    "consensus.new_node_reputation": (0.0, 1.0),
    "consensus.newcomer_share_cap": (0.0, 1.0),
    "consensus.reputation_decay": (0.0, 1.0),
    "consensus.min_validations": (1, 100_000),
    "consensus.evidence_z": (0.0, 10.0),
    "network.sync_frequency": (1, 1_000_000),
    "network.voting_threshold": (0.0, 1.0),
    "network.max_publish": (1, 10_000),
    "network.max_batch_records": (1, 10_000),
    "network.max_trials": (0, 1_000),
    "network.trial_looks": (1, 20),
    "network.audit_rate": (0.0, 1.0),
}


def _coerce(value: Any, target: Any, key: str) -> Any:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, (str, int, float, bool)):
        raise ConfigError(f"config key {key!r}: expected a single value, got {type(value).__name__}")
    try:
        if target in (Path, "Path"):
            return Path(str(value)).expanduser()
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
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
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
        raw = read_input(Path(path), ConfigError, limit=1024 * 1024)
        try:
            text = raw.decode("utf-8")
            if nesting_depth(text) > MAX_DEPTH:  # tomllib recurses per level, like json
                raise ConfigError(f"config file {path} nests deeper than {MAX_DEPTH} levels")
            table = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        for key, value in _flatten(table).items():
            _apply(config, key, value)
    for key, value in _env_overrides(env).items():
        _apply(config, key, value)
    for key, value in (overrides or {}).items():
        if value is not None:
            _apply(config, key, value)
    check_config(config)
    return config


def check_config(config: DSOConfig) -> None:
    """Every choice among its values and every number inside its range, or one ConfigError naming the key."""
    for key, allowed in CHOICES.items():
        section, field = key.split(".")
        value = getattr(getattr(config, section), field)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r:.60}")
    for key, (low, high) in RANGES.items():
        section, field = key.split(".")
        value = getattr(getattr(config, section), field)
        if not low <= value <= high:
            raise ConfigError(f"{key} must lie in [{low:g}, {high:g}], got {value!r:.40}")
    if config.network.max_publish > config.network.max_batch_records:
        raise ConfigError(
            f"network.max_publish ({config.network.max_publish}) must not exceed network.max_batch_records "
            f"({config.network.max_batch_records}): other nodes would refuse this node's batches"
        )
