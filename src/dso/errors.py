"""Every exception DSO raises on purpose, in one tree.

A failure a user or a peer can cause (bad file, wrong hash, dead endpoint, forged record) is a
`DSOError` whose message is one complete line; the CLI prints it as ``error: ...`` and exits non-zero
instead of showing a traceback. Catch `DSOError` for all of them, or a branch for one kind::

    DSOError
    ├── ConfigError          configuration (TOML, environment, flags) is invalid
    ├── ModelError           a model pack is unknown, missing or fails its hash
    ├── LLMError             an LLM backend produced no usable completion
    ├── LibraryError         an experience-library operation was refused
    │   └── IndexFileError   the binary index file or its input is invalid
    ├── KeystoreError        a keystore is missing, corrupt, or the password is wrong
    ├── DataError            bytes from elsewhere do not decode or verify
    │   ├── CodecError       BitDelta codes
    │   ├── RecordError      experience records and batch manifests
    │   ├── CIDError         content ids
    │   ├── MerkleError      Merkle trees and proofs
    │   ├── SignatureError   EIP-712 batch signatures
    │   ├── CARError         CAR archives
    │   └── CertificateError a certified global library's entries
    ├── AggregationError     robust aggregation refused its input (too few vectors, NaN or infinity)
    ├── StoreError           a content store lacks a block or cannot be reached
    ├── NodeError            a node's state is unusable or one of its sync steps cannot go on
    ├── ChainError           a chain node is unreachable or a transaction failed
    │   └── ContractRevert   the registry refused a call with one of its custom errors
    └── ServiceError         a local development service could not be found or started
"""

from __future__ import annotations

from typing import Any


class DSOError(Exception):
    """A failure caused by input or environment, explained in one line."""


class ConfigError(DSOError):
    """The configuration (TOML, environment or flags) is invalid."""


class ModelError(DSOError):
    """A model pack is unknown, missing or fails its integrity check."""


class LLMError(DSOError):
    """An LLM backend could not produce a completion (dead endpoint, bad reply)."""


class LibraryError(DSOError):
    """An experience library operation was refused (bad input, unknown id, wrong embedder)."""


class IndexFileError(LibraryError):
    """The binary index file or its input is invalid."""


class KeystoreError(DSOError):
    """A keystore is missing, corrupt, or the password is wrong."""


class DataError(DSOError):
    """Bytes from elsewhere (a file, a peer, a store) do not decode or do not verify; nothing was accepted."""


class CodecError(DataError):
    """Codec bytes or parameters are invalid; nothing was decoded."""


class RecordError(DataError):
    """Record or batch bytes are malformed, non-canonical or out of range."""


class CIDError(DataError):
    """A CID is malformed, unsupported, or does not match its bytes."""


class MerkleError(DataError):
    """A Merkle tree could not be built, or a proof does not hold."""


class SignatureError(DataError):
    """A signature is malformed, malleable, or not by the claimed node for this registry."""


class CARError(DataError):
    """A CAR file is truncated, malformed, or holds a block that does not match its CID."""


class CertificateError(DataError):
    """An entries document does not match the certificate the registry holds, or an entry is malformed."""


class AggregationError(DSOError):
    """Robust aggregation refused its input (too few vectors for the rule, NaN or infinity, unknown rule)."""


class StoreError(DSOError):
    """A block is missing, corrupt, or the store cannot be reached."""


class NodeError(DSOError):
    """A node's state file is unusable, or a sync step cannot go on (its configuration, its registry)."""


class ChainError(DSOError):
    """A chain node is unreachable, or a transaction failed."""


class ContractRevert(ChainError):
    """The contract refused a call with one of its custom errors."""

    def __init__(self, name: str, args: tuple[Any, ...]) -> None:
        self.name, self.args_ = name, args
        shown = ", ".join(a.hex() if isinstance(a, bytes) else str(a) for a in args)
        super().__init__(f"contract refused: {name}({shown})")


class ServiceError(DSOError):
    """A local service could not be found or started."""
