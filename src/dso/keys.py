"""Node keys in standard encrypted Ethereum V3 keystore files; the private key never touches disk in clear.

The password comes from the caller (the CLI reads it from ``DSO_KEY_PASSWORD`` or a prompt). Files are
written atomically with mode 0600 and never overwritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from dso.errors import KeystoreError


def new_keystore(
    path: Path, password: str, *, kdf: Literal["scrypt", "pbkdf2"] = "scrypt", iterations: int | None = None
) -> str:
    """Create a fresh key, store it encrypted at `path`, and return its address."""
    if not password:
        raise KeystoreError("a keystore needs a non-empty password")
    if path.exists():
        raise KeystoreError(f"{path} exists; refusing to overwrite a keystore")
    account = Account.create()
    document = Account.encrypt(account.key, password, kdf=kdf, iterations=iterations)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle)
    os.replace(tmp, path)
    return str(account.address)


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeystoreError(f"keystore not found: {path}; create one with: dso keys new") from None
    except (ValueError, UnicodeDecodeError):
        raise KeystoreError(f"{path} is not a keystore (invalid JSON)") from None
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
        raise KeystoreError(f"cannot unlock {path}: {exc}") from None
    account: LocalAccount = Account.from_key(key)
    return account
