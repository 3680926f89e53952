"""Tables are projections of the log: they survive restarts, rebuild from changelogs, and replays rebuild them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams.broker import real_ends
from streams.edge import read_to_end
from streams.producer import publish
from streams.records import Record
from streams.wiring import changelog_topics
from tests.e2e.harness import Cluster, payloads_of

pytestmark = pytest.mark.e2e


def _counts(cluster: Cluster, expect: int) -> list[tuple[str, int]]:
    return sorted((p["key"], p["n"]) for p in payloads_of(cluster.read("counter.out", expect)))


def test_restarted_worker_keeps_its_table_and_does_not_reprocess(cluster: Cluster) -> None:
    worker = cluster.start("counter")
    cluster.send("counter.in", [{"key": k, "seq": i} for i, k in enumerate("aabab")], key=lambda p: p["key"])
    assert len(_counts(cluster, 5)) == 5
    assert worker.stop() == 0

    cluster.start("counter")
    cluster.send("counter.in", [{"key": "a", "seq": 5}], key=lambda p: p["key"])

    counts = _counts(cluster, 6)
    assert len(counts) == 6  # nothing handled twice
    assert ("a", 4) in counts  # the table remembered a's three events


def test_table_rebuilds_from_its_changelog_when_local_state_is_deleted(cluster: Cluster) -> None:
    worker = cluster.start("counter")
    cluster.send("counter.in", [{"key": "a", "seq": i} for i in range(30)], key=lambda p: p["key"])
    assert len(_counts(cluster, 30)) == 30
    assert worker.stop() == 0
    shutil.rmtree(Path(cluster.env["KAPPA_STATE_DIR"]) / "tables")

    cluster.start("counter")
    cluster.send("counter.in", [{"key": "a", "seq": 30}], key=lambda p: p["key"])

    assert _counts(cluster, 31)[-1] == ("a", 31)


def test_table_recovers_past_the_misreported_end_of_a_batched_changelog(cluster: Cluster) -> None:
    """Tansu reports a partition's end as its last batch's first offset + 1; recovery must read to the real end."""
    keys = [f"k{i}" for i in range(20)]
    worker = cluster.start("counter")
    cluster.send("counter.in", [{"key": k, "seq": i} for i in range(10) for k in keys], key=lambda p: p["key"])
    assert len(_counts(cluster, 200)) == 200
    assert worker.stop() == 0
    # Each changelog partition then ends in one batch setting all its keys to 100 (faust batches its own
    # writes too, but whether a partition's last batch holds one record or several is up to timing).
    [topic] = changelog_topics(cluster.topology, "counter")
    partition_of = {record.key: record.origin.partition for record in read_to_end(cluster.profile, topic)}
    publish(cluster.profile, [Record(topic, key, b"100", [], partition) for key, partition in partition_of.items()])
    reported, real = _changelog_ends(cluster)
    assert sum(real.values()) == 220
    assert cluster.profile.lag_is_exact or reported != real  # the case a recovery trusting the broker gets wrong

    for restart, lose_state in enumerate((False, True), start=1):
        if lose_state:
            shutil.rmtree(Path(cluster.env["KAPPA_STATE_DIR"]) / "tables")
        worker = cluster.start("counter")
        cluster.send("counter.in", [{"key": k, "seq": 200 * restart + i} for i, k in enumerate(keys)], key=lambda p: p["key"])
        counts = _counts(cluster, 200 + 20 * restart)
        assert worker.stop() == 0
        assert {k: max(n for key, n in counts if key == k) for k in keys} == dict.fromkeys(keys, 100 + restart)


def test_the_surviving_worker_takes_over_a_partition_and_its_table(cluster: Cluster) -> None:
    # Two workers on one host (each keeps its tables in a directory of its own). No periodic
    # commit within the test: what the survivor handled is committed only by the rebalance, or
    # handled twice after it (faust forgets acked offsets as a rebalance starts: streams/broker.py).
    env = {"KAPPA_COMMIT_INTERVAL_S": "600"}
    first = cluster.start("counter", extra_env=env)
    second = cluster.start("counter", extra_env=env)
    keys = [f"k{i}" for i in range(20)]
    cluster.send("counter.in", [{"key": k, "seq": i} for i in range(10) for k in keys], key=lambda p: p["key"])
    assert len(_counts(cluster, 200)) == 200
    assert second.stop() == 0

    cluster.send("counter.in", [{"key": k, "seq": 200 + i} for i, k in enumerate(keys)], key=lambda p: p["key"])
    counts = _counts(cluster, 220)

    assert first.alive()
    assert len(counts) == 220
    assert {k: max(n for key, n in counts if key == k) for k in keys} == dict.fromkeys(keys, 11)


def _changelog_ends(cluster: Cluster) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """The counter table's changelog ends: as the broker reports them, and real."""
    [topic] = changelog_topics(cluster.topology, "counter")
    partitions = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(cluster.topology.input_partitions("counter"))}
    admin = AdminClient(cluster.profile.admin_config())  # kept alive until the futures resolve
    futures = admin.list_offsets(partitions, request_timeout=10)
    reported = {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}
    return reported, real_ends(cluster.profile, reported)


def test_replay_to_earliest_rereads_the_log_and_rebuilds_the_table(cluster: Cluster) -> None:
    worker = cluster.start("counter")
    cluster.send("counter.in", [{"key": k, "seq": i} for i, k in enumerate("abaab")], key=lambda p: p["key"])
    first = _counts(cluster, 5)
    assert worker.stop() == 0

    replay = cluster.cli("replay", "--agent", "counter", "--to-earliest", "--reset-tables")
    assert replay.returncode == 0, replay.stderr
    cluster.start("counter")

    again = _counts(cluster, 10)
    assert again == sorted(first + first)  # every event re-read, counts rebuilt from zero


def test_replay_refuses_while_the_agent_runs(cluster: Cluster) -> None:
    cluster.start("counter")
    cluster.send("counter.in", [{"key": "a", "seq": 0}], key=lambda p: p["key"])
    assert len(_counts(cluster, 1)) == 1

    replay = cluster.cli("replay", "--agent", "counter", "--to-earliest")

    assert replay.returncode == 1
    assert "stop the workers" in replay.stderr
