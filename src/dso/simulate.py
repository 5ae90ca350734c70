"""`dso simulate`: a network of many nodes on one machine, each running the real node code.

Every node has its own key, library, state file and registry client; they share one chain (the embedded
EVM, or any JSON-RPC node) and one content store (a block folder, or an IPFS daemon). A round:

1. **learn** (replay mode): each honest node draws lessons from a pool of experiences learned on the
   development machine (`dso/data/replay_pool.json`, written by `python -m dso.bench.pool`); each
   lesson of the pool has its own popularity, so some are learned by most nodes and some by few.
   Byzantine nodes draw honestly too (to keep their reputation) and add their attack.
2. **publish**: every node runs `Node.sync` (its outbox, one signed batch, one `submitBatch`).
3. **vote**: the committee members run `Node.sync` again: they re-verify every pending batch and cast
   their votes in `voteMany` transactions.
4. **pull**: every node runs `Node.sync` once more: it pulls the accepted batches, verifies them, computes
   the global library with the robust consensus, and merges it into its own library.

With `relay`, step 2 hands each signed batch to one relay, which registers them a hundred per transaction
(`dso.node.relay`). With `light`, step 4 splits: **certify**, the members pull as above and attest the library
they computed on the registry (`dso.node.certify`); then **pull**, every other node reads the certificate and
one entries document instead of every batch, auditing it (a full pull and a comparison) with chance
`audit_rate`.

Not every node is a registry member: a vote costs about 33k gas and a registry deployed with 600 or more
members runs out of block gas, so the members are a committee of `committee` nodes drawn at random (by the
seed) when the registry is deployed; membership changes afterwards only by the registry's own 2/3
membership votes. What this means for Byzantine tolerance: the committee decides which batches count,
and a committee with more than a third Byzantine members can reject every honest batch (censorship),
while poisoning needs the consensus's support threshold too. `committee_capture` gives the chance that a
random committee is captured; the `vote-collusion` attack runs Byzantine members that vote for their own
batches and against honest ones.

Nodes in one process share work that depends only on public data (`SharedWork`: a batch's verification,
the global library of a set of records, embeddings of a text, registry reads at one block height); each
node still runs every step and counts the bytes it would have sent and received. The network is built by
`dso.network.build_network`, as the demo's and the tests' are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from dso.config import DSOConfig
from dso.errors import ConfigError, LibraryError
from dso.machine import machine
from dso.network import NetworkSpec, build_network
from dso.network.attacks import NETWORK_ATTACKS, attack_texts, committee_capture
from dso.node.node import Node
from dso.node.relay import Relay
from dso.node.reports import SyncReport

ATTACKS = NETWORK_ATTACKS
Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class SimulationSettings:
    nodes: int = 20
    byzantine: float = 0.0  # share of nodes that are Byzantine
    attack: str = "wrong"
    rounds: int = 3
    committee: int = 9  # registry members, drawn at random among all nodes
    draws: int = 3  # lessons each node learns from the pool per round (before de-duplication)
    chain: str = ""  # "" = the embedded EVM; "memory" = the in-memory registry; or a JSON-RPC URL
    store: str = ""  # "" = a block folder; or an IPFS HTTP API URL
    seed: int = 0
    light: bool = False  # nodes outside the committee read the members' certificate instead of every batch
    relay: bool = False  # nodes hand their signed batches to one relay, registered 100 per transaction
    audit_rate: float = 0.05  # with `light`: the chance a light node audits a certificate (network.audit_rate)

    def check(self) -> None:
        if self.attack not in ATTACKS:
            raise ConfigError(f"unknown attack {self.attack!r}; known: {', '.join(ATTACKS)}")
        if not 2 <= self.nodes <= 5000:
            raise ConfigError(f"--nodes must lie in [2, 5000], got {self.nodes}")
        if not 0.0 <= self.byzantine < 0.5:
            raise ConfigError(f"--byzantine must lie in [0, 0.5), got {self.byzantine}")
        if not 1 <= self.committee <= min(self.nodes, 200):
            raise ConfigError(f"--committee must lie in [1, min(nodes, 200)], got {self.committee}")
        if self.attack == "forged-certificate" and not self.light:
            raise ConfigError("--attack forged-certificate needs --light: only light nodes read certificates")
        if not 0.0 <= self.audit_rate <= 1.0:
            raise ConfigError(f"--audit-rate must lie in [0, 1], got {self.audit_rate}")
        if not 1 <= self.rounds <= 100 or not 1 <= self.draws <= 50:
            raise ConfigError("--rounds must lie in [1, 100] and --draws in [1, 50]")


def replay_pool() -> list[str]:
    document = json.loads(resources.files("dso").joinpath("data", "replay_pool.json").read_text(encoding="utf-8"))
    return [entry["text"] for entry in document["experiences"]]


def simulate(
    settings: SimulationSettings, config: DSOConfig, *, workdir: Path | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Run the network; returns per-round figures, with the settings and the machine."""
    settings.check()
    say = progress or (lambda line: None)
    scratch = Path(tempfile.mkdtemp(prefix="dso-sim-")) if workdir is None else workdir
    try:
        return _simulate(settings, config, scratch, say)
    finally:
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)


@dataclasses.dataclass
class SimulationPlan:
    """Who is who in a simulated network and what each node learns, drawn from the seed: the same for
    `dso simulate` and `dso flower simulate`, so both engines run the same network on the same inputs."""

    settings: SimulationSettings
    spec: NetworkSpec
    rng: random.Random  # drawn in order: Byzantine nodes, committee, then each round's lessons node by node
    pool: list[str]
    popularity: list[float]

    @classmethod
    def make(cls, settings: SimulationSettings, config: DSOConfig) -> SimulationPlan:
        rng = random.Random(f"simulate:{settings.seed}")
        bad_ids = frozenset(rng.sample(range(settings.nodes), round(settings.byzantine * settings.nodes)))
        members = tuple(sorted(rng.sample(range(settings.nodes), settings.committee)))
        if settings.attack == "forged-certificate":  # a captured committee: two thirds of it Byzantine, if they exist
            bad = sorted(bad_ids)[: -(-2 * settings.committee // 3)]
            good = [i for i in range(settings.nodes) if i not in bad_ids][: settings.committee - len(bad)]
            members = tuple(sorted([*bad, *good]))
        # the voting window counts blocks, and a dev chain mines one per transaction: a round of N nodes takes
        # about 2N + committee blocks, so a window of chain.voting_window blocks would close on the first batches
        # of a large network before the committee reaches them (they would be rejected for want of votes)
        window = max(config.chain.voting_window, 4 * settings.nodes + 10 * settings.committee)
        spec = NetworkSpec(
            nodes=settings.nodes,
            members=members,
            byzantine=bad_ids,
            colluding=settings.attack == "vote-collusion",
            forging=settings.attack == "forged-certificate",
            chain=settings.chain or "embedded",
            store=settings.store,
            voting_window=window,
            seed=settings.seed,
            # an honest member, an honest reader and a Byzantine reader that share nothing: what one real node
            # of each kind pays, per step
            witnesses=tuple(
                group[0]
                for group in (
                    [i for i in members if i not in bad_ids],
                    [i for i in range(settings.nodes) if i not in members and i not in bad_ids],
                    [i for i in range(settings.nodes) if i not in members and i in bad_ids],
                )
                if group
            ),
        )
        pool = [t for t in replay_pool() if len(t.split()) <= config.library.word_cap]
        popularity = [0.9 * (0.85**rank) + 0.05 for rank in range(len(pool))]  # a few common lessons, a long tail
        return cls(settings, spec, rng, pool, popularity)

    def lessons(self, addresses: list[str], round_: int) -> list[list[tuple[str, float]]]:
        """Each node's lessons of round `round_` (text, confidence), in node order: honest draws from the pool
        (each lesson with its own popularity), plus a Byzantine node's attack texts."""
        out = []
        settings, rng = self.settings, self.rng
        for index, address in enumerate(addresses):
            drawn = [
                t for t, p in zip(self.pool, self.popularity, strict=True) if rng.random() < p * settings.draws / 3
            ]
            mine = [(text, rng.uniform(0.5, 0.9)) for text in drawn[: settings.draws]]
            if index in self.spec.byzantine and settings.attack not in ("none", "vote-collusion"):
                mine += [
                    (text, confidence) for _, text, confidence in attack_texts(settings.attack, address, rng, round_)
                ]
            out.append(mine)
        return out


def learn(node: Node, lessons: list[tuple[str, float]]) -> None:
    """A simulated node learns its lessons of a round; a text its library refuses is one the attacker loses."""
    for text, confidence in lessons:
        with contextlib.suppress(LibraryError):
            node.library.add(text, confidence=confidence, domain="replay")


def _simulate(settings: SimulationSettings, config: DSOConfig, scratch: Path, say: Progress) -> dict[str, Any]:
    started = time.perf_counter()
    if settings.light:
        network_config = dataclasses.replace(config.network, light=True, audit_rate=settings.audit_rate)
        config = dataclasses.replace(config, network=network_config)
    plan = SimulationPlan.make(settings, config)
    spec, bad_ids, members, window = plan.spec, plan.spec.byzantine, plan.spec.members, plan.spec.voting_window
    network = build_network(config, scratch, spec)
    nodes = network.nodes
    relay = Relay(network.registry) if settings.relay else None
    for node in nodes:
        node.ctx.relay = relay
    timings = {"setup": time.perf_counter() - started}
    say(
        f"registry {network.registry.address}: {settings.committee} members, {len(bad_ids)} Byzantine nodes of "
        f"{settings.nodes}; ready in {timings['setup']:.1f} s"
    )
    honest_texts = set(plan.pool)
    rounds = []
    try:
        for round_ in range(1, settings.rounds + 1):
            entry: dict[str, Any] = {"round": round_, "mode": "replay"}
            phase: dict[str, float] = {}
            t0 = time.perf_counter()
            for node, lessons in zip(nodes, plan.lessons([n.address for n in nodes], round_), strict=True):
                learn(node, lessons)
            phase["learn"] = time.perf_counter() - t0
            syncs: dict[str, list[SyncReport]] = {n.address: [] for n in nodes}
            everyone = list(range(settings.nodes))
            # with light nodes the members pull first and attest what they computed; the others then read it
            pulls = (
                [("certify", list(members)), ("pull", [i for i in everyone if i not in members])]
                if settings.light
                else [("pull", everyone)]
            )
            for name, who in (("publish", everyone), ("vote", list(members)), *pulls):
                t = time.perf_counter()
                if name in ("pull", "certify") and "blocks_mined_to_close_epoch" not in entry:
                    # the round's epoch closes (what waiting for the window does on a live chain)
                    entry["blocks_mined_to_close_epoch"] = network.close_epoch()

                def tick(number: int, name: str = name, who: list[int] = who, round_: int = round_) -> None:
                    if number % 100 == 0:
                        say(f"round {round_} {name}: {number}/{len(who)} nodes")

                for index, report in zip(who, network.sync(who, tick), strict=True):
                    syncs[nodes[index].address].append(report)
                if name == "publish" and relay is not None:  # the relay registers what the nodes handed it
                    before = (relay.transactions, relay.registered)
                    relay.flush()
                    entry["relay"] = {
                        "transactions": relay.transactions - before[0],
                        "batches_registered": relay.registered - before[1],
                    }
                phase[name] = time.perf_counter() - t

            def poisoned(g: Any) -> bool:
                # accepted with no wording any honest node learned (an attack text, or its paraphrase)
                return not ({g.text, *(g.decision.wordings if g.decision else ())} & honest_texts)

            entry.update(network.round_figures(round_, syncs, poisoned))
            # what honest nodes hold, not only what the consensus accepts: a light node merges what the committee
            # certified, so a captured committee's forgery shows here until an audit unmasks it
            entry["honest_libraries_poisoned"] = sum(
                1
                for index, node in enumerate(nodes)
                if index not in bad_ids
                and any(e.origin_node != "local" and e.text not in honest_texts for e in node.library.all())
            )
            entry["phase_seconds"] = {k: round(v, 2) for k, v in phase.items()}
            rounds.append(entry)
            say(
                f"round {round_}: {entry['batches']['accepted']} batches accepted, {entry['batches']['rejected']} "
                f"rejected; global library {entry['global_library']['accepted']} ({entry['poisoned_accepted']} "
                f"poisoned); {sum(phase.values()):.1f} s"
            )
            for witness in entry["witnesses"]:
                say(
                    f"round {round_}: a{'n honest' if witness['honest'] else ' Byzantine'} {witness['role']} sharing "
                    f"nothing: {witness['cpu_seconds_total']:.2f} s CPU, "
                    f"{witness['sent']} B out, {witness['received']} B in"
                )
    finally:
        network.close()
    chain_names = {"embedded": "embedded (eth-tester + py-evm)", "memory": "in-memory registry"}
    return {
        "mode": "replay",
        "settings": dataclasses.asdict(settings),
        "consensus": dataclasses.asdict(config.consensus),
        "machine": machine(),
        "chain": chain_names.get(spec.chain, "JSON-RPC"),
        "store": "embedded block folder" if not settings.store else "IPFS HTTP API",
        "committee": {
            "members": settings.committee,
            "byzantine_members": sum(1 for i in members if i in bad_ids),
            "capture_probability": round(committee_capture(settings.nodes, len(bad_ids), settings.committee), 6),
        },
        "pool": len(plan.pool),
        "voting_window_blocks": window,
        "setup_seconds": {k: round(v, 2) for k, v in timings.items()},
        "rounds": rounds,
        "poisoned_accepted": max(r["poisoned_accepted"] for r in rounds),
        "honest_libraries_poisoned": max(r["honest_libraries_poisoned"] for r in rounds),
        "seconds": round(time.perf_counter() - started, 2),
    }
