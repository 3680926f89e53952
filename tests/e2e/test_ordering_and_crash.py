"""Concurrency keeps per-key order, and a crash never skips unfinished events."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from streams.lag import committed_offsets
from tests.e2e.harness import Cluster, payloads_of

pytestmark = pytest.mark.e2e

COMMIT_INTERVAL_S = 2.8
"""faust's default ``broker_commit_interval``."""


def test_same_key_order_is_kept_under_concurrency_16(cluster: Cluster) -> None:
    cluster.start("ordered")
    keys = [f"k{i}" for i in range(8)]
    events = [{"key": k, "seq": seq} for seq in range(25) for k in keys]
    cluster.send("ordered.in", events, key=lambda p: p["key"])

    out = payloads_of(cluster.read("ordered.out", len(events)))

    per_key: dict[str, list[int]] = defaultdict(list)
    for p in out:
        per_key[p["key"]].append(p["seq"])
    assert len(out) == len(events)
    assert all(per_key[k] == list(range(25)) for k in keys)


def test_crash_with_unfinished_events_redelivers_them(cluster: Cluster) -> None:
    worker = cluster.start("slow")
    stuck = {"seq": 0, "sleep": 120}
    cluster.send("slow.in", [stuck, *({"seq": s} for s in range(1, 10))], key=lambda p: None)  # type: ignore[arg-type,return-value]

    before = {p["seq"] for p in payloads_of(cluster.read("slow.out", 9))}
    time.sleep(COMMIT_INTERVAL_S + 1)  # let a commit happen, so committing past the gap would show
    group = cluster.topology.group_id("slow")
    committed = committed_offsets(cluster.profile, group, [(cluster.topology.topic_name("slow.in"), 0)])
    worker.kill()

    assert before == set(range(1, 10))  # later events finished past the stuck one...
    assert set(committed.values()) == {0}  # ...but nothing was committed past it

    cluster.start("slow", extra_env={"E2E_SLOW_MAX_SLEEP": "0"})
    after = payloads_of(cluster.read("slow.out", 19))
    assert {p["seq"] for p in after} == set(range(10))
    assert [p["seq"] for p in after].count(0) == 1
