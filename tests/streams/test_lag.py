"""Lag from what the runtime produced and what a group committed, right even where the broker's end offsets are not."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.admin import TopicWanted, apply_topics, topics_wanted
from streams.broker import BrokerProfile
from streams.edge import SEND_CHUNK, Outgoing, read_to_end, send
from streams.envelope import new_event
from streams.lag import LagGate, committed_offsets, lag
from streams.producer import AsyncProducer
from streams.records import Record
from streams.topology import load_topology
from tests.e2e.harness import FLOW_TOPOLOGY

pytestmark = pytest.mark.e2e

GROUP_SUFFIX = "readers"


def commit(profile: BrokerProfile, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """What a consumer of the topic would commit after handling records up to ``offsets``."""
    consumer = Consumer(profile.consumer_config(group))
    try:
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


async def produce(profile: BrokerProfile, topic: str, count: int) -> AsyncProducer:
    """``count`` records over two partitions, sent at once so librdkafka packs them into batches."""
    producer = AsyncProducer(profile.producer_config())
    await producer.send([Record(topic, None, f"r{i}".encode(), [], partition=i % 2) for i in range(count)])
    return producer


def reported_ends(profile: BrokerProfile, topic: str) -> dict[tuple[str, int], int]:
    consumer = Consumer(profile.consumer_config("kappa-watermarks"))
    try:
        return {(topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (0, 1)}
    finally:
        consumer.close()


async def test_lag_is_what_was_produced_minus_what_the_group_committed(broker: BrokerProfile, namespace: str) -> None:
    topic, group = f"{namespace}work", f"{namespace}{GROUP_SUFFIX}"
    apply_topics(broker, [TopicWanted(topic, partitions=2, replication=1)])
    producer = await produce(broker, topic, 1000)
    producer.close()
    commit(broker, group, {(topic, 0): 200, (topic, 1): 100})

    assert producer.ends == {(topic, 0): 500, (topic, 1): 500}
    assert lag(producer.ends, committed_offsets(broker, group, producer.ends)) == 700
    if broker.embedded:  # the broker's own ends stop at the last batch's first record
        assert lag(reported_ends(broker, topic), committed_offsets(broker, group, producer.ends)) < 700


async def test_gate_holds_a_producer_until_the_consumer_catches_up(broker: BrokerProfile, namespace: str) -> None:
    topic, group = f"{namespace}work", f"{namespace}{GROUP_SUFFIX}"
    apply_topics(broker, [TopicWanted(topic, partitions=2, replication=1)])
    producer = await produce(broker, topic, 1000)
    producer.close()
    gate = LagGate(broker, {topic: (group,)}, producer.ends, max_lag=100, interval_s=0.1)

    commit(broker, group, {(topic, 0): 400, (topic, 1): 300})  # 300 behind: hold
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(gate.wait([topic]), 1.0)

    commit(broker, group, {(topic, 0): 450, (topic, 1): 450})  # 100 behind: go
    started = time.monotonic()
    await asyncio.wait_for(gate.wait([topic]), 5.0)
    assert time.monotonic() - started < 2.0
    await asyncio.wait_for(gate.wait([f"{namespace}nobody-reads-this"]), 0.1)


def test_send_with_max_lag_waits_for_the_reading_agent_between_chunks(broker: BrokerProfile, namespace: str) -> None:
    topology = load_topology(FLOW_TOPOLOGY, namespace=namespace)
    apply_topics(broker, topics_wanted(topology))
    topic = topology.topic_name("asks.in")
    items = [Outgoing(new_event("ask", {"seq": i}, source="test", timestamp=0), str(i)) for i in range(3 * SEND_CHUNK)]
    sending = threading.Thread(target=send, args=(broker, topology, "asks.in", items), kwargs={"max_lag": SEND_CHUNK})
    sending.start()
    time.sleep(2.0)
    on_topic = read_to_end(broker, topic)
    assert len(on_topic) == 2 * SEND_CHUNK and sending.is_alive()  # the second chunk put the agent 200 behind

    ends = {(topic, p): 0 for p in (0, 1)}
    for record in on_topic:
        ends[(topic, record.origin.partition)] = max(ends[(topic, record.origin.partition)], record.origin.offset + 1)
    commit(broker, topology.group_id("asker"), ends)  # the agent caught up
    sending.join(10)
    assert not sending.is_alive() and len(read_to_end(broker, topic)) == 3 * SEND_CHUNK
