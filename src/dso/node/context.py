"""What every step of a node works on: its configuration, key, ports (library, registry, store), state,
embedder, guard policy and the bytes of the current sync. The steps (`publish`, `verify`, `vote`, `pull`)
are functions of this context; `dso.node.node.Node` strings them together."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from eth_account.signers.local import LocalAccount

from dso.chain.registry import BatchInfo, Registry
from dso.config import DSOConfig
from dso.consensus.certificate import LibraryEntry
from dso.consensus.policy import GuardPolicy
from dso.core.records import ExperienceRecord
from dso.embed.base import Vectors
from dso.embed.cache import CachingEmbedder
from dso.errors import NodeError
from dso.library import ExperienceLibrary
from dso.node.relay import Relay
from dso.node.share import GlobalLibrary
from dso.node.state import NodeState
from dso.store.base import ContentStore

Log = Callable[[str], None]
Voter = Callable[[BatchInfo], tuple[bool, str]]  # a member's vote on a batch and why
# what a member attests, given the library entries it computed (the identity, except in the attack suite)
Attester = Callable[[list[LibraryEntry]], list[LibraryEntry]]


def hex_id(batch_id: bytes) -> str:
    return "0x" + batch_id.hex()


@dataclasses.dataclass
class SharedWork:
    """Results that depend only on public data, shared by nodes that run in one process (`dso simulate`).

    A batch's verification depends only on its bytes and the registry, the global library only on the
    verified records, the guards' findings only on a text and the configuration: every node would compute
    the same, so nodes in one process compute each once. What a node would have fetched is still counted in
    its own traffic, and the simulation's witnesses share nothing: what one real node pays."""

    verified: dict[str, tuple[list[tuple[str, ExperienceRecord]], list[tuple[str, int]]]] = dataclasses.field(
        default_factory=dict
    )
    global_libraries: dict[str, GlobalLibrary] = dataclasses.field(default_factory=dict)
    # the guards' findings on a text under one consensus configuration (its repr): what every member computes
    guard_findings: dict[tuple[str, str], list[str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrafficLog:
    """The bytes of the sync under way, by kind and direction."""

    rows: list[tuple[str, str, int]] = dataclasses.field(default_factory=list)

    def add(self, kind: str, direction: str, n: int) -> None:
        self.rows.append((kind, direction, n))


class NodeContext:
    def __init__(
        self,
        config: DSOConfig,
        library: ExperienceLibrary,
        account: LocalAccount | None,
        address: str,
        registry: Registry,
        store: ContentStore,
        state: NodeState,
        *,
        log: Log | None = None,
        shared: SharedWork | None = None,
    ) -> None:
        self.config = config
        self.library = library
        self.account = account
        self.address = address
        self.registry = registry
        self.store = store
        self.state = state
        self.log: Log = log or (lambda line: None)
        self.shared = shared
        embedder = library.embedder
        self.embedder = embedder if isinstance(embedder, CachingEmbedder) else CachingEmbedder(embedder)
        self.traffic = TrafficLog()
        self.relay: Relay | None = None  # who carries this node's signed batches to the registry; None: itself
        self.attester: Attester | None = None  # None: a member attests what it computed
        self.seen: dict[str, BatchInfo] = {}  # the registry's batches as the last scan read them
        self.last_global: tuple[str, GlobalLibrary] | None = None  # the last global library and its records' digest

    @property
    def model(self) -> str:
        return self.config.train.extractor_model or self.config.llm.model

    @functools.cached_property
    def guards(self) -> GuardPolicy:
        """The one content policy of this node's votes and merges."""
        return GuardPolicy.for_embedder(self.config.consensus, self.embedder)

    def embed(self, texts: list[str]) -> Vectors:
        """Unit vectors of `texts` by the library's embedder, each text embedded once (bounded cache)."""
        return self.embedder.embed(texts)

    def key(self) -> LocalAccount:
        if self.account is None:
            raise NodeError(f"node {self.address} is open read-only: publishing and voting need its key")
        return self.account
