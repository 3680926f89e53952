"""Applying the topology's topics: create, grow, reconfigure, and report every failure."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from streams.admin import ApplyReport, TopicWanted, apply_topics, delete_topics, list_topics
from streams.broker import BrokerProfile
from streams.errors import BrokerError

pytestmark = pytest.mark.e2e


def _config(profile: BrokerProfile, topic: str) -> dict[str, str]:
    admin = AdminClient(profile.admin_config())
    [future] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
    return {name: entry.value for name, entry in future.result().items()}


def test_missing_topics_are_created_with_their_config(broker: BrokerProfile, namespace: str) -> None:
    events = TopicWanted(f"{namespace}events", partitions=3, replication=1)
    tasks = TopicWanted(f"{namespace}tasks", partitions=2, replication=1, config={"cleanup.policy": "compact"})

    report = apply_topics(broker, [events, tasks])

    assert report == ApplyReport(created=[events.name, tasks.name])
    assert {name: n for name, n in list_topics(broker).items() if name.startswith(namespace)} == {events.name: 3, tasks.name: 2}
    assert _config(broker, tasks.name)["cleanup.policy"] == "compact"


def test_applying_twice_changes_nothing_the_second_time(broker: BrokerProfile, namespace: str) -> None:
    topics = [TopicWanted(f"{namespace}events", 2, 1, {"cleanup.policy": "compact", "retention.ms": "3600000"})]
    apply_topics(broker, topics)

    assert apply_topics(broker, topics) == ApplyReport(unchanged=[topics[0].name])


def test_a_differing_config_is_set(broker: BrokerProfile, namespace: str) -> None:
    name = f"{namespace}events"
    apply_topics(broker, [TopicWanted(name, 1, 1, {"retention.ms": "3600000"})])

    report = apply_topics(broker, [TopicWanted(name, 1, 1, {"retention.ms": "60000"})])

    assert report.updated == [name]
    assert _config(broker, name)["retention.ms"] == "60000"


def test_more_partitions_grow_the_topic(broker: BrokerProfile, namespace: str) -> None:
    if broker.embedded:
        pytest.skip("the embedded broker cannot add partitions: see the next test")
    name = f"{namespace}events"
    apply_topics(broker, [TopicWanted(name, 2, 1)])

    report = apply_topics(broker, [TopicWanted(name, 4, 1)])

    assert report.updated == [name]
    assert list_topics(broker)[name] == 4


def test_embedded_broker_cannot_add_partitions_and_says_how_to_fix_it(broker: BrokerProfile, namespace: str) -> None:
    """Tansu 0.6.0 has no CreatePartitions. If this fails, it has: drop the special message."""
    if not broker.embedded:
        pytest.skip("Apache Kafka adds partitions: see the previous test")
    name = f"{namespace}events"
    apply_topics(broker, [TopicWanted(name, 2, 1)])

    with pytest.raises(BrokerError, match=f"{name}: the broker cannot add partitions .* delete the topic"):
        apply_topics(broker, [TopicWanted(name, 4, 1)])

    assert list_topics(broker)[name] == 2


def test_every_failing_topic_is_reported_with_its_reason_and_the_others_are_created(
    broker: BrokerProfile, namespace: str
) -> None:
    shrinking = TopicWanted(f"{namespace}shrinking", 3, 1)
    apply_topics(broker, [shrinking])
    fine = TopicWanted(f"{namespace}fine", 1, 1)
    illegal = TopicWanted(f"{namespace}bad name!", 1, 1)

    with pytest.raises(BrokerError) as raised:
        apply_topics(broker, [TopicWanted(shrinking.name, 1, 1), illegal, fine])

    message = str(raised.value)
    assert "2 of 3 topics could not be applied" in message
    assert f"{shrinking.name}: has 3 partitions, the topology wants 1: Kafka cannot remove partitions" in message
    assert f"{illegal.name}: not a legal topic name" in message
    assert list_topics(broker).get(fine.name) == 1
    assert illegal.name not in list_topics(broker)


def test_deleted_topics_are_gone_and_deleting_again_is_fine(broker: BrokerProfile, namespace: str) -> None:
    names = [f"{namespace}a", f"{namespace}b"]
    apply_topics(broker, [TopicWanted(name, 1, 1) for name in names])

    delete_topics(broker, names)
    delete_topics(broker, names)

    assert not set(names) & set(list_topics(broker))
