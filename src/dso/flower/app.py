"""A DSO round on Flower's engine: the ServerApp sequences the round, every ClientApp is a DSO node.

A DSO round is three waves of `Node.sync` (publish, then the registry members vote, then everyone pulls
and merges), as in `dso simulate`; here each wave is one Flower message to each node (message type
`query.sync`) and its reply. Flower only carries the sequencing: the trust is where it always is, in the
signed batches, the registry and the consensus every node recomputes, so a ServerApp can delay or skip a
node's turn, never change what it merges.

Two ways to run the same two apps:

- **simulation** (`dso flower simulate`, Flower's simulation engine on one machine): the ServerApp deploys
  a registry on the given chain for N nodes whose keys derive from a seed, with a committee of members, and
  tells every ClientApp (SuperNode `partition-id` i is node i) where the chain, registry and block folder
  are; each node keeps its files under the run's folder, so a node reopened by another worker is the same
  node. Before each round every node learns lessons drawn from the replay pool (`dso.simulate`).
- **deployment** (Flower's deployment engine across machines, docs/flower.md): each SuperNode is started
  with `--node-config 'dso-config="/path/to/dso.toml"'`; its ClientApp opens that node from its own
  configuration and keystore (`dso node init`) and ignores every chain setting a message carries.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from dso.config import DSOConfig, load_config
from dso.embed import make_embedder
from dso.errors import DSOError
from dso.network import NetworkSpec, deploy_network, make_store, network_node, node_account, open_node
from dso.node.node import Node
from dso.simulate import replay_pool

SYNC = "query.sync"
PASSWORD_ENV = "DSO_KEY_PASSWORD"  # a deployed node's keystore password, as `dso node run` reads it
MAX_REPLY = 64 * 1024  # a reply's report, in bytes: a hostile client cannot make the server hold more


@dataclasses.dataclass(frozen=True)
class FlowerSettings:
    """A simulated DSO network on Flower (the ServerApp's run config; keys as `[tool.flwr.app.config]`)."""

    nodes: int = 4
    members: int = 3  # the registry's committee: nodes 0 .. members-1
    rounds: int = 2
    draws: int = 3  # lessons each node learns from the replay pool before each round
    rpc: str = ""  # the JSON-RPC chain every node reaches (an anvil node); "" in deployment
    store: str = ""  # an IPFS HTTP API URL, or "" for a block folder under `folder`
    folder: str = ""  # where simulated nodes keep their files (one folder on the machine)
    seed: int = 0
    voting_window: int = 1_000
    output: str = ""  # the run's summary JSON is written here ("" = not written)

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> FlowerSettings:
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {k.replace("-", "_"): v for k, v in run_config.items() if k.replace("-", "_") in known}
        return cls(**values)


# -- the ClientApp: one DSO node per SuperNode ------------------------------------------------------

_NODES: dict[str, Node] = {}  # a worker process keeps its nodes open between messages
_LOCK = threading.Lock()


def _simulated_node(index: int, task: ConfigRecord) -> Node:
    """Node `index` of the simulated network the message describes (key from the seed, files in the folder)."""
    from dso.chain.client import RegistryClient, connect

    folder = Path(str(task["folder"]))
    key = f"{folder}:{index}"
    with _LOCK:
        if key not in _NODES:
            account = node_account(int(str(task["seed"])), index, "dso-flower")
            registry = RegistryClient(connect(str(task["rpc"])), str(task["registry"]), account)
            store = make_store(str(task["store"]), folder / "blocks")
            config = DSOConfig()
            _NODES[key] = network_node(folder, index, config, account, registry, store, make_embedder(config.embedder))
        return _NODES[key]


def _deployed_node(path: str) -> Node:
    """The node a SuperNode's `dso-config` names, opened from its own configuration and keystore."""
    with _LOCK:
        if path not in _NODES:
            _NODES[path] = open_node(load_config(Path(path)), os.environ.get(PASSWORD_ENV, ""))
        return _NODES[path]


def _learn(node: Node, index: int, task: ConfigRecord) -> int:
    """Before a round's publish wave, a simulated node learns lessons from the replay pool (as `dso simulate`)."""
    rng = random.Random(f"flower:{task['seed']}:{index}:{task['round']}")
    pool = replay_pool()
    popularity = [0.9 * (0.85**rank) + 0.05 for rank in range(len(pool))]
    draws = int(str(task["draws"]))
    drawn = [t for t, p in zip(pool, popularity, strict=True) if rng.random() < p * draws / 3]
    rng.shuffle(drawn)  # each node keeps a different few of what it drew: lessons others lack, to share
    drawn = drawn[:draws]
    for text in drawn:
        node.library.add(text, confidence=rng.uniform(0.5, 0.9), domain="replay")
    return len(drawn)


client_app = ClientApp()


@client_app.query("sync")
def sync(message: Message, context: Context) -> Message:
    """One wave of a DSO round on this node: learn (simulation, publish wave), then `Node.sync`."""
    task = message.content["dso"]
    assert isinstance(task, ConfigRecord)
    dso_config = context.node_config.get("dso-config")
    if dso_config:
        node, index, learned = _deployed_node(str(dso_config)), -1, 0
    else:
        index = int(str(context.node_config["partition-id"]))
        node = _simulated_node(index, task)
        learned = _learn(node, index, task) if task["wave"] == "publish" and task["learn"] else 0
    try:
        report = node.sync().to_json()
        error = ""
    except DSOError as exc:  # the node could not do its work this wave (a chain or store that does not answer)
        report, error = {}, str(exc)[:500]
    reply = ConfigRecord(
        {
            "index": index,
            "address": node.address,
            "member": node.is_member(),
            "learned": learned,
            "library": len(node.library.all()),
            "digest": node.global_digest(),
            "report": json.dumps(report, sort_keys=True),
            "error": error,
        }
    )
    return Message(RecordDict({"dso": reply}), reply_to=message)


# -- the ServerApp: the round's sequence -------------------------------------------------------------


def _reply(message: Message) -> dict[str, Any] | None:
    """A client's reply, read defensively (a SuperNode in deployment is another party's machine)."""
    if message.has_error():
        return None
    record = message.content.get("dso")
    if not isinstance(record, ConfigRecord):
        return None
    report = str(record.get("report", ""))
    try:
        parsed = json.loads(report) if len(report) <= MAX_REPLY else {}
    except (ValueError, RecursionError):
        parsed = {}
    try:
        return _fields(message, record, parsed)
    except (TypeError, ValueError):  # a field of the wrong kind: the reply counts as not given
        return None


def _fields(message: Message, record: ConfigRecord, parsed: Any) -> dict[str, Any]:
    return {
        "node_id": int(message.metadata.src_node_id),
        "index": int(str(record.get("index", -1))),
        "address": str(record.get("address", ""))[:42],
        "member": bool(record.get("member", False)),
        "learned": int(str(record.get("learned", 0))),
        "library": int(str(record.get("library", 0))),
        "digest": str(record.get("digest", ""))[:64],
        "error": str(record.get("error", ""))[:500],
        "report": parsed if isinstance(parsed, dict) else {},
    }


def _published(report: dict[str, Any]) -> int:
    """Experiences a sync report says were published (a report from another party may hold anything)."""
    built = report.get("published")
    records = built.get("records", 0) if isinstance(built, dict) else 0
    return records if isinstance(records, int) and records >= 0 else 0


def _votes(report: dict[str, Any]) -> int:
    votes = report.get("votes")
    return len(votes) if isinstance(votes, list) else 0


def _merged(report: dict[str, Any]) -> int:
    merged = report.get("merged")
    added = merged.get("added", 0) if isinstance(merged, dict) else 0
    return added if isinstance(added, int) and added >= 0 else 0


def _wave(grid: Grid, node_ids: list[int], task: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    messages = [
        Message(RecordDict({"dso": ConfigRecord(task)}), dst_node_id=node_id, message_type=SYNC) for node_id in node_ids
    ]
    replies = [_reply(m) for m in grid.send_and_receive(messages, timeout=timeout)]
    return [r for r in replies if r is not None]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # a line per stage as it happens; stdout stays for --json


def run_rounds(grid: Grid, settings: FlowerSettings, say: Any = _say) -> dict[str, Any]:
    """Deploy (simulation), then `settings.rounds` DSO rounds over the grid's nodes; returns the summary."""
    started = time.perf_counter()
    task: dict[str, Any] = {"rpc": settings.rpc, "store": settings.store, "folder": settings.folder}
    task |= {"seed": settings.seed, "draws": settings.draws, "registry": ""}
    if settings.rpc:  # simulation: this app deploys the registry the simulated nodes share
        spec = NetworkSpec(
            nodes=settings.nodes,
            members=tuple(range(settings.members)),
            chain=settings.rpc,
            seed=settings.seed,
            key_tag="dso-flower",
            voting_window=settings.voting_window,
        )
        task["registry"] = deploy_network(spec).registry.address
        say(f"registry {task['registry']} on {settings.rpc}: {settings.nodes} nodes, {settings.members} members")
    deadline = time.monotonic() + 120
    node_ids = sorted(grid.get_node_ids())
    while len(node_ids) < settings.nodes and time.monotonic() < deadline:
        time.sleep(1)
        node_ids = sorted(grid.get_node_ids())
    rounds = []
    for round_ in range(1, settings.rounds + 1):
        entry: dict[str, Any] = {"round": round_}
        members = node_ids  # until the publish wave's replies say which nodes are registry members
        for wave in ("publish", "vote", "pull"):
            t0 = time.perf_counter()
            who = members if wave == "vote" else node_ids
            replies = _wave(grid, who, {**task, "round": round_, "wave": wave, "learn": wave == "publish"}, 600)
            if wave == "publish":
                answered = {r["node_id"] for r in replies}
                # a node that did not answer may be a member: it is asked to vote too
                members = sorted({r["node_id"] for r in replies if r["member"]} | (set(node_ids) - answered))
            entry[wave] = {
                "replies": len(replies),
                "errors": [r["error"] for r in replies if r["error"]],
                "seconds": round(time.perf_counter() - t0, 2),
            }
            if wave == "publish":
                entry["learned"] = sum(r["learned"] for r in replies)
                entry["published"] = sum(_published(r["report"]) for r in replies)
            # every sync publishes, votes (members), pulls and merges what is ready: count them in every wave
            entry["votes"] = entry.get("votes", 0) + sum(_votes(r["report"]) for r in replies)
            entry["merged"] = entry.get("merged", 0) + sum(_merged(r["report"]) for r in replies)
            if wave == "pull":
                entry["libraries"] = {str(r["index"]): r["library"] for r in replies}
                entry["global_digests"] = len({r["digest"] for r in replies})
            say(f"round {round_} {wave}: {entry[wave]['replies']} nodes answered in {entry[wave]['seconds']} s")
        rounds.append(entry)
        say(
            f"round {round_}: {entry['published']} experiences published, {entry['votes']} votes, "
            f"{entry['merged']} merged; {entry['global_digests']} distinct global libraries among "
            f"{entry['pull']['replies']} nodes"
        )
    summary = {
        "engine": "flower",
        "settings": dataclasses.asdict(settings),
        "registry": task["registry"],
        "nodes_connected": len(node_ids),
        "rounds": rounds,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if settings.output:
        Path(settings.output).write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return summary


def server_app_for(settings: FlowerSettings) -> ServerApp:
    """A ServerApp running `settings` (the simulation command builds its own)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_rounds(grid, settings)

    return app


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """The deployed ServerApp: settings from the run config (`flwr run . --run-config ...`)."""
    run_rounds(grid, FlowerSettings.from_run_config(dict(context.run_config)))
