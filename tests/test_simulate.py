"""`dso simulate`: small networks of real nodes on the embedded chain; plots; the FedAvg comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dso.bench.communication import MODELS, run_communication_bench
from dso.cli.simulate import draw_plots
from dso.config import load_config
from dso.errors import ConfigError
from dso.simulate import SimulationSettings, simulate

pytestmark = pytest.mark.slow  # the embedded EVM: seconds per round


@pytest.fixture(scope="module")
def wrong_advice(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    settings = SimulationSettings(nodes=8, byzantine=0.25, attack="wrong", rounds=2, committee=5, seed=3)
    return simulate(settings, load_config(), workdir=tmp_path_factory.mktemp("sim"))


def test_a_small_network_rejects_coordinated_wrong_advice(wrong_advice: dict[str, object]) -> None:
    report = wrong_advice
    assert report["mode"] == "replay" and report["poisoned_accepted"] == 0
    first = report["rounds"][0]  # type: ignore[index]
    assert first["batches"]["submitted"] == 8 and first["batches"]["accepted"] >= 6
    assert first["global_library"]["accepted"] >= 1  # honest lessons made it
    assert first["global_library"]["rejected"] >= 1  # the liars' lessons did not
    assert first["honest_nodes_agreeing"] == "True"
    assert first["bytes_per_honest_node"]["sent_median"] > 0 and first["transactions"] >= 8
    assert set(first["phase_seconds"]) == {"learn", "publish", "vote", "pull"}
    # an honest member and an honest reader that share nothing with the other simulated nodes: what one real
    # node pays; a member receives more than a reader (it fetches pending batches to vote on them)
    member, reader = first["witnesses"]  # both Byzantine nodes of this seed are members: no Byzantine reader
    assert (member["role"], reader["role"]) == ("member", "reader") and member["honest"] and reader["honest"]
    assert member["cpu_seconds"]["vote"] > 0 and member["transactions"] >= 2  # its batch and its votes
    assert reader["cpu_seconds_total"] > 0 and "vote" not in reader["cpu_seconds"]
    assert member["received"] > reader["received"] > 0
    assert first["bytes_per_byzantine_node"]["sent_median"] > 0


def test_a_captured_committee_censors_but_does_not_poison(tmp_path: Path) -> None:
    # five nodes, all members, two of them colluding: more than a third, so they can reject honest batches
    settings = SimulationSettings(nodes=5, byzantine=0.4, attack="vote-collusion", rounds=1, committee=5)
    report = simulate(settings, load_config(), workdir=tmp_path)
    assert report["committee"]["byzantine_members"] == 2
    batches = report["rounds"][0]["batches"]
    assert batches["rejected"] >= 1  # honest batches voted down: censorship
    assert report["poisoned_accepted"] == 0


def test_plots_and_the_federated_learning_comparison(wrong_advice: dict[str, object], tmp_path: Path) -> None:
    paths = draw_plots(wrong_advice, tmp_path / "plots")
    assert [p.name for p in paths] == ["batches.png", "bytes.png"]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5_000
    report_file = tmp_path / "sim.json"
    report_file.write_text(json.dumps(wrong_advice))
    result = run_communication_bench(report_file)
    rows = {row["model"]: row for row in result["models"]}
    assert set(rows) == {m.name for m in MODELS}
    assert rows["Llama-2-7B"]["parameters"] == 6_738_415_616  # the published 6.74B, from the architecture
    assert all(row["lora8_over_dso"] > 1 and row["full_over_dso"] > row["lora8_over_dso"] for row in rows.values())
    (scale,) = result["scale"]  # one report: one network size
    assert scale["nodes"] == 8 and scale["dso_bytes"] == result["simulation"]["per_round_max"]
    fp16, int8, ring = (scale[f"Qwen3-4B:lora8:{k}"] for k in ("fedavg_fp16", "fedavg_int8", "diloco_int8"))
    assert int8 == fp16 / 2 and ring == int8 * 7 / 8  # a ring all-reduce moves 2 (N - 1) / N of the update
    from dso.plots import communication_against_nodes

    figure = communication_against_nodes(result, "Qwen3-4B", tmp_path / "communication.png")
    assert figure.read_bytes().startswith(b"\x89PNG")


def test_settings_out_of_range_are_refused() -> None:
    for bad in (
        SimulationSettings(attack="sybil"),  # identities are funded keys on a live network: the bench only
        SimulationSettings(attack="nonsense"),
        SimulationSettings(byzantine=0.5),
        SimulationSettings(nodes=5, committee=6),
    ):
        with pytest.raises(ConfigError):
            bad.check()


def test_a_network_on_anvil_and_an_ipfs_daemon(tmp_path: Path, anvil_url: str, ipfs_api: str) -> None:
    settings = SimulationSettings(
        nodes=4, byzantine=0.25, attack="injection", rounds=1, committee=4, chain=anvil_url, store=ipfs_api
    )
    report = simulate(settings, load_config(), workdir=tmp_path)
    assert report["chain"] == "JSON-RPC" and report["store"] == "IPFS HTTP API"
    (round_,) = report["rounds"]
    assert round_["batches"]["accepted"] == 3 and round_["batches"]["rejected"] == 1  # the injector's batch
    assert report["poisoned_accepted"] == 0 and round_["honest_nodes_agreeing"] == "True"


def test_the_voting_window_covers_a_round_of_the_whole_network(tmp_path: Path) -> None:
    # a dev chain mines a block per transaction: a 5-block window would close on the first batches of 30 nodes
    # before the committee votes, and they would be rejected for want of votes
    config = load_config(overrides={"chain.voting_window": 5})
    report = simulate(SimulationSettings(nodes=30, attack="none", rounds=1, committee=3), config, workdir=tmp_path)
    assert report["rounds"][0]["batches"] == {"submitted": 30, "accepted": 30, "rejected": 0, "pending": 0}
    assert report["voting_window_blocks"] >= 4 * 30
