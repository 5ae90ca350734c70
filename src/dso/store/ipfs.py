"""A real IPFS node through the kubo RPC API (kubo, or anything that speaks its API).

Only a few endpoints are used: ``add`` (CIDv1, raw leaves, base32), ``dag/import`` (a batch's blocks as
one CAR archive, `dso.core.car`), ``block/get``, ``block/stat``, ``pin/add`` and ``id``. Calls are POSTs
(the RPC API refuses GET), with timeouts and retries with backoff on connection errors and 5xx answers.
Whatever the node returns is re-hashed here: a CID the node computed differently, or bytes that do not
match, are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from dso.core.car import encode_car
from dso.core.cid import cid_of, parse_cid, verify_cid
from dso.core.untrusted import load_json
from dso.endpoints import RetryPolicy, http_base_url, post_with_retries
from dso.errors import CIDError, StoreError


def _json(response: httpx.Response) -> Any:
    """An IPFS API answer, parsed as any JSON from outside."""
    return load_json(response.content, StoreError, f"IPFS answer to {response.request.url.path}")


def _message(response: httpx.Response) -> str:
    try:
        return f"HTTP {response.status_code}: {str(_json(response)['Message'])!r:.160}"
    except (StoreError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:160]!r}"


class IPFSStore:
    def __init__(
        self,
        api_url: str,
        *,
        policy: RetryPolicy = RetryPolicy(),
        lookup_timeout_s: float = 2.0,
    ) -> None:
        self.api_url = http_base_url(api_url, "IPFS API", StoreError)
        self._policy = policy
        self._client = httpx.Client(timeout=policy.timeout_s + 5)
        self._timeout = f"{policy.timeout_s:g}s"  # the node's own limit, so a missing block fails, not hangs
        self._lookup_timeout = f"{lookup_timeout_s:g}s"

    def close(self) -> None:
        self._client.close()

    def _call(self, endpoint: str, params: dict[str, str] | list[tuple[str, str]], **kwargs: Any) -> httpx.Response:
        # Other errors are answers (e.g. "not pinned") for the caller to read; 502-504: a proxy or a node starting.
        return post_with_retries(
            self._client,
            f"{self.api_url}/api/v0/{endpoint}",
            policy=self._policy,
            transient=(502, 503, 504),
            error=StoreError,
            what="IPFS API",
            params=params,
            **kwargs,
        )

    def node_id(self) -> str:
        response = self._call("id", {})
        if response.status_code != 200:
            raise StoreError(f"IPFS id failed: HTTP {response.status_code}")
        document = _json(response)
        return str(document.get("ID", "")) if isinstance(document, dict) else ""

    def put(self, data: bytes) -> str:
        expected = cid_of(bytes(data))
        params = {"cid-version": "1", "raw-leaves": "true", "pin": "true", "cid-base": "base32", "quieter": "true"}
        files = {"file": ("block", bytes(data), "application/octet-stream")}
        response = self._call("add", params, files=files)
        if response.status_code != 200:
            raise StoreError(f"IPFS add failed: {_message(response)}")
        try:
            answered = _json(response)["Hash"]
        except (StoreError, KeyError, TypeError):
            raise StoreError(f"IPFS add answered unexpectedly: {response.text[:160]}") from None
        if answered != expected:
            raise StoreError(f"IPFS node stored the block as {answered}, expected {expected}")
        return expected

    def put_many(self, blocks: Sequence[bytes]) -> list[str]:
        """Every block in one ``dag/import`` of a CAR archive (its first block the root), then every block
        pinned in one ``pin/add``: two calls a batch instead of one per record. DSO's blocks are raw and
        link to nothing, so the archive is a bag of blocks; each is checked against its CID as the node
        serves it back (`get`), never trusted from the import's answer."""
        if not blocks:
            return []
        cids = [cid_of(bytes(data)) for data in blocks]
        car = encode_car([cids[0]], [bytes(data) for data in blocks])
        files = {"file": ("batch.car", car, "application/vnd.ipld.car")}
        response = self._call("dag/import", {"pin-roots": "true"}, files=files)
        if response.status_code != 200:
            raise StoreError(f"IPFS dag/import failed: {_message(response)}")
        pins = self._call("pin/add", [("arg", cid) for cid in dict.fromkeys(cids)] + [("timeout", self._timeout)])
        if pins.status_code != 200:
            raise StoreError(f"IPFS node could not pin the imported blocks: {_message(pins)}")
        return cids

    def get(self, cid: str) -> bytes:
        try:
            parse_cid(cid)
        except CIDError as exc:
            raise StoreError(str(exc)) from None
        response = self._call("block/get", {"arg": cid, "timeout": self._timeout})
        if response.status_code != 200:
            raise StoreError(f"IPFS node could not provide {cid}: {_message(response)}")
        try:
            verify_cid(cid, response.content)
        except CIDError:
            raise StoreError(f"IPFS node returned bytes that do not match {cid}; refused") from None
        return response.content

    def has(self, cid: str) -> bool:
        try:
            parse_cid(cid)
        except CIDError as exc:
            raise StoreError(str(exc)) from None
        response = self._call("block/stat", {"arg": cid, "offline": "true", "timeout": self._lookup_timeout})
        return response.status_code == 200

    def pin(self, cid: str) -> None:
        response = self._call("pin/add", {"arg": cid, "timeout": self._timeout})
        if response.status_code != 200:
            raise StoreError(f"IPFS node could not pin {cid}: {_message(response)}")
