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


def test_dso_rounds_on_flowers_simulation_engine(tmp_path: Path, anvil_url: str, flower_dso: Path) -> None:
    """Four SuperNodes (three registry members) through two DSO rounds: every node learns, publishes a signed
    batch, the members vote, every node pulls and merges; all four end with the same global library, and
    what the network accepted reached every library."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSO_")}
    summary_path = tmp_path / "summary.json"
    result = subprocess.run(
        [str(flower_dso), "flower", "simulate", "--nodes", "4", "--members", "3", "--rounds", "2",
         "--rpc", anvil_url, "--run-dir", str(tmp_path / "run"), "-o", str(summary_path), "--json"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary == json.loads(summary_path.read_text())
    assert summary["engine"] == "flower" and summary["nodes_connected"] == 4
    first, second = summary["rounds"]
    for entry in (first, second):
        assert entry["publish"]["replies"] == 4 and entry["pull"]["replies"] == 4
        assert entry["vote"]["replies"] == 3  # only the registry's members are asked to vote
        assert entry["publish"]["errors"] == entry["vote"]["errors"] == entry["pull"]["errors"] == []
        assert entry["global_digests"] == 1  # every node computed the same global library
    assert first["learned"] > 0 and first["published"] > 0 and first["votes"] > 0
    assert first["merged"] > 0  # lessons one node learned reached the others
    sizes = second["libraries"]
    assert set(sizes) == {"0", "1", "2", "3"} and min(sizes.values()) > 0
    node_dirs = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("node"))
    assert node_dirs == ["node0000", "node0001", "node0002", "node0003"]  # each SuperNode kept its own node


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
