"""Consumer lag computed from offsets we can trust, and producers that wait on it.

On the embedded broker a partition's reported end offset is wrong (see
``streams.broker``), so lag here is "records seen on the topic minus what the
group committed", where the caller supplies the ends it observed (it read or
produced those records itself). Against Apache Kafka the same numbers hold.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Mapping, Sequence

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.broker import BrokerProfile
from streams.errors import BrokerError
from streams.topology import Topology

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


def consumer_groups(topology: Topology, topics: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Physical topic → the consumer groups of the agents that read it, for topics someone reads."""
    groups = {
        topology.topic_name(topic): tuple(
            topology.group_id(agent.name) for agent in topology.agents.values() if topic in agent.inputs
        )
        for topic in topics
    }
    return {topic: readers for topic, readers in groups.items() if readers}


class LagGate:
    """Holds a producer back while a consumer of what it wrote lags more than ``max_lag`` records.

    The ends are the producer's own acknowledged offsets (``AsyncProducer.ends``),
    read live; the groups' commits are re-read at most every ``interval_s``. The
    lag is exact for partitions this producer wrote last, and a lower bound where
    others wrote after it.
    """

    def __init__(
        self,
        profile: BrokerProfile,
        groups: Mapping[str, Sequence[str]],
        produced: Mapping[Partition, int],
        max_lag: int,
        interval_s: float = 0.5,
    ) -> None:
        self._profile = profile
        self._groups = groups
        self._produced = produced
        self.max_lag = max_lag
        self._interval_s = interval_s
        self._committed: dict[str, dict[Partition, int]] = {}
        self._checked = -math.inf

    async def wait(self, topics: Iterable[str]) -> None:
        """Return once no group reading ``topics`` lags more than ``max_lag``."""
        watched = sorted({topic for topic in topics if topic in self._groups})
        while watched and self.lag(watched) > self.max_lag:
            await asyncio.sleep(max(self._checked + self._interval_s - time.monotonic(), 0))
            await asyncio.to_thread(self._refresh, watched)

    def lag(self, topics: Sequence[str]) -> int:
        """The largest lag of a group reading ``topics``, from the commits last read."""
        return max(
            lag(self._ends(topic), self._committed.get(group, {}))
            for topic in topics
            for group in self._groups[topic]
        )

    def _ends(self, topic: str) -> dict[Partition, int]:
        return {tp: end for tp, end in list(self._produced.items()) if tp[0] == topic}

    def _refresh(self, topics: Sequence[str]) -> None:
        for topic in topics:
            for group in self._groups[topic]:
                self._committed.setdefault(group, {}).update(committed_offsets(self._profile, group, self._ends(topic)))
        self._checked = time.monotonic()
