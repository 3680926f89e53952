"""Replay: after a reset, a fresh worker in the group re-reads exactly what the target says."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.broker import BrokerProfile
from streams.errors import ReplayError
from streams.replay import OffsetMove, ShiftBy, ToDatetime, ToEarliest, ToOffset, reset_offsets

PARTITIONS = 2
PER_PARTITION = 10


def _topic_with_records(profile: BrokerProfile, topic: str, timestamps_ms: list[int] | None = None) -> None:
    """PER_PARTITION records in each partition, all in one flush (one batch per partition)."""
    admin = AdminClient(profile.admin_config())
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result()
    producer = Producer(profile.producer_config())
    for partition in range(PARTITIONS):
        for i, ts in enumerate(timestamps_ms or [0] * PER_PARTITION):
            producer.produce(topic, value=b"%d" % i, partition=partition, timestamp=ts)
    assert producer.flush(10) == 0


def _consume_and_commit_everything(profile: BrokerProfile, group: str, topic: str) -> None:
    """What a worker leaves behind: every record read and committed (assigned, so no 3 s join)."""
    consumer = Consumer(_reader_config(profile, group))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    _read_to_end(consumer)
    consumer.commit(asynchronous=False)
    consumer.close()


def _reread(profile: BrokerProfile, group: str, topic: str) -> Counter[int]:
    """Records a fresh worker in ``group`` reads, per partition, before reaching the end."""
    consumer = Consumer(_reader_config(profile, group))
    consumer.subscribe([topic])
    try:
        return _read_to_end(consumer)
    finally:
        consumer.close()


def _reader_config(profile: BrokerProfile, group: str) -> dict[str, object]:
    # EOF events tell when a partition is read to its end; a short fetch wait delivers them quickly.
    return profile.consumer_config(group) | {"enable.partition.eof": True, "fetch.wait.max.ms": 10}


def _read_to_end(consumer: Consumer) -> Counter[int]:
    counts: Counter[int] = Counter()
    at_end: set[int] = set()
    deadline = time.monotonic() + 20
    while len(at_end) < PARTITIONS and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is None:
            continue
        if message.error() is None:
            counts[message.partition()] += 1
        elif message.error().code() == KafkaError._PARTITION_EOF:
            at_end.add(message.partition())
    assert len(at_end) == PARTITIONS, "did not reach the end of every partition within 20 s"
    return counts


def _committed(profile: BrokerProfile, group: str, topic: str) -> list[int]:
    consumer = Consumer(profile.consumer_config(group))
    try:
        return [tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)]
    finally:
        consumer.close()


@pytest.mark.e2e
def test_reset_to_earliest_rereads_everything(broker: BrokerProfile, namespace: str) -> None:
    topic, group = f"{namespace}events", f"{namespace}agent"
    _topic_with_records(broker, topic)
    _consume_and_commit_everything(broker, group, topic)

    moves = reset_offsets(broker, group, [topic], ToEarliest())

    assert moves == [OffsetMove(topic, p, PER_PARTITION, 0) for p in range(PARTITIONS)]
    assert _reread(broker, group, topic) == {p: PER_PARTITION for p in range(PARTITIONS)}


@pytest.mark.e2e
def test_shift_back_by_three_rereads_three_per_partition(broker: BrokerProfile, namespace: str) -> None:
    topic, group = f"{namespace}events", f"{namespace}agent"
    _topic_with_records(broker, topic)
    _consume_and_commit_everything(broker, group, topic)

    reset_offsets(broker, group, [topic], ShiftBy(-3))

    assert _reread(broker, group, topic) == {p: 3 for p in range(PARTITIONS)}


@pytest.mark.e2e
def test_reset_to_a_time_rereads_only_what_came_after_it(broker: BrokerProfile, namespace: str) -> None:
    topic, group = f"{namespace}events", f"{namespace}agent"
    cutoff = datetime.now(UTC) - timedelta(minutes=5)
    before, after = int((cutoff - timedelta(minutes=1)).timestamp() * 1000), int((cutoff + timedelta(minutes=1)).timestamp() * 1000)
    _topic_with_records(broker, topic, [before] * 6 + [after] * 4)
    _consume_and_commit_everything(broker, group, topic)

    moves = reset_offsets(broker, group, [topic], ToDatetime(cutoff))

    assert [move.new for move in moves] == [6] * PARTITIONS
    assert _reread(broker, group, topic) == {p: 4 for p in range(PARTITIONS)}


@pytest.mark.e2e
def test_targets_past_the_last_record_land_on_the_real_end(broker: BrokerProfile, namespace: str) -> None:
    """One batch per partition: Tansu reports its end as 1, the records end at 10."""
    topic, group = f"{namespace}events", f"{namespace}agent"
    _topic_with_records(broker, topic)

    later = reset_offsets(broker, group, [topic], ToDatetime(datetime.now(UTC) + timedelta(days=1)), dry_run=True)
    beyond = reset_offsets(broker, group, [topic], ToOffset(1000), dry_run=True)

    assert [move.new for move in later] == [PER_PARTITION] * PARTITIONS
    assert [move.new for move in beyond] == [PER_PARTITION] * PARTITIONS


@pytest.mark.e2e
def test_dry_run_reports_the_moves_and_changes_nothing(broker: BrokerProfile, namespace: str) -> None:
    topic, group = f"{namespace}events", f"{namespace}agent"
    _topic_with_records(broker, topic)
    _consume_and_commit_everything(broker, group, topic)

    moves = reset_offsets(broker, group, [topic], ToEarliest(), dry_run=True)

    assert moves == [OffsetMove(topic, p, PER_PARTITION, 0) for p in range(PARTITIONS)]
    assert _committed(broker, group, topic) == [PER_PARTITION] * PARTITIONS


@pytest.mark.e2e
def test_a_group_with_a_running_worker_is_refused(broker: BrokerProfile, namespace: str) -> None:
    if not broker.group_state_is_exact:
        pytest.skip("the embedded broker cannot tell; tests/e2e covers its pid-file check")
    topic, group = f"{namespace}events", f"{namespace}agent"
    _topic_with_records(broker, topic)
    worker = Consumer(broker.consumer_config(group))
    worker.subscribe([topic])
    try:
        deadline = time.monotonic() + 15
        while not worker.assignment() and time.monotonic() < deadline:
            worker.poll(0.1)

        with pytest.raises(ReplayError, match=f"group '{group}' is active .* stop the workers"):
            reset_offsets(broker, group, [topic], ToEarliest())
    finally:
        worker.close()


@pytest.mark.e2e
def test_shift_without_a_committed_offset_is_refused(broker: BrokerProfile, namespace: str) -> None:
    topic = f"{namespace}events"
    _topic_with_records(broker, topic)

    with pytest.raises(ReplayError, match=f"no committed offset on {topic} partition 0"):
        reset_offsets(broker, f"{namespace}new-agent", [topic], ShiftBy(-3))


def test_a_time_without_a_timezone_is_refused() -> None:
    with pytest.raises(ReplayError, match="no timezone"):
        ToDatetime(datetime(2026, 11, 25, 8, 0))
