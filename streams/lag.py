"""Consumer lag computed from offsets we can trust.

On the embedded broker a partition's reported end offset is wrong (see
``streams.broker``), so lag here is "records seen on the topic minus what the
group committed", where the caller supplies the ends it observed (it read or
produced those records itself). Against Apache Kafka the same numbers hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.broker import BrokerProfile
from streams.errors import BrokerError

Partition = tuple[str, int]


def committed_offsets(profile: BrokerProfile, group: str, partitions: Iterable[Partition]) -> dict[Partition, int]:
    """The group's committed offset per partition; 0 where it has committed nothing."""
    wanted = [TopicPartition(topic, partition) for topic, partition in partitions]
    if not wanted:
        return {}
    admin = AdminClient(profile.admin_config())
    request = [ConsumerGroupTopicPartitions(group, wanted)]
    try:
        result = admin.list_consumer_group_offsets(request, request_timeout=10)[group].result()
    except KafkaException as exc:
        raise BrokerError(f"cannot read committed offsets of group '{group}': {exc}") from exc
    return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in result.topic_partitions}


def lag(ends: Mapping[Partition, int], committed: Mapping[Partition, int]) -> int:
    """Records at or after each committed offset, summed over ``ends``' partitions."""
    return sum(max(end - committed.get(tp, 0), 0) for tp, end in ends.items())
