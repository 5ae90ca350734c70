"""`dso cid` and `dso keys ...`: content ids and node keys."""

from __future__ import annotations

from pathlib import Path

import typer

from dso.cli.common import password, print_json, report
from dso.core.cid import MAX_BLOCK, cid_of
from dso.errors import DSOError
from dso.files import read_input
from dso.keys import keystore_address, load_account, new_keystore

keys_app = typer.Typer(help="Node keys (encrypted Ethereum V3 keystores).", no_args_is_help=True)


def cid_command(
    files: list[Path] = typer.Argument(..., help="Files to hash (each at most 256 KiB, one raw IPFS block)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Print each file's CID, one per line, as `ipfs add -nq --cid-version=1 --raw-leaves` would."""
    results = []
    for path in files:
        data = read_input(path)
        if len(data) > MAX_BLOCK:
            raise DSOError(f"{path} is {len(data)} bytes; dso cid handles single-block files up to {MAX_BLOCK} bytes")
        results.append({"file": str(path), "cid": cid_of(data), "bytes": len(data)})
    if as_json:
        print_json(results)
    else:
        for row in results:
            print(row["cid"])


@keys_app.command("new")
def keys_new(
    keystore: Path = typer.Option(Path("node-key.json"), "--keystore", "-k", help="File to create."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a node key in an encrypted keystore (password from $DSO_KEY_PASSWORD or a prompt)."""
    address = new_keystore(keystore, password(confirm=True))
    report(as_json, {"address": address, "keystore": str(keystore)}, f"{address}  (keystore {keystore})")


@keys_app.command("show")
def keys_show(
    keystore: Path = typer.Option(Path("node-key.json"), "--keystore", "-k"),
    check: bool = typer.Option(False, "--check", help="Also unlock it to prove the password works."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show the address of a keystore."""
    address = keystore_address(keystore)
    if check:
        unlocked = load_account(keystore, password(confirm=False)).address
        if unlocked != address:
            raise DSOError(f"{keystore} claims {address} but holds the key of {unlocked}")
    report(as_json, {"address": address, "keystore": str(keystore), "unlocked": check}, address)
