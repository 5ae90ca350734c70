"""`dso serve`: the reviewer page of a node (pending batches, global library, status) on loopback."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

import typer

from dso.cli.common import err_console, get_config
from dso.errors import ConfigError, DSOError

TOKEN_ENV = "DSO_SERVE_TOKEN"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_command(
    ctx: typer.Context,
    config_file: Path | None = typer.Option(None, "--config", "-c", help="The node's TOML file (dso node init)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback needs --public."),
    port: int = typer.Option(8765, min=1, max=65535),
    public: bool = typer.Option(
        False, "--public", help="Allow a non-loopback --host (reads are then open to it); needs --tls-cert/--tls-key."
    ),
    allow_host: list[str] = typer.Option([], "--allow-host", help="Extra Host header names to answer (proxies)."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="PEM certificate: serve HTTPS."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert."),
) -> None:
    """Serve the reviewer page; the node opens read-only and its key is unlocked only to sign a vote.

    Writing (votes) needs the token printed at start ($DSO_SERVE_TOKEN sets one) and the key's password.
    Beyond this machine (--public) the page is served over HTTPS only: the token and the key's password
    never cross a network in clear. Alternatively keep the default loopback host behind a TLS proxy."""
    import uvicorn

    from dso.network import open_node
    from dso.web import Reviewer, create_app

    if config_file is not None:
        ctx.find_root().obj.config_path = config_file
    config = get_config(ctx)
    if not _loopback(host) and not public:
        raise ConfigError(f"--host {host} is not a loopback address: add --public to serve beyond this machine")
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    for name, given in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if given is not None and not given.is_file():
            raise ConfigError(f"{name} {given} is not a readable file")
    if not _loopback(host) and tls_cert is None:
        raise ConfigError(
            f"--host {host} beyond this machine needs --tls-cert and --tls-key: the sign-in token and the key's "
            "password would cross the network in clear (or serve on loopback behind a TLS proxy)"
        )
    if not config.chain.keystore.is_file():
        raise DSOError(f"no node key at {config.chain.keystore}; set one up with: dso node init")
    if not config.chain.rpc:
        raise ConfigError(
            "the node's chain is the embedded EVM, which lives only inside one process: "
            "serve a node whose chain.rpc names a running chain"
        )
    token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)
    node = open_node(config, None)
    hosts = ("127.0.0.1", "localhost", "::1", host, *allow_host)
    app = create_app(Reviewer(node), token, hosts=hosts)
    shown_host = f"[{host}]" if ":" in host else host
    scheme = "https" if tls_cert is not None else "http"
    err_console.print(f"reviewer page of node {node.address}: {scheme}://{shown_host}:{port}/", highlight=False)
    err_console.print(f"sign in to vote: {scheme}://{shown_host}:{port}/login?token={token}", highlight=False)
    tls = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)} if tls_cert is not None else {}
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False, **tls)  # type: ignore[arg-type]
    finally:
        node.close()
