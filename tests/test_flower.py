"""DSO rounds on Flower's simulation engine: the real `flwr` (its own environment, `make flower`), Ray
workers, an anvil chain, and every node running the real node code as a Flower ClientApp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOWER_DSO = ROOT / ".venv-flower" / "bin" / "dso"


@pytest.fixture(scope="module")
def flower_dso() -> Path:
    assert FLOWER_DSO.is_file(), "the Flower environment is missing: make flower (make test builds it)"
    return FLOWER_DSO


def test_flower_runs_the_network_dso_simulate_runs_and_computes_the_same_global_library(
    tmp_path: Path, anvil_url: str, flower_dso: Path
) -> None:
    """Ten SuperNodes, 30% of them Byzantine (wrong advice), two rounds on Flower's simulation engine, and
    `dso simulate` with the same seed and settings: the same keys, committee and lessons, and the same global
    library (its digest) at the end of every round; every honest Flower node holds it, and no poison."""
    settings = ["--nodes", "10", "--committee", "5", "--byzantine", "0.3", "--attack", "wrong", "--rounds", "2",
                "--seed", "3"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSO_")}
    summary_path = tmp_path / "summary.json"
    from dso.chain.client import connect, mine

    w3 = connect(anvil_url)  # the shared chain ends 10 blocks before an epoch: unaligned, round 1 would straddle it
    mine(w3, (90 - w3.eth.block_number) % 100)
    flower = subprocess.run(
        [str(flower_dso), "flower", "simulate", *settings, "--rpc", anvil_url, "--run-dir", str(tmp_path / "run"),
         "-o", str(summary_path), "--json"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert flower.returncode == 0, flower.stderr[-3000:]
    summary = json.loads(flower.stdout)
    assert summary == json.loads(summary_path.read_text())
    assert summary["engine"] == "flower" and summary["nodes_connected"] == 10 and summary["members"] == 5
    alone = subprocess.run(
        [sys.executable, "-m", "dso", "simulate", *settings, "--chain", "memory", "--json"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr[-3000:]
    reference = json.loads(alone.stdout)
    for entry, expected in zip(summary["rounds"], reference["rounds"], strict=True):
        assert entry["publish"]["replies"] == entry["pull"]["replies"] == 10
        assert entry["vote"]["replies"] == 5  # only the registry's members are asked to vote
        assert entry["publish"]["errors"] == entry["vote"]["errors"] == entry["pull"]["errors"] == []
        assert entry["global_digests"] == 1  # every honest node computed the same global library
        assert entry["global_digest"] == expected["global_digest"]  # and dso simulate computed it too
        assert expected["poisoned_accepted"] == 0
    first = summary["rounds"][0]
    assert first["learned"] > 0 and first["published"] > 0 and first["votes"] > 0 and first["merged"] > 0
    node_dirs = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("node"))
    assert node_dirs == [f"node{i:04d}" for i in range(10)]  # each SuperNode kept its own node


def test_the_flower_command_without_the_extra_says_how_to_get_it() -> None:
    """flwr is not a dependency of the core: the main environment has none, and `dso flower` says how to get it."""
    assert subprocess.run([sys.executable, "-c", "import flwr"], capture_output=True, timeout=60).returncode != 0
    cli = subprocess.run(
        [sys.executable, "-m", "dso", "flower", "simulate", "--nodes", "3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 1 and "pip install 'dso[flower]'" in cli.stderr and "Traceback" not in cli.stderr


DEPLOYED_CLIENT = """
import json, sys
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from dso.flower.app import sync

TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 7, 1
task = {"rpc": "http://127.0.0.1:9", "registry": "0x" + "00" * 20, "store": "", "folder": sys.argv[2],
        "seed": 0, "draws": 3, "round": 1, "wave": "publish", "learn": True}
message = Message(RecordDict({"dso": ConfigRecord(task)}), dst_node_id=7, message_type="query.sync")
context = Context(run_id=1, node_id=7, node_config={"dso-config": sys.argv[1]}, state=RecordDict(), run_config={})
reply = sync(message, context).content["dso"]
print(json.dumps({k: reply[k] for k in ("index", "address", "member", "learned", "library", "report", "error")}))
"""


def test_a_deployed_supernode_runs_its_own_node_and_ignores_the_chain_a_message_names(
    tmp_path: Path, anvil_url: str, flower_dso: Path
) -> None:
    """The deployment branch of the ClientApp: a SuperNode started with `dso-config` opens that node from its
    own configuration and keystore; the chain, registry and folder a message carries (here a dead port and
    an empty registry) are ignored, and the node does not learn from the simulation's pool."""
    password = "flower test password"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSO_")} | {"DSO_KEY_PASSWORD": password}

    def dso(*args: str) -> dict[str, object]:
        done = subprocess.run([sys.executable, "-m", "dso", *args, "--json"], capture_output=True, text=True,
                              env=env, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        parsed: dict[str, object] = json.loads(done.stdout)
        return parsed

    node = dso("node", "init", "--dir", str(tmp_path / "node"), "--rpc", anvil_url)
    config, address = str(node["config"]), str(node["address"])
    registry = dso("--config", config, "chain", "deploy", "--member", address)["address"]
    env["DSO_CHAIN_REGISTRY"] = str(registry)
    dso("--config", config, "library", "add", "When counting legs, multiply each animal's count by its legs.")
    python = flower_dso.parent / "python"
    done = subprocess.run(
        [str(python), "-c", DEPLOYED_CLIENT, config, str(tmp_path / "elsewhere")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    reply = json.loads(done.stdout.strip().splitlines()[-1])
    assert reply["error"] == "" and reply["address"] == address and reply["member"] is True
    assert reply["index"] == -1 and reply["learned"] == 0 and reply["library"] == 1
    report = json.loads(str(reply["report"]))
    assert report["published"]["records"] == 1  # its own lesson, signed and registered on its own chain
    assert not (tmp_path / "elsewhere").exists()  # nothing written where the message pointed
