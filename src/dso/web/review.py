"""What the reviewer page shows, read from one node: pending batches with every check, the global library
with provenance, the node's status. No HTTP here: `dso.web.app` serves it, a Python user may call it.

Everything a stranger wrote (texts, domains, reasons) stays data: the templates escape it, nothing here
turns it into markup. Votes are cast with the node's own keystore key, unlocked for one call by the
password the reviewer types and dropped afterwards; the key never leaves this process.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from dso.chain.registry import BatchInfo, BatchState
from dso.errors import ChainError, DSOError, StoreError
from dso.keys import load_account
from dso.network import node_paths
from dso.node.context import hex_id
from dso.node.node import Node
from dso.node.reports import VoteCast
from dso.node.share import GlobalExperience, GlobalLibrary
from dso.node.verify import BatchReview, Check
from dso.plots import node_bytes_per_sync, node_training_accuracy

BATCH_ID = re.compile(r"0x[0-9a-f]{64}")
SIMILAR_SHOWN = 2

REVIEW_CACHE = 512  # verified batch reviews kept between page loads
PENDING_PAGE = 10  # pending batches reviewed and shown per page: what one page load can cost the node


class ReviewError(DSOError):
    """A reviewer's request that cannot be carried out (unknown batch, failed checks, wrong password)."""


@dataclasses.dataclass(frozen=True)
class RecordView:
    cid: str
    text: str
    domain: str
    confidence: float
    evidence: tuple[int, int, int] | None  # helped, hurt, neutral as the origin node claims them
    findings: tuple[str, ...]  # guard rules the text breaks
    similar: tuple[tuple[str, float], ...]  # closest experiences of the global library, with cosine


@dataclasses.dataclass(frozen=True)
class BatchView:
    id: str
    node: str
    round: int
    reputation: str
    checks: tuple[Check, ...]
    records: tuple[RecordView, ...]
    verified: bool
    up: int
    down: int
    eligible: int
    needed: int  # yes votes that accept it during the window (2/3 of the eligible members)
    quorum: int  # votes needed at the end of the window
    blocks_left: int
    voted: bool  # this node has voted on it
    own: bool


@dataclasses.dataclass(frozen=True)
class BatchVotes:
    id: str
    round: int
    state: str
    up: int
    down: int
    eligible: int


@dataclasses.dataclass(frozen=True)
class ExperienceView:
    text: str
    domain: str
    score: float | None  # cosine to the search query
    support: float | None
    reason: str
    nodes: tuple[str, ...]
    rounds: tuple[int, ...]
    records: tuple[tuple[str, str, int], ...]  # (record CID, batch id, round)
    batches: tuple[BatchVotes, ...]
    evidence: tuple[int, int, int]

    def to_json(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["records"] = [{"cid": c, "batch_id": b, "round": r} for c, b, r in self.records]
        row["evidence"] = dict(zip(("helped", "hurt", "neutral"), self.evidence, strict=True))
        return row


@dataclasses.dataclass(frozen=True)
class PendingPage:
    """One page of pending batches and where it lies among them all."""

    batches: tuple[BatchView, ...]
    total: int  # batches open on the registry
    page: int  # 1-based
    pages: int


def _reputation(library: GlobalLibrary, node: str) -> str:
    known = library.reputations.get(node)
    if known is None or known.rounds == 0:
        return "no history in the global library"
    return f"{known.value:.2f} over {known.rounds} round{'s' if known.rounds != 1 else ''}"


class Reviewer:
    """The reviewer page's view of one node; one lock serialises every use of the node (one SQLite state,
    one chain client)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.lock = threading.RLock()
        # batch id:CID -> Node.review (bytes behind a CID never change); bounded, oldest out first
        self._reviews: OrderedDict[str, BatchReview] = OrderedDict()

    def is_member(self) -> bool:
        """Whether this node may vote: a registry member now."""
        with self.lock:
            return self.node.is_member()

    # -- pending batches -----------------------------------------------------------------------

    def _review(self, info: BatchInfo) -> BatchReview:
        key = f"{hex_id(info.id)}:{info.batch_cid}"
        review = self._reviews.get(key)
        if review is None:
            review = self.node.review(info)
            if review.verified:  # a failure may be a store that was not reachable: try again next time
                self._reviews[key] = review
                while len(self._reviews) > REVIEW_CACHE:
                    self._reviews.popitem(last=False)
        return review

    def _similar(self, texts: list[str], library: GlobalLibrary) -> list[tuple[tuple[str, float], ...]]:
        known = [g.text for g in library.accepted]
        if not texts or not known:
            return [() for _ in texts]
        scores = self.node.embed(texts) @ self.node.embed(known).T
        out = []
        for row in scores:
            best = np.argsort(-row)[:SIMILAR_SHOWN]
            out.append(tuple((known[i], round(float(row[i]), 3)) for i in best))
        return out

    def pending(self, page: int = 1) -> PendingPage:
        """One page of the batches the registry holds open (oldest first), each with its checks, texts and
        votes: only that page's batches are fetched and checked, so a page costs at most PENDING_PAGE
        batches of at most `network.max_batch_records` records, however many are open."""
        with self.lock:
            self.node.scan()
            library = self.node.global_library()
            registry = self.node.registry
            block = registry.height()
            everything = self.node.pending()
            pages = max(1, -(-len(everything) // PENDING_PAGE))
            page = min(max(1, page), pages)
            views = []
            for info in everything[(page - 1) * PENDING_PAGE : page * PENDING_PAGE]:
                review = self._review(info)
                texts = [record.text for _, record in review.records]
                similar = self._similar(texts, library)
                records = tuple(
                    RecordView(
                        cid,
                        record.text,
                        record.domain,
                        record.confidence,
                        record.evidence,
                        findings,
                        close,
                    )
                    for (cid, record), findings, close in zip(review.records, review.findings, similar, strict=True)
                )
                views.append(
                    BatchView(
                        hex_id(info.id),
                        info.node,
                        info.round,
                        _reputation(library, info.node),
                        review.checks,
                        records,
                        review.verified,
                        info.up,
                        info.down,
                        info.eligible,
                        -(-2 * info.eligible // 3),
                        registry.quorum(info.eligible),
                        max(0, info.deadline - block),
                        registry.has_voted(info.id, self.node.address),
                        info.node == self.node.address,
                    )
                )
            return PendingPage(tuple(views), len(everything), page, pages)

    def vote(self, batch_ids: Sequence[str], approve: bool, password: str) -> list[str]:
        """Cast this node's vote on `batch_ids` in one voteMany, signed with its keystore key; all or nothing.

        Approving a batch that fails any check is refused, whatever the form said."""
        if not batch_ids:
            raise ReviewError("no batch selected")
        if len(batch_ids) > 500:
            raise ReviewError("at most 500 batches in one vote")
        with self.lock:
            decided = []
            for batch_id in dict.fromkeys(batch_ids):
                if not BATCH_ID.fullmatch(batch_id):
                    raise ReviewError("a batch id is 0x and 64 hex digits")
                raw = bytes.fromhex(batch_id[2:])
                if not self.node.registry.has_batch(raw):
                    raise ReviewError(f"the registry holds no batch {batch_id}")
                info = self.node.registry.batch(raw)
                if info.state != BatchState.PENDING:
                    raise ReviewError(f"batch {batch_id} is {info.state.name.lower()} already")
                if self.node.registry.has_voted(raw, self.node.address):
                    raise ReviewError(f"this node has voted on batch {batch_id} already")
                review = self.node.review(info)  # checked again now, not from the page's copy
                if approve and not review.verified:
                    failed = next(c for c in review.checks if c.outcome == "failed")
                    raise ReviewError(f"batch {batch_id} failed its {failed.name} check: it cannot be approved")
                verdict = "approved" if approve else "rejected"
                decided.append(VoteCast(batch_id, approve, f"{verdict} by a reviewer on the page"))
            if not password:
                raise ReviewError("the node key's password is needed to sign the vote")
            account = load_account(self.node.config.chain.keystore, password)
            if str(account.address) != self.node.address:
                raise ReviewError("the keystore's key is not this node's")
            signer = self.node.registry.with_account(account)
            self.node.cast_votes(decided, signer)
            return [vote.batch_id for vote in decided]

    # -- the global library --------------------------------------------------------------------

    def _batch_votes(self, batch_id: str) -> BatchVotes:
        info = self.node.registry.batch(bytes.fromhex(batch_id[2:]))
        return BatchVotes(batch_id, info.round, info.state.name.lower(), info.up, info.down, info.eligible)

    def library(
        self, query: str = "", domain: str = "", node: str = "", round_: int | None = None, limit: int = 200
    ) -> list[ExperienceView]:
        """The global library after pulling what the registry accepted since the last look, filtered; ranked by
        meaning when `query` is given, else alphabetically."""
        with self.lock:
            self.node.pull()
            library = self.node.global_library()
            chosen: list[GlobalExperience] = [
                g
                for g in library.accepted
                if (not domain or g.domain == domain)
                and (not node or any(r.node.lower() == node.lower() for r in g.records))
                and (round_ is None or any(r.round == round_ for r in g.records))
            ]
            scores: list[float | None] = [None] * len(chosen)
            if query.strip() and chosen:
                similarity = self.node.embed([g.text for g in chosen]) @ self.node.embed([query.strip()])[0]
                scores = [round(float(s), 3) for s in similarity]
                order = sorted(range(len(chosen)), key=lambda i: -float(similarity[i]))
            else:
                order = sorted(range(len(chosen)), key=lambda i: chosen[i].text)
            views = []
            for i in order[:limit]:
                g = chosen[i]
                records = sorted(g.records, key=lambda r: (r.round, r.batch_id, r.cid))
                views.append(
                    ExperienceView(
                        g.text,
                        g.domain,
                        scores[i],
                        round(g.decision.support, 3) if g.decision else None,
                        g.decision.reason if g.decision else "in a batch the registry accepted",
                        tuple(sorted({r.node for r in records})),
                        tuple(sorted({r.round for r in records})),
                        tuple((r.cid, r.batch_id, r.round) for r in records),
                        tuple(self._batch_votes(b) for b in sorted({r.batch_id for r in records})),
                        (sum(r.helped for r in records), sum(r.hurt for r in records), sum(r.neutral for r in records)),
                    )
                )
            return views

    def domains(self) -> list[str]:
        with self.lock:
            return sorted({g.domain for g in self.node.global_library().accepted})

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The node's status plus what it can reach: the chain (its latest block) and the content store."""
        with self.lock:
            status = self.node.status().to_json()
            try:
                status["chain"] = {"ok": True, "block": self.node.registry.height()}
            except Exception as exc:  # any failure of the endpoint is a status to show, not a crash
                status["chain"] = {"ok": False, "error": str(ChainError(str(exc)))[:300]}
            store = self.node.store
            try:
                where = getattr(store, "api_url", None) or str(getattr(store, "root", "embedded block store"))
                describe = getattr(store, "node_id", None)
                status["store"] = {"ok": True, "where": str(where), "id": describe() if describe else ""}
            except (StoreError, OSError) as exc:
                status["store"] = {"ok": False, "error": str(exc)[:300]}
            status["traffic"] = self.node.state.traffic_per_sync()
            return status

    def training_metrics(self) -> list[dict[str, Any]]:
        """Per learning batch metrics of the node's run directory (empty when it has not learned)."""
        path = node_paths(self.node.config)["run"] / "metrics.jsonl"
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[-1000:]:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if isinstance(row, dict) and {"mean_reward", "library_size"} <= row.keys():
                rows.append(row)
        return rows

    def plot(self, name: str) -> bytes | None:
        """A PNG of the node's training accuracy ("accuracy") or bytes per sync ("bytes"); None without data."""
        out = io.BytesIO()
        if name == "accuracy":
            metrics = self.training_metrics()
            if not metrics:
                return None
            node_training_accuracy(metrics, out, "this node's learning")
        elif name == "bytes":
            with self.lock:
                traffic = self.node.state.traffic_per_sync()
            if not traffic:
                return None
            node_bytes_per_sync(traffic, out, "bytes per sync")
        else:
            return None
        return out.getvalue()
