"""`dso keys` and `dso chain` against a real anvil node, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address

from dso.chain.client import RegistryClient, connect, dev_fund
from dso.core.cid import cid_of
from dso.core.records import BatchManifest, encode_batch
from dso.core.signing import sign_batch
from dso.keys import load_account


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DSO_KEY_PASSWORD": "test password", "DSO_CHAIN_ADDRESSES": str(tmp / "addresses.json")}
    return subprocess.run([sys.executable, "-m", "dso", *args], capture_output=True, text=True, env=env, timeout=300)


def ok(tmp: Path, *args: str) -> Any:
    result = run(tmp, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_keys_and_chain_commands(tmp_path: Path, anvil_url: str) -> None:
    key = str(tmp_path / "node.json")
    address = ok(tmp_path, "keys", "new", "--keystore", key)["address"]
    assert ok(tmp_path, "keys", "show", "--keystore", key, "--check")["address"] == address
    deployed = ok(tmp_path, "chain", "deploy", "--rpc", anvil_url, "--keystore", key)
    assert deployed["members"] == [address] and deployed["chain_id"] == 31337
    assert ok(tmp_path, "chain", "members", "list", "--rpc", anvil_url) == [address]
    assert ok(tmp_path, "chain", "batches", "--rpc", anvil_url) == []
    stranger = "0x" + "ab" * 20
    sponsored = ok(tmp_path, "chain", "members", "sponsor", stranger, "--rpc", anvil_url, "--keystore", key)
    assert sponsored["sponsored"] == [to_checksum_address(stranger)]
    assert RegistryClient(connect(anvil_url), deployed["address"]).is_vouched(stranger)
    twice = run(tmp_path, "chain", "members", "sponsor", stranger, "--rpc", anvil_url, "--keystore", key)
    assert twice.returncode == 1 and "AlreadySponsored" in twice.stderr and "Traceback" not in twice.stderr
    junk = run(tmp_path, "chain", "members", "sponsor", "0x12", "--rpc", anvil_url, "--keystore", key)
    assert junk.returncode == 1 and "not an account address" in junk.stderr

    # a node submits a batch through the Python API; the member approves it from the CLI
    w3 = connect(anvil_url)
    node = load_account(Path(key), "test password")
    dev_fund(w3, node.address)
    registry = RegistryClient(w3, deployed["address"], node)
    manifest = BatchManifest.build(node.address, 1, [cid_of(b"a"), cid_of(b"b")])
    batch_cid = cid_of(encode_batch(manifest))
    batch_id = registry.submit_batch(manifest, batch_cid, sign_batch(node.key, registry.domain, manifest, batch_cid))
    pending = ok(tmp_path, "chain", "batches", "--state", "pending", "--rpc", anvil_url)
    assert [b["id"] for b in pending] == ["0x" + batch_id.hex()]
    voted = ok(tmp_path, "chain", "vote", "0x" + batch_id.hex(), "--approve", "--rpc", anvil_url, "--keystore", key)
    assert voted["state"] == "accepted"
    assert len(ok(tmp_path, "chain", "batches", "--state", "accepted", "--rpc", anvil_url)) == 1

    # the CLI sent from this key meanwhile: the client notices the stale nonce and signs again
    more = []
    for round_ in (2, 3):  # two more batches, approved in one voteMany; the decided one is skipped, not an error
        manifest = BatchManifest.build(node.address, round_, [cid_of(b"c%d" % round_)])
        batch_cid = cid_of(encode_batch(manifest))
        signature = sign_batch(node.key, registry.domain, manifest, batch_cid)
        more.append("0x" + registry.submit_batch(manifest, batch_cid, signature).hex())
    many = ok(
        tmp_path, "chain", "vote", *more, "0x" + batch_id.hex(), "--approve", "--rpc", anvil_url, "--keystore", key
    )
    assert [b["state"] for b in many] == ["accepted"] * 3 and [b["id"] for b in many][:2] == more

    again = run(tmp_path, "chain", "vote", "0x" + batch_id.hex(), "--reject", "--rpc", anvil_url, "--keystore", key)
    assert again.returncode == 1 and again.stderr.strip() == "error: contract refused: AlreadyDecided()"
    bad_id = run(tmp_path, "chain", "vote", "0x12", "--approve", "--rpc", anvil_url, "--keystore", key)
    assert bad_id.returncode == 1 and "32 bytes of hex" in bad_id.stderr and "Traceback" not in bad_id.stderr
    dead = run(tmp_path, "chain", "batches", "--rpc", "http://127.0.0.1:9")
    assert dead.returncode == 1 and dead.stderr.startswith("error: cannot reach chain node")
    wrong = subprocess.run(
        [sys.executable, "-m", "dso", "keys", "show", "--keystore", key, "--check"],
        capture_output=True,
        text=True,
        env={**os.environ, "DSO_KEY_PASSWORD": "wrong"},
        timeout=120,
    )
    assert wrong.returncode == 1 and "cannot unlock" in wrong.stderr and "Traceback" not in wrong.stderr


def test_chain_up_stopped_by_sigterm_stops_anvil_too(tmp_path: Path, anvil_url: str) -> None:
    """SIGTERM (what a service manager or `kill` sends) stops `dso chain up` and the anvil it started: the
    port is free again. (`anvil_url` only marks this test as one that needs the npm services.)"""
    import signal
    import socket
    import time

    from dso.services import free_port

    port = free_port()
    env = {**os.environ, "CI": "true"}
    command = [sys.executable, "-m", "dso", "chain", "up", "--port", str(port), "--workdir", str(tmp_path / "chain")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                connect(f"http://127.0.0.1:{port}")
                break
            except Exception:
                time.sleep(0.3)
        else:
            raise AssertionError("dso chain up did not start anvil")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) is not None
    finally:
        if process.poll() is None:
            process.kill()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.3)
    else:
        raise AssertionError(f"anvil still holds port {port} after dso chain up got SIGTERM")
