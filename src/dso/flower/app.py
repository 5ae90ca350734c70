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
  node. The network is `dso simulate`'s for the same settings (`SimulationPlan`: the same keys, committee,
  Byzantine nodes and each round's lessons, which the ServerApp sends each node with its publish wave), so
  both engines compute the same global library.
- **deployment** (Flower's deployment engine across machines, docs/flower.md): each SuperNode is started
  with `--node-config 'dso-config="/path/to/dso.toml"'`; its ClientApp opens that node from its own
  configuration and keystore (`dso node init`) and ignores every chain setting a message carries.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
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
from dso.embed.cache import CachingEmbedder
from dso.errors import DSOError
from dso.keys import PASSWORD_ENV
from dso.machine import machine
from dso.network import close_epoch, deploy_network, make_store, network_node, node_account, open_node
from dso.node.node import Node
from dso.simulate import SimulationPlan, SimulationSettings, learn

SYNC = "query.sync"
MAX_REPLY = 64 * 1024  # a reply's report, in bytes: a hostile client cannot make the server hold more


@dataclasses.dataclass(frozen=True)
class FlowerSettings:
    """A DSO network on Flower (the ServerApp's run config; keys as `[tool.flwr.app.config]`).

    With `rpc` set, a simulated network: the same plan as `dso simulate` with the same fields (`nodes`,
    `byzantine`, `attack`, `rounds`, `committee`, `draws`, `seed`: the same keys, committee, Byzantine nodes and
    lessons). With `rpc` empty, a deployed network: the nodes are whatever SuperNodes connect (at least
    `nodes`), each its own."""

    nodes: int = 4
    rounds: int = 2
    committee: int = 3
    byzantine: float = 0.0
    attack: str = "wrong"
    draws: int = 3
    seed: int = 0
    rpc: str = ""  # the JSON-RPC chain every simulated node reaches (an anvil node); "" in deployment
    store: str = ""  # an IPFS HTTP API URL, or "" for a block folder under `folder`
    folder: str = ""  # where simulated nodes keep their files (one folder on the machine)
    output: str = ""  # the run's summary JSON is written here ("" = not written)

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> FlowerSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k.replace("-", "_"): v for k, v in run_config.items() if k.replace("-", "_") in known}
        return cls(**values)

    def simulation(self) -> SimulationSettings:
        return SimulationSettings(
            nodes=self.nodes,
            byzantine=self.byzantine,
            attack=self.attack,
            rounds=self.rounds,
            committee=self.committee,
            draws=self.draws,
            chain=self.rpc,
            store=self.store,
            seed=self.seed,
        )


# -- the ClientApp: one DSO node per SuperNode ------------------------------------------------------

_NODES: dict[str, Node] = {}  # a worker process keeps its nodes open between messages
_LOCK = threading.Lock()


@functools.cache
def _worker_embedder() -> CachingEmbedder:
    """One embedder per worker process, for all the simulated nodes it hosts."""
    return CachingEmbedder(make_embedder(DSOConfig().embedder))


def _simulated_node(index: int, task: ConfigRecord) -> Node:
    """Node `index` of the simulated network the message describes (the key `dso simulate` derives from the
    seed, files in the run's folder)."""
    from dso.chain.client import RegistryClient, connect

    folder = Path(str(task["folder"]))
    key = f"{folder}:{index}"
    with _LOCK:
        if key not in _NODES:
            account = node_account(int(str(task["seed"])), index)
            registry = RegistryClient(connect(str(task["rpc"])), str(task["registry"]), account)
            store = make_store(str(task["store"]), folder / "blocks")
            config = DSOConfig()
            _NODES[key] = network_node(folder, index, config, account, registry, store, _worker_embedder())
        return _NODES[key]


def _deployed_node(path: str) -> Node:
    """The node a SuperNode's `dso-config` names, opened from its own configuration and keystore."""
    with _LOCK:
        if path not in _NODES:
            _NODES[path] = open_node(load_config(Path(path)), os.environ.get(PASSWORD_ENV, ""))
        return _NODES[path]


client_app = ClientApp()


@client_app.query("sync")
def sync(message: Message, context: Context) -> Message:
    """One wave of a DSO round on this node: `hello` only says who it is; otherwise (simulation) learn the
    lessons the message carries for it, then `Node.sync`."""
    task = message.content["dso"]
    assert isinstance(task, ConfigRecord)
    dso_config = context.node_config.get("dso-config")
    if dso_config:
        node, index, learned = _deployed_node(str(dso_config)), -1, 0
    else:
        index = int(str(context.node_config["partition-id"]))
        node = _simulated_node(index, task)
        texts, confidences = task.get("texts", []), task.get("confidences", [])
        lessons = list(zip(texts, confidences, strict=True)) if isinstance(texts, list) else []
        learn(node, [(str(t), float(c)) for t, c in lessons])
        learned = len(lessons)
    report: dict[str, Any] = {}
    error = ""
    if task["wave"] != "hello":
        try:
            report = node.sync().to_json()
        except DSOError as exc:  # the node could not do its work this wave (a chain or store that does not answer)
            error = str(exc)[:500]
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


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # a line per stage as it happens; stdout stays for --json


def _wave(grid: Grid, tasks: dict[int, dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """One message to each node (its own task) and the replies that came back, read defensively."""
    messages = [
        Message(RecordDict({"dso": ConfigRecord(task)}), dst_node_id=node_id, message_type=SYNC)
        for node_id, task in tasks.items()
    ]
    replies = [_reply(m) for m in grid.send_and_receive(messages, timeout=timeout)]
    return [r for r in replies if r is not None]


def run_rounds(grid: Grid, settings: FlowerSettings, say: Any = _say) -> dict[str, Any]:
    """Deploy (simulation: `dso simulate`'s plan), then `settings.rounds` DSO rounds over the grid's nodes;
    returns the summary."""
    started = time.perf_counter()
    task: dict[str, Any] = {"rpc": settings.rpc, "store": settings.store, "folder": settings.folder}
    task |= {"seed": settings.seed, "registry": ""}
    plan = None
    if settings.rpc:  # simulation: this app deploys the registry the simulated nodes share
        plan = SimulationPlan.make(settings.simulation(), DSOConfig())
        deployment = deploy_network(plan.spec)
        task["registry"] = deployment.registry.address
        # the first round starts an epoch, as on `dso simulate`'s fresh chain: batches fall into the same registry
        # epochs (what the consensus groups by) however many blocks the chain had before
        from dso.chain.client import mine as mine_blocks

        mine_blocks(deployment.chain, -int(deployment.chain.eth.block_number) % plan.spec.voting_window)
        addresses = [str(a.address) for a in deployment.accounts]
        say(
            f"registry {task['registry']} on {settings.rpc}: {settings.nodes} nodes, {settings.committee} members, "
            f"{len(plan.spec.byzantine)} Byzantine"
        )
    deadline = time.monotonic() + 120
    node_ids = sorted(grid.get_node_ids())
    while len(node_ids) < settings.nodes and time.monotonic() < deadline:
        time.sleep(1)
        node_ids = sorted(grid.get_node_ids())
    hello = _wave(grid, {n: {**task, "round": 0, "wave": "hello"} for n in node_ids}, 600)
    index_of = {r["node_id"]: r["index"] for r in hello}
    members = sorted({r["node_id"] for r in hello if r["member"]} | (set(node_ids) - set(index_of)))
    rounds = []
    for round_ in range(1, settings.rounds + 1):
        entry: dict[str, Any] = {"round": round_}
        lessons = plan.lessons(addresses, round_) if plan is not None else []
        for wave in ("publish", "vote", "pull"):
            t0 = time.perf_counter()
            if wave == "pull" and plan is not None:  # the round's epoch closes, as in `dso simulate`
                entry["blocks_mined_to_close_epoch"] = close_epoch(deployment.chain, deployment.registry)
            tasks = {}
            for node_id in members if wave == "vote" else node_ids:
                mine = lessons[index_of[node_id]] if wave == "publish" and node_id in index_of and lessons else []
                tasks[node_id] = {
                    **task,
                    "round": round_,
                    "wave": wave,
                    "texts": [text for text, _ in mine],
                    "confidences": [confidence for _, confidence in mine],
                }
            replies = _wave(grid, tasks, 600)
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
                digests = {r["index"]: r["digest"] for r in replies}
                honest = {d for i, d in digests.items() if plan is None or i not in plan.spec.byzantine}
                entry["global_digests"] = len(honest)
                entry["global_digest"] = honest.pop() if len(honest) == 1 else ""
            say(f"round {round_} {wave}: {entry[wave]['replies']} nodes answered in {entry[wave]['seconds']} s")
        rounds.append(entry)
        say(
            f"round {round_}: {entry['published']} experiences published, {entry['votes']} votes, "
            f"{entry['merged']} merged; {entry['global_digests']} distinct global libraries among the honest of "
            f"{entry['pull']['replies']} nodes"
        )
    summary = {
        "engine": "flower",
        "machine": machine(),
        "settings": dataclasses.asdict(settings),
        "registry": task["registry"],
        "nodes_connected": len(node_ids),
        "members": len(members),
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
