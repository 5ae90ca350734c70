"""Node keys in standard encrypted Ethereum V3 keystore files; the private key never touches disk in clear.

The password comes from the caller (the CLI reads it from ``DSO_KEY_PASSWORD`` or a prompt). Files are
written atomically with mode 0600 and never overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from dso.core.untrusted import load_json
from dso.errors import KeystoreError
from dso.files import read_input, write_new_file

PASSWORD_ENV = "DSO_KEY_PASSWORD"  # where the CLI, and a Flower SuperNode's node, read a keystore's password


def new_keystore(
    path: Path, password: str, *, kdf: Literal["scrypt", "pbkdf2"] = "scrypt", iterations: int | None = None
) -> str:
    """Create a fresh key, store it encrypted at `path`, and return its address."""
    if not password:
        raise KeystoreError("a keystore needs a non-empty password")
    if path.exists():  # checked before the slow key derivation, and again when the file is created
        raise KeystoreError(f"{path} exists; refusing to overwrite a keystore")
    account = Account.create()
    document = Account.encrypt(account.key, password, kdf=kdf, iterations=iterations)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_new_file(path, json.dumps(document), KeystoreError, mode=0o600)  # two racing creators: one wins
    return str(account.address)


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise KeystoreError(f"keystore not found: {path}; create one with: dso keys new")
    try:
        document = load_json(read_input(path, KeystoreError, limit=64 * 1024), KeystoreError, str(path))
    except KeystoreError as exc:
        raise KeystoreError(f"{path} is not a keystore: {exc}") from None
    if not isinstance(document, dict) or ("crypto" not in document and "Crypto" not in document):
        raise KeystoreError(f"{path} is not a V3 keystore")
    return document


def keystore_address(path: Path) -> str:
    """The address a keystore claims, read without the password."""
    address = _read(path).get("address")
    if not isinstance(address, str):
        raise KeystoreError(f"{path} names no address")
    return str(to_checksum_address("0x" + address.removeprefix("0x")))


def load_account(path: Path, password: str) -> LocalAccount:
    document = _read(path)
    try:
        key = Account.decrypt(document, password)
    except ValueError as exc:
        raise KeystoreError(f"cannot unlock {path}: {str(exc)[:200]}") from None
    except (KeyError, TypeError, AttributeError, IndexError, OverflowError) as exc:  # fields of the wrong shape
        raise KeystoreError(
            f"{path} is not a usable V3 keystore ({exc.__class__.__name__}); restore it or make a new key"
        ) from None
    account: LocalAccount = Account.from_key(key)
    return account
