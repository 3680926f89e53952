"""A throttled agent falls behind in Kafka, not in memory, and keeps going at its bucket's rate."""

from __future__ import annotations

import time

import pytest

from streams.edge import read_to_end
from streams.lag import committed_offsets
from tests.e2e.harness import Cluster

pytestmark = pytest.mark.e2e

PROMPT = "x" * 4000  # ~1,000 tokens: 50 calls/s under flow.yaml's 50,000 tokens/s
CALLS_PER_S = 50
BURST_CALLS = 5


def asks(first: int, count: int) -> list[dict[str, object]]:
    return [{"seq": seq, "text": PROMPT} for seq in range(first, first + count)]


def answered(cluster: Cluster) -> int:
    """Outputs so far (``Cluster.read`` waits for a quiet topic, which a busy agent never leaves)."""
    return len(read_to_end(cluster.profile, cluster.topology.topic_name("asks.out")))


def test_saturated_bucket_pauses_fetching_so_memory_stays_flat_while_the_backlog_grows(flow_cluster: Cluster) -> None:
    cluster = flow_cluster
    worker = cluster.start("asker")
    cluster.send("asks.in", asks(0, 20), key=lambda p: str(p["seq"]))
    assert len(cluster.read("asks.out", 20)) == 20  # warmed up: group joined, first calls made
    before_mb, done_before = worker.rss_mb(), 20

    started = time.monotonic()
    cluster.send("asks.in", asks(20, 15_000), key=lambda p: str(p["seq"]))  # ~60 MB of backlog
    time.sleep(3)
    filled_mb, middle = worker.rss_mb(), answered(cluster)  # the bounded buffers are full by now
    time.sleep(3)
    after_mb, done = worker.rss_mb(), answered(cluster)
    elapsed = time.monotonic() - started  # after the read: what it counted was made before now

    assert done - done_before <= CALLS_PER_S * elapsed + BURST_CALLS  # the bucket holds the model to its rate
    assert done > middle > done_before  # still working, at the bucket's pace
    assert filled_mb - before_mb < 40, f"RSS grew from {before_mb:.0f} to {filled_mb:.0f} MB with 60 MB waiting"
    assert after_mb - filled_mb < 8, f"RSS kept growing: {filled_mb:.0f} -> {after_mb:.0f} MB"
    group = cluster.topology.group_id("asker")
    committed = committed_offsets(cluster.profile, group, [(cluster.topology.topic_name("asks.in"), p) for p in (0, 1)])
    assert 15_020 - sum(committed.values()) > 10_000  # most of the backlog waits in Kafka (50 calls/s: 5,000 would take 100 s)
    assert worker.alive()
