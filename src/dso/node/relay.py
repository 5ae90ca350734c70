"""A relay: many nodes' signed batches registered in one transaction each hundred (`submitBatches`).

A node's batch is signed by the node (EIP-712, for one chain, registry and round), so whoever carries it to the
registry can delay or drop it but not change it. With a relay, a node that publishes hands its batch over
instead of sending `submitBatch` itself: the network pays one transaction per `chunk` batches instead of one
per node. The node keeps the batch in its outbox until the registry holds it; after `RELAY_TRIES` syncs in
which the relay did not register it, the node submits it itself (a relay that censors costs a delay).

The simulation runs one relay for the whole network; a deployment would run one beside its Flower server or
any public endpoint. Without a relay a node submits directly, as before.
"""

from __future__ import annotations

import threading

from dso.chain.registry import Registry
from dso.core.records import BatchManifest
from dso.errors import ChainError

RELAY_TRIES = 2  # syncs a node leaves a batch with the relay before it submits it itself
CHUNK = 100  # batches per submitBatches: about 150k gas each, well inside a block's 30M


class Relay:
    def __init__(self, registry: Registry, chunk: int = CHUNK) -> None:
        self.registry = registry  # the relay's own account pays
        self.chunk = max(1, chunk)
        self._pending: list[tuple[BatchManifest, str, bytes]] = []
        self._lock = threading.Lock()
        self.registered = 0
        self.transactions = 0

    def hand(self, manifest: BatchManifest, batch_cid: str, signature: bytes) -> None:
        """Take a node's signed batch; it is registered at the next `flush`."""
        with self._lock:
            self._pending.append((manifest, batch_cid, bytes(signature)))

    def flush(self) -> int:
        """Register every batch handed over, `chunk` per transaction; returns how many the registry took. A chunk
        the chain refuses stays with the relay for the next flush."""
        with self._lock:
            pending, self._pending = self._pending, []
        taken = 0
        for start in range(0, len(pending), self.chunk):
            part = pending[start : start + self.chunk]
            try:
                taken += self.registry.submit_batches(part)
                self.transactions += 1
            except ChainError:
                with self._lock:
                    self._pending.extend(part)
        self.registered += taken
        return taken
