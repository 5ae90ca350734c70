"""Start real local services on loopback: an IPFS daemon (js-ipfs) and an anvil chain node.

Used by the tests, by `.ci/run` through them, and by `dso chain up`. The binaries come from the npm
packages pinned in ``services/package.json`` (``make services``); ``DSO_SERVICES_DIR`` points elsewhere.
Every service listens on 127.0.0.1 only, keeps its state in a directory it is given, and is stopped
(with its process group) when the handle is closed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from dso.errors import ServiceError
from dso.files import source_checkout


def services_dir() -> Path:
    configured = os.environ.get("DSO_SERVICES_DIR")
    if configured:
        return Path(configured)
    root = source_checkout("services/package.json")
    if root is None:
        raise ServiceError(
            "the development services (anvil, js-ipfs) come with a source checkout: run `make services` there "
            "and set DSO_SERVICES_DIR to its services/ folder"
        )
    return root / "services"


def service_binary(name: str) -> Path:
    path = services_dir() / "node_modules" / ".bin" / name
    if not path.exists():
        raise ServiceError(f"{name} is not installed at {path}; run: make services")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningService:
    def __init__(self, name: str, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.url, self.process, self.log = name, url, process, log

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> RunningService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _spawn(
    name: str, command: list[str], workdir: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    log = workdir / f"{name}.log"
    handle = log.open("wb")
    process = subprocess.Popen(
        command,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    handle.close()
    return process, log


def _wait(service: RunningService, probe: httpx.Request, timeout_s: float) -> RunningService:
    deadline = time.monotonic() + timeout_s
    try:
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if service.process.poll() is not None:
                    tail = service.log.read_text(errors="replace")[-400:]
                    raise ServiceError(f"{service.name} exited with {service.process.returncode}: {tail}")
                try:
                    if client.send(probe).status_code == 200:
                        return service
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
    except BaseException:  # interrupted while starting (Ctrl-C, SIGTERM): nothing is left running
        service.stop()
        raise
    service.stop()
    raise ServiceError(f"{service.name} did not answer on {service.url} within {timeout_s:.0f} s; see {service.log}")


def start_ipfs(workdir: Path, *, port: int | None = None, timeout_s: float = 60.0) -> RunningService:
    """A js-ipfs daemon with the kubo RPC API on a free loopback port, offline (no bootstrap, no MDNS)."""
    workdir.mkdir(parents=True, exist_ok=True)
    binary = service_binary("jsipfs")
    repo = workdir / "ipfs-repo"
    env = {"IPFS_PATH": str(repo), "NODE_OPTIONS": f"--require {services_dir() / 'polyfill.cjs'}"}
    if not (repo / "config").exists():
        init = subprocess.run(
            [str(binary), "init", "--profile", "test"], env={**os.environ, **env}, capture_output=True, timeout=120
        )
        if init.returncode != 0:
            raise ServiceError(f"jsipfs init failed: {init.stderr.decode(errors='replace')[-300:]}")
    config = json.loads((repo / "config").read_text())
    api_port = port or free_port()
    config["Addresses"].update(
        API=f"/ip4/127.0.0.1/tcp/{api_port}",
        Gateway=f"/ip4/127.0.0.1/tcp/{free_port()}",
        RPC=f"/ip4/127.0.0.1/tcp/{free_port()}",
        Swarm=["/ip4/127.0.0.1/tcp/0"],
    )
    config["Bootstrap"] = []
    config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    (repo / "config").write_text(json.dumps(config))
    process, log = _spawn("ipfs", [str(binary), "daemon"], workdir, env)
    url = f"http://127.0.0.1:{api_port}"
    return _wait(RunningService("ipfs", url, process, log), httpx.Request("POST", f"{url}/api/v0/id"), timeout_s)


def start_anvil(
    workdir: Path, *, port: int | None = None, state: Path | None = None, timeout_s: float = 30.0
) -> RunningService:
    """anvil on 127.0.0.1 (chain id 31337): the last 256 states in memory, none on disk (no files left behind;
    a read pinned to a block that another node's transaction just superseded still finds its state)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    command = [
        str(service_binary("anvil")),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--prune-history",
        "256",
        "--silent",
    ]
    if state is not None:
        command += ["--state", str(state)]
    process, log = _spawn("anvil", command, workdir)
    url = f"http://127.0.0.1:{port}"
    probe = httpx.Request("POST", url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    return _wait(RunningService("anvil", url, process, log), probe, timeout_s)
