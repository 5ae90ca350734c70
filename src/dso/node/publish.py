"""Publishing: fresh local experiences become one signed batch, built into the outbox first, then sent.

A round is stored in the node's state (records, manifest, signature, and which experiences it publishes)
in one transaction before anything leaves the node; sending (blocks to the store, then `submitBatch`) is
retried from the outbox until the registry holds the batch, which is checked before every submission."""

from __future__ import annotations

import time

from dso.core.experience import text_key
from dso.core.records import BatchManifest, decode_batch
from dso.core.signing import batch_id as local_batch_id
from dso.core.signing import sign_batch
from dso.errors import ContractRevert, NodeError
from dso.faults import fault_point
from dso.node import share
from dso.node.context import NodeContext, hex_id
from dso.node.reports import BuiltRound, SentBatch


def flush_outbox(ctx: NodeContext) -> list[SentBatch]:
    """Send every built round still in the outbox; a round the registry already holds is marked done."""
    sent = []
    for row in ctx.state.unfinished_outbox():
        round_ = int(row["round"])
        manifest = decode_batch(row["manifest"])
        if row["state"] == "built":
            records = [data for _, data in ctx.state.outbox_records(round_)]
            ctx.store.put_many([*records, row["manifest"]])  # one operation where the store has one (IPFS: a CAR)
            for data in records:
                ctx.traffic.add("records", "sent", len(data))
            ctx.traffic.add("manifests", "sent", len(row["manifest"]))
            ctx.state.set_outbox_state(round_, "stored")
        batch_id = local_batch_id(manifest, row["manifest_cid"])
        if not ctx.registry.has_batch(batch_id):
            try:
                ctx.registry.submit_batch(manifest, row["manifest_cid"], row["signature"])
            except ContractRevert as exc:
                if exc.name == "RoundAlreadyUsed":
                    raise NodeError(
                        f"round {round_} of {ctx.address} is taken on the registry by another batch: "
                        "this node's state file is not the one it published with"
                    ) from None
                if exc.name != "DuplicateBatch":
                    raise
            fault_point("sync:submitted")
        ctx.state.set_outbox_state(round_, "done", hex_id(batch_id))
        sent.append(SentBatch(round_, hex_id(batch_id), len(manifest.records)))
        ctx.log(f"published round {round_}: {len(manifest.records)} experiences, batch {hex_id(batch_id)[:12]}")
    return sent


def publish(ctx: NodeContext) -> BuiltRound | None:
    """Build the next round from local experiences not yet published (None if there are none), then send it."""
    published = ctx.state.published_keys()
    key = ctx.key()
    fresh = [
        e
        for e in sorted(ctx.library.all(), key=lambda e: (e.created_at, e.id))
        if e.origin_node == "local" and text_key(e.text) not in published
    ][: ctx.config.network.max_publish]
    built = None
    if fresh:
        embedder_id = ctx.library.embedder_id or ""
        vectors = ctx.embed([e.text for e in fresh])
        records = share.build_records(
            fresh, vectors, node=ctx.address, model=ctx.model, embedder=embedder_id, timestamp=int(time.time())
        )
        round_ = ctx.state.next_round()
        domain = ctx.registry.domain

        def signer(manifest: BatchManifest, cid: str) -> bytes:
            return sign_batch(key.key, domain, manifest, cid)

        batch = share.build_batch(records, node=ctx.address, round_=round_, signer=signer, domain=domain)
        ctx.state.add_outgoing(round_, batch, [(text_key(e.text), e.id) for e in fresh])
        fault_point("sync:built")
        built = BuiltRound(round_, len(records), batch.manifest_cid)
    flush_outbox(ctx)
    return built
