"""The embedded default store: one file per block in a sharded directory."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from dso.core.cid import cid_of, parse_cid, verify_cid
from dso.errors import CIDError, StoreError


class LocalBlockStore:
    """Blocks live at ``root/<last two CID characters>/<cid>``; every read is re-hashed."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot keep blocks in {self.root}: {exc.strerror or exc}") from None

    def _path(self, cid: str) -> Path:
        try:
            parse_cid(cid)
        except CIDError as exc:
            raise StoreError(str(exc)) from None
        return self.root / cid[-2:] / cid

    def put(self, data: bytes) -> str:
        cid = cid_of(bytes(data))
        path = self._path(cid)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".put-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)  # readers see the whole block or none of it
        return cid

    def put_many(self, blocks: Sequence[bytes]) -> list[str]:
        return [self.put(data) for data in blocks]

    def get(self, cid: str) -> bytes:
        path = self._path(cid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"block {cid} is not in {self.root}") from None
        try:
            verify_cid(cid, data)
        except CIDError:
            raise StoreError(f"block {cid} in {self.root} is corrupt (its bytes do not match the CID)") from None
        return data

    def has(self, cid: str) -> bool:
        return self._path(cid).is_file()

    def pin(self, cid: str) -> None:
        if not self.has(cid):
            raise StoreError(f"cannot pin {cid}: not in {self.root}")
