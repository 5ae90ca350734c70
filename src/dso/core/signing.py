"""EIP-712 signatures over batches: who submitted which Merkle root, for which registry and round.

The signed struct binds the chain id and the registry contract address (in the EIP-712 domain) and
the node, Merkle root, batch CID and round (in the message), so a signature cannot be replayed on
another chain, another contract or another round. Signatures with a high ``s`` value are refused:
each (message, key) pair then has exactly one valid signature, as the contract also requires.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.exceptions import BadSignature
from eth_utils.address import is_checksum_address, to_checksum_address
from eth_utils.crypto import keccak

from dso.core.records import BatchManifest
from dso.errors import SignatureError

DOMAIN_NAME = "DSO ExperienceRegistry"
DOMAIN_VERSION = "1"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
BATCH_TYPE = [
    {"name": "node", "type": "address"},
    {"name": "merkleRoot", "type": "bytes32"},
    {"name": "batchCid", "type": "string"},
    {"name": "round", "type": "uint64"},
]


@dataclasses.dataclass(frozen=True)
class RegistryDomain:
    """Where a signature is valid: one chain and one ExperienceRegistry contract."""

    chain_id: int
    contract: str

    def __post_init__(self) -> None:
        if not is_checksum_address(self.contract):
            object.__setattr__(self, "contract", to_checksum_address(self.contract))


def batch_typed_data(domain: RegistryDomain, manifest: BatchManifest, batch_cid: str) -> dict[str, Any]:
    return _typed_data(domain, manifest.node, manifest.merkle_root, batch_cid, manifest.round)


def _typed_data(domain: RegistryDomain, node: str, merkle_root: bytes, batch_cid: str, round_: int) -> dict[str, Any]:
    message = {"node": node, "merkleRoot": merkle_root, "batchCid": batch_cid, "round": round_}
    return typed_data(domain, "Batch", BATCH_TYPE, message)


def typed_data(
    domain: RegistryDomain, primary: str, fields: list[dict[str, str]], message: dict[str, Any]
) -> dict[str, Any]:
    """An EIP-712 message of type `primary` under this registry's domain (name, version, chain, contract)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            primary: fields,
        },
        "primaryType": primary,
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": domain.chain_id,
            "verifyingContract": domain.contract,
        },
        "message": message,
    }


def batch_id(manifest: BatchManifest, batch_cid: str) -> bytes:
    """The registry's id of a batch: its EIP-712 struct hash (the contract's `batchId`), computed locally."""
    return submission_id(manifest.node, manifest.merkle_root, batch_cid, manifest.round)


def submission_id(node: str, merkle_root: bytes, batch_cid: str, round_: int) -> bytes:
    """`batch_id` from a submission's signed fields, as a registry transaction carries them."""
    type_hash = keccak(text="Batch(address node,bytes32 merkleRoot,string batchCid,uint64 round)")
    return keccak(
        abi_encode(
            ["bytes32", "address", "bytes32", "bytes32", "uint64"],
            [type_hash, node, merkle_root, keccak(text=batch_cid), round_],
        )
    )


def sign_batch(private_key: bytes, domain: RegistryDomain, manifest: BatchManifest, batch_cid: str) -> bytes:
    """A 65-byte (r, s, v) signature; the key must belong to the manifest's node."""
    account = Account.from_key(private_key)
    if account.address != manifest.node:
        raise SignatureError(f"key {account.address} cannot sign for node {manifest.node}")
    signed = Account.sign_typed_data(private_key, full_message=batch_typed_data(domain, manifest, batch_cid))
    return bytes(signed.signature)  # eth-account produces low-s signatures


def recover_batch_signer(domain: RegistryDomain, manifest: BatchManifest, batch_cid: str, signature: bytes) -> str:
    return recover_submission_signer(domain, manifest.node, manifest.merkle_root, batch_cid, manifest.round, signature)


def recover_submission_signer(
    domain: RegistryDomain, node: str, merkle_root: bytes, batch_cid: str, round_: int, signature: bytes
) -> str:
    """The address that signed (node, root, CID, round) for this registry, under the contract's own rules."""
    return recover_typed_signer(_typed_data(domain, node, merkle_root, batch_cid, round_), signature)


def recover_typed_signer(full_message: dict[str, Any], signature: bytes) -> str:
    """The signer of an EIP-712 message: 65 bytes (r, s, v), low s (one valid signature per key and message)."""
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != 65:
        raise SignatureError("a signature is 65 bytes (r, s, v)")
    s = int.from_bytes(signature[32:64], "big")
    if not 0 < s <= SECP256K1_N // 2:
        raise SignatureError("signature has a high s value (malleable); refused")
    if signature[64] not in (27, 28):
        raise SignatureError(f"signature v must be 27 or 28, got {signature[64]}")
    message = encode_typed_data(full_message=full_message)
    try:
        return str(Account.recover_message(message, signature=bytes(signature)))
    except (BadSignature, ValueError) as exc:
        raise SignatureError(f"signature cannot be recovered: {exc}") from None


def verify_batch_signature(domain: RegistryDomain, manifest: BatchManifest, batch_cid: str, signature: bytes) -> None:
    """Raise unless `signature` is the manifest node's signature for this chain, contract and round."""
    signer = recover_batch_signer(domain, manifest, batch_cid, signature)
    if signer != manifest.node:
        raise SignatureError(f"batch signed by {signer}, not by its node {manifest.node} (or for another registry)")
