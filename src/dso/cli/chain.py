"""`dso chain ...`: a local chain node, the registry deployment, members, batches and votes."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import typer
from eth_account.signers.local import LocalAccount
from rich.table import Table

from dso.chain.client import DEV_CHAIN_IDS, AddressBook, RegistryClient, connect, deploy_registry, dev_fund
from dso.chain.registry import BatchState
from dso.cli.common import console, get_config, password, print_json, report
from dso.config import DSOConfig
from dso.errors import DSOError
from dso.keys import load_account
from dso.services import RunningService

app = typer.Typer(help="The on-chain ExperienceRegistry.", no_args_is_help=True)
members_app = typer.Typer(help="DAO membership, changed only by a 2/3 member vote.", no_args_is_help=True)
app.add_typer(members_app, name="members")
ipfs_app = typer.Typer(help="A local IPFS daemon for the content store.", no_args_is_help=True)

RpcOpt = typer.Option(None, "--rpc", help="JSON-RPC URL (default chain.rpc; empty = embedded EVM).")
KeystoreOpt = typer.Option(None, "--keystore", "-k", help="Node keystore (default chain.keystore).")
JsonOpt = typer.Option(False, "--json")


def _config(ctx: typer.Context, rpc: str | None, keystore: Path | None) -> DSOConfig:
    return get_config(ctx, **{"chain.rpc": rpc, "chain.keystore": keystore})


def _account(config: DSOConfig) -> LocalAccount:
    return load_account(config.chain.keystore, password(confirm=False))


def _registry(config: DSOConfig, account: LocalAccount | None) -> RegistryClient:
    w3 = connect(config.chain.rpc or None)
    chain_id = w3.eth.chain_id
    if account is not None and chain_id in DEV_CHAIN_IDS:
        dev_fund(w3, account.address)
    if not config.chain.rpc:  # the embedded EVM lives only in this process: deploy on first use
        if account is None:
            raise DSOError("the embedded chain needs a node key to deploy its registry (--keystore)")
        return deploy_registry(w3, account, [account.address])
    address = AddressBook(config.chain.addresses).get(chain_id)
    if address is None:
        raise DSOError(f"no registry deployed on chain {chain_id} in {config.chain.addresses}; run: dso chain deploy")
    return RegistryClient(w3, address, account)


def _member(ctx: typer.Context, rpc: str | None, keystore: Path | None) -> RegistryClient:
    """The registry, as the member whose keystore signs the votes."""
    config = _config(ctx, rpc, keystore)
    return _registry(config, _account(config))


@contextlib.contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM (a service manager, `kill`) stops a local service like Ctrl-C: as a KeyboardInterrupt, so the
    service's `with` stops its whole process group. SIGTERM's default action would end this process at once
    and leave anvil or the IPFS daemon holding its port."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(service: RunningService, line: str) -> None:
    """Keep a started local service running until it exits, Ctrl-C or SIGTERM."""
    console.print(line)
    while service.process.poll() is None:
        time.sleep(0.5)


@app.command()
def up(
    port: int = typer.Option(8545, help="Port on 127.0.0.1."),
    state: Path | None = typer.Option(None, help="Persist the chain state in this file across restarts."),
    workdir: Path = typer.Option(Path("runs/chain"), help="Where anvil's log goes."),
) -> None:
    """Run a local anvil node on 127.0.0.1 until interrupted."""
    from dso.services import start_anvil

    with _stopped_by_sigterm(), start_anvil(workdir, port=port, state=state) as node:
        _serve(node, f"anvil listening on {node.url} (chain id 31337); Ctrl-C stops it")


@ipfs_app.command("up")
def ipfs_up(
    port: int = typer.Option(5001, help="API port on 127.0.0.1."),
    workdir: Path = typer.Option(Path("runs/ipfs"), help="The daemon's repository and log (kept across restarts)."),
) -> None:
    """Run a js-ipfs daemon (kubo RPC API) on 127.0.0.1, offline, until interrupted."""
    from dso.services import start_ipfs

    with _stopped_by_sigterm(), start_ipfs(workdir, port=port) as daemon:
        _serve(daemon, f"IPFS API on {daemon.url}; Ctrl-C stops it")


@app.command()
def deploy(
    ctx: typer.Context,
    member: list[str] = typer.Option(None, "--member", help="Initial member address (repeat); default: this key."),
    rpc: str | None = RpcOpt,
    keystore: Path | None = KeystoreOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Deploy the registry and record its address for this chain id."""
    config = _config(ctx, rpc, keystore)
    if not config.chain.rpc:
        raise DSOError(
            "deploying to the embedded chain is pointless from the CLI (it ends with the process); use --rpc"
        )
    account = _account(config)
    w3 = connect(config.chain.rpc)
    if w3.eth.chain_id in DEV_CHAIN_IDS:
        dev_fund(w3, account.address)
    registry = deploy_registry(
        w3,
        account,
        member or [account.address],
        voting_window=config.chain.voting_window,
        quorum_bps=config.chain.quorum_bps,
    )
    AddressBook(config.chain.addresses).put(w3.eth.chain_id, registry.address)
    members = registry.members()
    payload = {"address": registry.address, "chain_id": w3.eth.chain_id, "members": members}
    if as_json:
        print_json(payload)
    else:
        console.print(
            f"ExperienceRegistry at {registry.address} on chain {w3.eth.chain_id}; members: {', '.join(members)}"
        )


@members_app.command("list")
def members_list(
    ctx: typer.Context, rpc: str | None = RpcOpt, keystore: Path | None = KeystoreOpt, as_json: bool = JsonOpt
) -> None:
    """The current DAO members."""
    config = _config(ctx, rpc, keystore)
    members = _registry(config, None if config.chain.rpc else _account(config)).members()
    if as_json:
        print_json(members)
    else:
        for address in members:
            console.print(address)


@members_app.command("propose")
def members_propose(
    ctx: typer.Context,
    address: str = typer.Argument(..., help="Account to add (or remove with --remove)."),
    remove: bool = typer.Option(False, "--remove"),
    rpc: str | None = RpcOpt,
    keystore: Path | None = KeystoreOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Propose adding or removing a member; the proposer still votes with `members vote`."""
    config = _config(ctx, rpc, keystore)
    proposal = _registry(config, _account(config)).propose_member(address, add=not remove)
    report(as_json, {"proposal": proposal}, f"proposal {proposal}: {'remove' if remove else 'add'} {address}")


@members_app.command("sponsor")
def members_sponsor(
    ctx: typer.Context,
    addresses: list[str] = typer.Argument(..., help="Publishers (node addresses) to vouch for."),
    rpc: str | None = RpcOpt,
    keystore: Path | None = KeystoreOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Vouch, as a member, for publishers that are not members: members' automatic votes then judge their
    batches (a fresh key's batches are otherwise left to reviewers). At most 1,024 per member."""
    from eth_utils.address import is_address, to_checksum_address

    for address in addresses:
        if not is_address(address):
            raise DSOError(f"{address[:60]!r} is not an account address")
    checked = [to_checksum_address(a) for a in addresses]
    registry = _member(ctx, rpc, keystore)
    registry.sponsor_many(checked)
    report(as_json, {"sponsored": checked}, f"sponsored {len(checked)} publisher(s): {', '.join(checked)}")


@members_app.command("vote")
def members_vote(
    ctx: typer.Context,
    proposal: int = typer.Argument(...),
    approve: bool = typer.Option(..., "--approve/--reject"),
    rpc: str | None = RpcOpt,
    keystore: Path | None = KeystoreOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Vote on a membership proposal."""
    registry = _member(ctx, rpc, keystore)
    registry.vote_member(proposal, approve)
    result = registry.proposal(proposal)
    report(as_json, result, f"proposal {proposal}: {result['state']} ({result['up']} for, {result['down']} against)")


@app.command()
def batches(
    ctx: typer.Context,
    state: str | None = typer.Option(None, help="pending, accepted or rejected."),
    rpc: str | None = RpcOpt,
    keystore: Path | None = KeystoreOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Submitted batches, oldest first."""
    wanted = None
    if state is not None:
        try:
            wanted = BatchState[state.upper()]
        except KeyError:
            raise DSOError(f"unknown state {state!r}; use pending, accepted or rejected") from None
    config = _config(ctx, rpc, keystore)
    found = _registry(config, None if config.chain.rpc else _account(config)).all_batches(wanted)
    if as_json:
        print_json([b.to_json() for b in found])
        return
    table = Table()
    for column in ("id", "node", "round", "state", "up", "down", "cid"):
        table.add_column(column)
    for b in found:
        table.add_row(
            "0x" + b.id.hex()[:12], b.node[:10], str(b.round), b.state.name.lower(), str(b.up), str(b.down), b.batch_cid
        )
    console.print(table)


def _batch_id(text: str) -> bytes:
    try:
        value = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        value = b""
    if len(value) != 32:
        raise DSOError(f"a batch id is 32 bytes of hex (0x + 64 digits), got {text!r}")
    return value


@app.command()
def vote(
    ctx: typer.Context,
    batches: list[str] = typer.Argument(..., help="Batch ids (0x + 64 hex digits each); several go in one voteMany."),
    approve: bool = typer.Option(..., "--approve/--reject"),
    rpc: str | None = RpcOpt,
    keystore: Path | None = KeystoreOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Vote on pending batches as a DAO member: one id is one vote; several are one voteMany transaction,
    which skips batches already decided, closed, or voted on by this member."""
    registry = _member(ctx, rpc, keystore)
    ids = [_batch_id(text) for text in batches]  # all checked before anything is sent
    if len(ids) == 1:
        registry.vote(ids[0], approve)
    else:
        registry.vote_many(ids, [approve] * len(ids))
    infos = [registry.batch(batch_id) for batch_id in ids]
    lines = [f"batch 0x{i.id.hex()[:12]} is {i.state.name.lower()} ({i.up} for, {i.down} against)" for i in infos]
    report(as_json, infos[0].to_json() if len(infos) == 1 else [i.to_json() for i in infos], "\n".join(lines))
