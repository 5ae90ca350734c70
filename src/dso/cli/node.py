"""`dso node ...`: set up a node, run it (learning plus periodic syncs), sync by hand, read its status."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from dso.chain.client import checksum_address
from dso.cli.common import console, err_console, get_config, password, print_json, report, shown
from dso.config import DSOConfig
from dso.endpoints import http_base_url
from dso.errors import ConfigError, DSOError, StoreError
from dso.files import write_new_file
from dso.keys import new_keystore
from dso.network import node_paths, open_node
from dso.node import DSOTrainer, Node, NodeStatus, SyncReport
from dso.node.trial import gate_trial

app = typer.Typer(help="A DSO node: learn, publish signed batches, vote, pull and merge.", no_args_is_help=True)
ConfigOpt = typer.Option(None, "--config", "-c", help="The node's TOML file (made by dso node init).")
JsonOpt = typer.Option(False, "--json")


def _config(ctx: typer.Context, path: Path | None) -> DSOConfig:
    if path is not None:
        ctx.find_root().obj.config_path = path
    return get_config(ctx)


def _log(line: str) -> None:
    err_console.print(shown(line, 1000))


def _open(ctx: typer.Context, path: Path | None, quiet: bool = False, config: DSOConfig | None = None) -> Node:
    config = config or _config(ctx, path)
    if not config.chain.keystore.is_file():
        raise DSOError(f"no node key at {config.chain.keystore}; set one up with: dso node init")
    return open_node(config, password(confirm=False), log=None if quiet else _log)


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    lines = ["# a DSO node, written by dso node init"]
    for name, values in sections.items():
        lines.append(f"\n[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


@app.command()
def init(
    directory: Path = typer.Option(Path("dso-node"), "--dir", help="The node's folder (key, config, state)."),
    rpc: str = typer.Option("", help="JSON-RPC URL of the chain (empty: the embedded EVM, one process only)."),
    ipfs: str = typer.Option("", help="IPFS HTTP API URL (empty: the embedded block store in --dir)."),
    registry: str = typer.Option("", help="ExperienceRegistry address (empty: from the address book)."),
    dataset: str = typer.Option("", help="What the node learns on (train.dataset; empty: the default)."),
    as_json: bool = JsonOpt,
) -> None:
    """Create a node: an encrypted key (password from $DSO_KEY_PASSWORD or a prompt) and its config file."""
    if rpc:
        http_base_url(rpc, "chain RPC", ConfigError)
    if ipfs:
        http_base_url(ipfs, "IPFS API", StoreError)
    if registry:
        registry = str(checksum_address(registry))
    directory = directory.expanduser().resolve()
    config_file = directory / "dso.toml"
    if config_file.exists():
        raise DSOError(f"{config_file} exists; a node is set up there already")
    keystore = directory / "node-key.json"
    address = new_keystore(keystore, password(confirm=True))
    sections: dict[str, dict[str, Any]] = {
        "chain": {
            "rpc": rpc,
            "keystore": str(keystore),
            "registry": registry,
            "addresses": str(directory / "addresses.json"),
        },
        "network": {"enable_dso": True, "store": ipfs, "node_dir": str(directory)},
        "library": {"path": str(directory / "run" / "library.db")},
    }
    if dataset:
        sections["train"] = {"dataset": dataset}
    write_new_file(config_file, _toml(sections), DSOError)
    payload = {"address": address, "config": str(config_file), "keystore": str(keystore)}
    report(as_json, payload, f"node {address}: config {config_file}")


@app.command()
def run(
    ctx: typer.Context,
    config_file: Path | None = ConfigOpt,
    learn: bool = typer.Option(True, "--learn/--no-learn", help="Learn on train.dataset before syncing on."),
    syncs: int | None = typer.Option(
        None, min=0, help="Syncs after learning (default: keep syncing until interrupted)."
    ),
    interval: float = typer.Option(10.0, min=0.0, help="Seconds between syncs after learning."),
    as_json: bool = JsonOpt,
) -> None:
    """Learn with a sync every network.sync_frequency batches, then keep syncing every --interval seconds."""
    from dso.cli.common import Bars, progress_bars

    config = _config(ctx, config_file)
    if learn and config.library.path.resolve() != (node_paths(config)["run"] / "library.db").resolve():
        raise DSOError(f"library.path must be {node_paths(config)['run'] / 'library.db'} for a learning node")
    node = _open(ctx, config_file, config=config)
    summary: dict[str, Any] = {"node": node.address, "syncs": []}
    reports: list[SyncReport] = []
    with progress_bars(as_json) as progress:
        if learn and config.train.train_size > 0:
            hooks = Bars(progress).hooks()
            trainer = DSOTrainer(config, node, node_paths(config)["run"], hooks=hooks, trial=gate_trial(config))
            trained = trainer.run()
            reports += trainer.syncs
            summary["library_size"] = trained["library_size"]
    done = 0
    while syncs is None or done < syncs:
        if done or reports:
            time.sleep(interval)
        result = node.sync()
        reports.append(result)
        done += 1
        if not as_json:
            _log(result.line())
    status = node.status()
    summary["syncs"] = [r.to_json() for r in reports]
    summary["status"] = status.to_json()
    if as_json:
        print_json(summary)
    else:
        _print_status(status)


@app.command()
def sync(ctx: typer.Context, config_file: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """One sync by hand: send the outbox, publish, vote, pull and merge."""
    node = _open(ctx, config_file, quiet=as_json)
    result = node.sync(retry_all=True)
    report(as_json, result.to_json(), result.line())
    if result.pulled.retrying:  # the node could not do its work: say so, and exit non-zero
        raise DSOError(
            f"{len(result.pulled.retrying)} accepted batches could not be fetched (store or chain unreachable: "
            f"{shown(result.pulled.retrying[0].reason, 200)}); the next sync tries them again"
        )


def _print_status(status: NodeStatus) -> None:
    console.print(status.line())


@app.command()
def status(ctx: typer.Context, config_file: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Round, library size, outbox, last sync, bytes sent and received, refused batches."""
    node = _open(ctx, config_file, quiet=True)
    payload = node.status()
    if as_json:
        print_json(payload.to_json())
    else:
        _print_status(payload)


@app.command("global")
def global_library(ctx: typer.Context, config_file: Path | None = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """The global library as this node computes it from the accepted batches, with supporters and reasons."""
    node = _open(ctx, config_file, quiet=True)
    accepted = node.global_library().accepted
    rows = sorted((g.to_json() for g in accepted), key=lambda row: row["text"])
    if as_json:
        print_json(rows)
        return
    for row in rows:
        console.print(f"{shown(row['text'])}  [dim]({len(row['supporters'])} nodes: {shown(row['reason'])})")
