"""Publishing: fresh local experiences become one signed batch, built into the outbox first, then sent.

A round is stored in the node's state (records, manifest, signature, and which experiences it publishes)
in one transaction before anything leaves the node; sending (blocks to the store, then `submitBatch`) is
retried from the outbox until the registry holds the batch, which is checked before every submission. With a
relay (`dso.node.relay`) the signed batch is handed over instead, and submitted directly only if the relay has
not registered it after `RELAY_TRIES` syncs."""

from __future__ import annotations

import time
from typing import Any

from dso.chain.registry import MAX_BATCHES_PER_WINDOW
from dso.core.cid import cid_of
from dso.core.experience import text_key
from dso.core.records import BatchManifest, decode_batch, decode_record
from dso.core.signing import batch_id as local_batch_id
from dso.core.signing import sign_batch, verify_batch_signature
from dso.errors import ContractRevert, DataError, NodeError
from dso.faults import fault_point
from dso.node import share
from dso.node.context import NodeContext, hex_id
from dso.node.relay import RELAY_TRIES
from dso.node.reports import BuiltRound, SentBatch


def flush_outbox(ctx: NodeContext) -> list[SentBatch]:
    """Send every built round still in the outbox; a round the registry already holds is marked done."""
    sent = []
    for row in ctx.state.unfinished_outbox():
        round_ = int(row["round"])
        manifest, records = _checked_round(ctx, row)
        if row["state"] == "built":
            ctx.store.put_many([*records, row["manifest"]])  # one operation where the store has one (IPFS: a CAR)
            for data in records:
                ctx.traffic.add("records", "sent", len(data))
            ctx.traffic.add("manifests", "sent", len(row["manifest"]))
            ctx.state.set_outbox_state(round_, "stored")
        batch_id = local_batch_id(manifest, row["manifest_cid"])
        registered = ctx.registry.has_batch(batch_id)
        handed = int(ctx.state.meta(f"relayed:{round_}") or "0")
        if not registered and ctx.relay is not None and handed < RELAY_TRIES:
            ctx.relay.hand(manifest, row["manifest_cid"], row["signature"])  # registered at the relay's flush
            ctx.state.set_meta(f"relayed:{round_}", str(handed + 1))
            ctx.log(f"round {round_} handed to the relay ({handed + 1} of {RELAY_TRIES})")
            continue
        if not registered:
            try:
                ctx.registry.submit_batch(manifest, row["manifest_cid"], row["signature"])
            except ContractRevert as exc:
                if exc.name == "RoundAlreadyUsed":
                    raise NodeError(
                        f"round {round_} of {ctx.address} is taken on the registry by another batch: "
                        "this node's state file is not the one it published with"
                    ) from None
                if exc.name == "TooManyBatches":  # the registry's cap per node and epoch: wait for the next
                    ctx.log(
                        f"round {round_} waits for the next epoch: the registry takes at most "
                        f"{MAX_BATCHES_PER_WINDOW} batches per node per epoch"
                    )
                    break
                if exc.name != "DuplicateBatch":
                    raise
            fault_point("sync:submitted")
        ctx.state.set_outbox_state(round_, "done", hex_id(batch_id))
        sent.append(SentBatch(round_, hex_id(batch_id), len(manifest.records)))
        ctx.log(f"published round {round_}: {len(manifest.records)} experiences, batch {hex_id(batch_id)[:12]}")
    return sent


def _checked_round(ctx: NodeContext, row: dict[str, Any]) -> tuple[BatchManifest, list[bytes]]:
    """A built round read back from the outbox and re-checked before anything is sent: every record's bytes
    hash to its CID and are a valid record of this node, the manifest hashes to its CID and lists exactly those
    records, and the signature is this node's over it for this registry. Edited bytes are one error naming the
    file, never a batch this node did not build."""
    round_ = int(row["round"])
    stored = ctx.state.outbox_records(round_)

    def damaged(what: str) -> NodeError:
        return NodeError(
            f"{ctx.state.path} is damaged: outbox round {round_} {what}; restore the file, or move it away "
            "(the round is then built again from the library)"
        )

    try:
        if cid_of(row["manifest"]) != row["manifest_cid"]:
            raise damaged("has a manifest that does not hash to its CID")
        manifest = decode_batch(row["manifest"])
        for cid, data in stored:
            if cid_of(data) != cid:
                raise damaged(f"has record {cid[:64]!r} whose bytes do not hash to its CID")
            if decode_record(data).node != ctx.address:
                raise damaged(f"has record {cid[:64]!r} of another node")
        if manifest.node != ctx.address or manifest.round != round_:
            raise damaged("has a manifest of another node or round")
        if sorted(manifest.records) != [cid for cid, _ in stored]:
            raise damaged("has a manifest that lists other records than the outbox holds")
        verify_batch_signature(ctx.registry.domain, manifest, row["manifest_cid"], row["signature"])
    except DataError as exc:
        raise damaged(f"does not check ({str(exc)[:120]})") from None
    return manifest, [data for _, data in stored]


def publish(ctx: NodeContext) -> BuiltRound | None:
    """Build the next round from local experiences not yet published (None if there are none), then send it.

    Local means learned here, or a stranger's candidate this node adopted after its own trial: republished
    under this node's key with the trial's counts as its evidence, so support grows with every node that
    verified the lesson on its own questions, and validators' evidence travels with it."""
    published = ctx.state.published_keys()
    adopted = ctx.state.adopted_texts()  # candidates this node's own trial adopted: it vouches for them in turn
    key = ctx.key()
    fresh = [
        e
        for e in sorted(ctx.library.all(), key=lambda e: (e.created_at, e.id))
        if (e.origin_node == "local" or text_key(e.text) in adopted) and text_key(e.text) not in published
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
