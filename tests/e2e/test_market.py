"""Market through the real broker: 4 solvers bid on 20 asks; best bid wins; a failed winner is replaced."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.e2e.harness import Cluster, payloads_of

pytestmark = pytest.mark.e2e

ASKS = 20
SOLVERS = ("fast", "cheap", "careful", "flaky")


def test_twenty_asks_go_to_the_best_bids_and_a_failed_winner_is_replaced(patterns_cluster: Cluster) -> None:
    for agent in (*(f"jobs-{s}" for s in SOLVERS), "jobs-maker"):
        patterns_cluster.start(agent)
    asks = [{"n": n} for n in range(ASKS)]
    asks[7] = {"n": 7, "bait": "flaky", "fail": "flaky"}  # flaky underbids everyone on ask 7, then fails it
    patterns_cluster.send("jobs.asks", asks, key=lambda p: f"ask-{p['n']}", event_type="job.posted")

    results = payloads_of(patterns_cluster.read("jobs.results", ASKS, timeout=120))
    awards = payloads_of(patterns_cluster.read("jobs.awards", ASKS + 1))
    bids = [p for p in payloads_of(patterns_cluster.read("jobs.bids", 0, timeout=0)) if "price" in p and "award" not in p]

    n_of = {award["ask_id"]: award["ask"]["n"] for award in awards}
    assert sorted(n_of.values()) == list(range(ASKS)) and len(results) == ASKS
    assert all(result["solver"] for result in results)  # every ask filled
    per_ask = defaultdict(list)
    for b in bids:
        per_ask[b["ask_id"]].append(b)
    expected = {ask_id: [b["solver"] for b in sorted(offers, key=lambda b: (b["price"], -b["confidence"], b["solver"]))] for ask_id, offers in per_ask.items()}
    awarded = defaultdict(list)
    for award in sorted(awards, key=lambda a: a["award"]):
        awarded[award["ask_id"]].append(award["solver"])
    assert all(len(per_ask[ask_id]) == len(SOLVERS) for ask_id in n_of)
    assert {ask_id: solvers for ask_id, solvers in awarded.items()} == {ask_id: expected[ask_id][: len(awarded[ask_id])] for ask_id in n_of}
    ask7 = next(ask_id for ask_id, n in n_of.items() if n == 7)
    assert awarded[ask7] == ["flaky", expected[ask7][1]]  # re-awarded to the next-best bid
    filled7 = next(r for r in results if r["ask_id"] == ask7)
    assert (filled7["solver"], filled7["awards"]) == (expected[ask7][1], 2)
    assert len({r["solver"] for r in results}) > 1  # different solvers won different asks
