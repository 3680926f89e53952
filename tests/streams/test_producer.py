"""The async producer: a send returns once the broker acknowledged every record, and says when one failed."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from streams.broker import BrokerProfile
from streams.errors import BrokerError
from streams.producer import AsyncProducer
from streams.records import Record

pytestmark = pytest.mark.e2e


def _topic(broker: BrokerProfile, name: str) -> str:
    admin = AdminClient(broker.admin_config())
    admin.create_topics([NewTopic(name, 1, 1)])[name].result()
    return name


async def test_send_returns_once_every_record_is_acknowledged(broker: BrokerProfile, namespace: str) -> None:
    topic = _topic(broker, f"{namespace}acked")
    producer = AsyncProducer(broker.producer_config())
    try:
        await producer.send([Record(topic, b"k", b"%d" % i, [("h", b"v")] if i % 2 else []) for i in range(5)])
        await producer.send([])
    finally:
        producer.close()
    assert producer.ends == {(topic, 0): 5}


async def test_a_refused_record_fails_the_send_with_broker_error(broker: BrokerProfile, namespace: str) -> None:
    topic = _topic(broker, f"{namespace}refused")
    producer = AsyncProducer(broker.producer_config())
    try:
        # refused when produced or when delivered, depending on whether librdkafka has the topic's metadata yet
        with pytest.raises(BrokerError, match=f"topic '{topic}'"):
            await producer.send([Record(topic, b"k", b"ok", []), Record(topic, b"k", b"lost", [], partition=7)])
        await producer.send([Record(topic, b"k", b"after", [])])  # the producer stays usable
    finally:
        producer.close()
    assert producer.ends == {(topic, 0): 2}
