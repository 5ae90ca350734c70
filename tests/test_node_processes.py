"""Three real `dso node run` processes against anvil and a js-ipfs daemon; one is killed mid-sync and restarted.

Each node learns on its own questions (a scripted model answers, served on loopback: the model is not
what this tests), publishes through IPFS and the registry, votes on the others' batches, pulls and merges.
Node 1 is killed with SIGKILL right after the registry took its batch and before its outbox said so, the
hardest moment: a naive node would submit the batch again, or lose it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dso.chain.client import RegistryClient, connect
from dso.core.records import decode_batch
from dso.library import ExperienceLibrary
from dso.llm.testing import ScriptedLLM, ScriptedRequest, serve_openai
from dso.network import close_epoch
from dso.services import free_port
from dso.store.ipfs import IPFSStore

SHARED = "When adding two numbers, count up from the larger one."
OWN = [
    "When a sum carries, write the carried one above the next column before adding it.",
    "When both addends are even, check that the total you found is even as well.",
    "When one addend ends in nine, add ten to it and take one away at the end.",
]


def scripted(request: ScriptedRequest) -> str | list[str]:
    """Solver: one right and one wrong attempt. Extractor: the shared lesson and the node's own (by its numbers)."""
    schema = json.dumps(request.json_schema or {})
    asked = re.search(r"What is (\d+) \+ (\d+)", request.prompt)
    if '"lessons"' in schema:
        own = OWN[int(asked[1]) // 100 - 1] if asked else SHARED
        return json.dumps({"lessons": [SHARED, own]})
    if '"operations"' in schema:
        candidates = re.findall(r"^- (When .*)$", request.prompt, re.MULTILINE)
        return json.dumps({"operations": [{"op": "ADD", "id": "", "text": c} for c in candidates]})
    answer = int(asked[1]) + int(asked[2]) if asked else 0
    return [f"ANSWER: {answer if i % 2 == 0 else answer + 1}" for i in range(request.n)]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with serve_openai(ScriptedLLM(scripted)) as url:
        yield url


def dso(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dso", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dso", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else result.stdout


@pytest.mark.slow
def test_three_node_processes_agree_after_one_is_killed_mid_sync(
    tmp_path: Path, anvil_url: str, ipfs_api: str, endpoint: str
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DSO_")} | {"DSO_KEY_PASSWORD": "node-password"}
    configs, addresses = [], []
    for index in range(3):
        data = tmp_path / f"sums{index}.jsonl"
        first = 100 * (index + 1)
        rows = [{"question": f"What is {first + k} + {k + 2}?", "answer": str(first + 2 * k + 2)} for k in range(8)]
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))
        made = ok(
            dso(
                "node", "init", "--dir", str(tmp_path / f"node{index}"), "--rpc", anvil_url, "--ipfs", ipfs_api,
                "--dataset", str(data), "--json", env=base,
            )
        )  # fmt: skip
        configs.append(made["config"])
        addresses.append(made["address"])
    members = [flag for address in addresses for flag in ("--member", address)]
    deployed = ok(dso("--config", configs[0], "chain", "deploy", *members, "--json", env=base))
    env = {
        **base,
        "DSO_CHAIN_REGISTRY": deployed["address"],
        "DSO_LLM_BACKEND": "openai",
        "DSO_LLM_BASE_URL": endpoint,
        "DSO_LLM_MODEL": "scripted",
        "DSO_LLM_RETRIES": "0",
        "DSO_TRAIN_TRAIN_SIZE": "4",
        "DSO_TRAIN_HELDOUT_SIZE": "2",
        "DSO_TRAIN_BATCH_SIZE": "2",
        "DSO_TRAIN_GROUP_SIZE": "2",
        "DSO_TRAIN_MAX_TOKENS": "32",
        "DSO_NETWORK_SYNC_FREQUENCY": "1",
        # three nodes, each with a lesson of its own: one supporter in three must be enough
        "DSO_CONSENSUS_ACCEPTANCE_THRESHOLD": "0.3",
    }
    run = ("node", "run", "--syncs", "4", "--interval", "1", "--json")
    processes = [spawn("--config", c, *run, env=env | ({"DSO_FAULT": "sync:submitted"} if i == 1 else {}))
                 for i, c in enumerate(configs)]  # fmt: skip
    killed = processes[1]
    killed.wait(timeout=300)
    assert killed.returncode == -9, killed.stderr.read() if killed.stderr else ""
    processes[1] = spawn("--config", configs[1], *run, env=env)
    for process in processes:
        _, err = process.communicate(timeout=400)
        assert process.returncode == 0, err[-3000:]
    # the runs ended on their own clocks: one more sync each lets every vote land; then time passes (the epoch's
    # last block and every deadline are mined) and one more sync each pulls and merges the closed epochs
    registry = RegistryClient(connect(anvil_url), deployed["address"])
    for config in configs:
        ok(dso("--config", config, "node", "sync", "--json", env=env))
    assert close_epoch(registry.w3, registry) > 0
    for config in configs:
        ok(dso("--config", config, "node", "sync", "--json", env=env))
    statuses = [ok(dso("--config", c, "node", "status", "--json", env=env)) for c in configs]

    # the same accepted global library everywhere, with every node's lessons in it
    assert len({s["global_library"]["digest"] for s in statuses}) == 1
    global_texts = {row["text"] for row in ok(dso("--config", configs[0], "node", "global", "--json", env=env))}
    assert global_texts == {SHARED, *OWN}
    # no batch submitted twice: each node's batches on chain are its outbox's, and no record is in two of them
    store = IPFSStore(ipfs_api)
    batches = registry.all_batches()
    for status in statuses:
        mine = [b for b in batches if b.node == status["node"]]
        assert sorted("0x" + b.id.hex() for b in mine) == sorted(status["own_batches"])
        assert status["outbox"] == {"done": len(mine)}
        cids = [cid for b in mine for cid in decode_batch(store.get(b.batch_cid)).records]
        assert len(cids) == len(set(cids))
        assert all(b.state.name == "ACCEPTED" for b in mine)
    # no experience lost: every node's library holds every lesson, the killed node's included
    for index in range(3):
        library = ExperienceLibrary(tmp_path / f"node{index}" / "run" / "library.db", create=False)
        assert {SHARED, *OWN} <= {e.text for e in library.all()}, index
        library.close()
    # a new reader whose IPFS daemon is down: `dso node sync` says so and exits non-zero, refusing nothing; once
    # the daemon answers, the next sync fetches every accepted batch and agrees with the others
    dead = f"http://127.0.0.1:{free_port()}"
    reader = ok(dso("node", "init", "--dir", str(tmp_path / "reader"), "--rpc", anvil_url, "--ipfs", dead,
                    "--json", env=base))  # fmt: skip
    down = dso("--config", reader["config"], "node", "sync", env=env)
    last = down.stderr.strip().splitlines()[-1]  # the node's log lines come first: what it tried, on stderr
    assert down.returncode == 1 and last.startswith("error: ") and "could not be fetched" in last
    assert "Traceback" not in down.stderr
    waiting = ok(dso("--config", reader["config"], "node", "status", "--json", env=env))
    assert waiting["refused_batches"] == [] and len(waiting["retrying_batches"]) == len(batches)
    up = ok(dso("--config", reader["config"], "node", "sync", "--json", env=env | {"DSO_NETWORK_STORE": ipfs_api}))
    assert len(up["pulled"]["verified"]) == len(batches) and up["pulled"]["retrying"] == []
    after = ok(dso("--config", reader["config"], "node", "status", "--json", env=env | {"DSO_NETWORK_STORE": ipfs_api}))
    assert after["global_library"]["digest"] == statuses[0]["global_library"]["digest"]


@pytest.mark.slow
def test_dso_train_with_the_network_publishes_as_it_learns(tmp_path: Path, endpoint: str) -> None:
    """`dso train --dso` on a node of the embedded chain (a network of one, inside the process)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DSO_")} | {"DSO_KEY_PASSWORD": "pw"}
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {100 + k} + 2?", "answer": str(102 + k)}) + "\n"
                            for k in range(8)))  # fmt: skip
    made = ok(dso("node", "init", "--dir", str(tmp_path / "node"), "--json", env=base))
    env = base | {"DSO_LLM_BACKEND": "openai", "DSO_LLM_BASE_URL": endpoint, "DSO_NETWORK_SYNC_FREQUENCY": "2"}
    flags = ["--model", "scripted", "--dataset", str(data), "--train-size", "6", "--heldout-size", "2"]
    flags += ["--batch-size", "2", "--group-size", "2", "--max-tokens", "32"]
    result = ok(dso("--config", made["config"], "train", "--dso", "--run-dir", str(tmp_path / "run"), *flags,
                    "--json", env=env))  # fmt: skip
    syncs = result["train"]["syncs"]
    assert len(syncs) == 2  # after batch 2, and after batch 3 (the last)
    assert syncs[0]["published"]["records"] >= 2  # the shared lesson and the node's own
    assert sum(s["bytes"]["sent"].get("records", 0) for s in syncs) > 0
    assert {SHARED, OWN[0]} <= set(result["train"]["experiences"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["node", "init", "--rpc", "ftp://example.org"], "chain RPC"),
        (["node", "init", "--registry", "0x1234"], "not an Ethereum address"),
        (["node", "status", "--config", "missing.toml"], "file not found"),
        (["node", "sync"], "no node key"),
    ],
)
def test_node_commands_refuse_bad_input_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSO_")} | {"DSO_KEY_PASSWORD": "pw"}
    result = subprocess.run(
        [sys.executable, "-m", "dso", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "dso-node").exists()  # nothing half made
