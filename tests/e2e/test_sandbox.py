"""Replay sandbox: a new handler over 1,000 historical events, a diff report, production untouched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.admin import list_topics
from tests.e2e.harness import Cluster
from tests.e2e.read_side import table_bytes

pytestmark = pytest.mark.e2e

EVENTS = 1000


def end_offsets(cluster: Cluster) -> dict[tuple[str, int], tuple[int, int]]:
    """(low, high) watermarks of every production topic of this test's namespace."""
    namespace = cluster.topology.namespace
    consumer = Consumer(cluster.profile.consumer_config("watermarks"))
    try:
        return {
            (topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for topic, partitions in list_topics(cluster.profile).items()
            if topic.startswith(namespace)
            for p in range(partitions)
        }
    finally:
        consumer.close()


def committed(cluster: Cluster, group: str) -> dict[tuple[str, int], int]:
    admin = AdminClient(cluster.profile.admin_config())
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}


def test_sandbox_replay_of_1000_events_reports_differences_and_leaves_production_untouched(tasks_cluster: Cluster) -> None:
    cluster = tasks_cluster
    worker = cluster.start("triage")
    tickets: list[dict[str, Any]] = [{"id": f"T{i}", "customer": f"c{i % 50}", "amount": (i * 37) % 1000} for i in range(EVENTS)]
    cluster.send("tickets.in", tickets, key=lambda p: p["customer"], event_type="ticket.opened")
    assert len(cluster.read("tickets.triaged", EVENTS, timeout=120)) == EVENTS
    assert worker.stop() == 0
    group = cluster.topology.group_id("triage")
    tables = Path(cluster.env["KAPPA_STATE_DIR"]) / "tables" / group
    before = (end_offsets(cluster), committed(cluster, group), table_bytes(tables))

    run = cluster.cli("replay", "--agent", "triage", "--sandbox", "--handler", "task_agents:triage_v2",
                      "--from", "2000-01-01T00:00:00+00:00", "--to", "2999-01-01T00:00:00+00:00")
    assert run.returncode == 0, run.stderr

    assert (end_offsets(cluster), committed(cluster, group), table_bytes(tables)) == before
    report = json.loads(Path(run.stdout.strip().splitlines()[-1].removeprefix("  report: ")).read_text())
    skipped = sum(1 for t in tickets if t["amount"] < 100)
    assert report["inputs"] == EVENTS
    assert report["outputs"] == {"old": {"ticket.triaged": EVENTS}, "new": {"ticket.triaged": EVENTS - skipped}}
    assert report["differing_events"] == skipped == len(report["differences"])
    assert all(d["new"] == [] and d["old"][0]["payload"]["amount"] < 100 for d in report["differences"])
    assert 0 < report["tokens"]["new"] < report["tokens"]["old"]
    assert len(report["side_effects_would_have_run"]) == EVENTS - skipped
    assert all(t.startswith(f"sandbox.{report['run']}.") for t in report["sandbox_topics"])
    assert f"events whose outputs differ: {skipped}" in run.stdout
