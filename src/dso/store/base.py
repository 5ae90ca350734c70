"""The content-store interface shared by the embedded block store and a real IPFS node."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class ContentStore(Protocol):
    def put(self, data: bytes) -> str:
        """Store `data`; returns its CID (raw CIDv1, base32)."""
        ...

    def get(self, cid: str) -> bytes:
        """The bytes named by `cid`, re-hashed and checked before they are returned."""
        ...

    def put_many(self, blocks: Sequence[bytes]) -> list[str]:
        """Store several blocks (one batch's records and manifest) as one operation where the store has one;
        returns their CIDs in order."""
        ...

    def has(self, cid: str) -> bool: ...

    def pin(self, cid: str) -> None:
        """Keep the block from garbage collection (a no-op where nothing is collected)."""
        ...
