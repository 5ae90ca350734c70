"""Committee size against capture: how likely a committee drawn at random from a network with a Byzantine
share holds enough Byzantine members to block batches (more than a third: censorship) or to accept anything
(two thirds: forgery), beside what the committee costs (one vote per member and batch).

Exact: hypergeometric for networks of given sizes, binomial for the limit of a very large network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dso.machine import machine
from dso.network.attacks import committee_capture

SIZES = (7, 9, 16, 32, 64, 128, 256, 512)
NETWORKS = (1_000, 10_000)


def run_committee_bench(
    fraction: float = 0.3, sizes: Sequence[int] = SIZES, networks: Sequence[int] = NETWORKS
) -> dict[str, Any]:
    rows = []
    for size in sizes:
        row: dict[str, Any] = {"committee": size, "votes_per_batch": size}
        for nodes in networks:
            if size > nodes:
                continue
            bad = round(fraction * nodes)
            row[f"block@{nodes}"] = committee_capture(nodes, bad, size)
            row[f"forge@{nodes}"] = committee_capture(nodes, bad, size, forging=True)
        row["block@limit"] = committee_capture(None, fraction, size)
        row["forge@limit"] = committee_capture(None, fraction, size, forging=True)
        rows.append(row)
    return {"machine": machine(), "byzantine_fraction": fraction, "networks": list(networks), "rows": rows}
