"""Merkle batches over record CIDs, verifiable by a Solidity contract.

- leaf  = keccak256(0x00 || binary CID)
- inner = keccak256(0x01 || min(a, b) || max(a, b))

The 0x00/0x01 prefixes separate leaves from inner nodes, so an inner node can never be passed off as
a leaf (the second-preimage trick). Pairs are hashed in sorted order, so a proof is just the list of
sibling hashes, which is what a contract can check in a few lines. Leaves are sorted, so the same set
of CIDs always gives the same root; a node without a sibling at some level moves up unchanged
(duplicating it instead would let two different sets share a root).
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils.crypto import keccak

from dso.core.cid import parse_cid
from dso.errors import MerkleError

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def leaf_hash(cid: str) -> bytes:
    return keccak(LEAF_PREFIX + parse_cid(cid))


def node_hash(a: bytes, b: bytes) -> bytes:
    low, high = (a, b) if a <= b else (b, a)
    return keccak(NODE_PREFIX + low + high)


def _levels(cids: Sequence[str]) -> list[list[bytes]]:
    if not cids:
        raise MerkleError("a batch needs at least one record")
    leaves = sorted(leaf_hash(c) for c in cids)
    if len(set(leaves)) != len(leaves):
        raise MerkleError("a batch may not hold the same record twice")
    levels = [leaves]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])
        levels.append(above)
    return levels


def merkle_root(cids: Sequence[str]) -> bytes:
    return _levels(cids)[-1][0]


def merkle_proofs(cids: Sequence[str]) -> dict[str, list[bytes]]:
    """Inclusion proof (sibling hashes, leaf to root) for every CID of the batch."""
    levels = _levels(cids)
    position = {leaf: i for i, leaf in enumerate(levels[0])}
    proofs: dict[str, list[bytes]] = {}
    for cid in cids:
        index = position[leaf_hash(cid)]
        proof = []
        for level in levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            index //= 2
        proofs[cid] = proof
    return proofs


def verify_proof(cid: str, proof: Sequence[bytes], root: bytes) -> bool:
    node = leaf_hash(cid)
    for sibling in proof:
        if len(sibling) != 32:
            return False
        node = node_hash(node, sibling)
    return node == root
