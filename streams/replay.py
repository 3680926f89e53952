"""Replay: move a stopped consumer group's committed offsets so its agent re-reads.

The log is the source of truth, so fixing an agent and re-reading is the normal
way to rebuild what it produced. ``reset_offsets`` only moves committed offsets;
the agent's workers re-read when they start again. It refuses while the group
has workers, because they would overwrite the new offsets with their own.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams.broker import BrokerProfile, read_until, real_ends
from streams.admin import delete_topics, list_topics
from streams.effects import horizon_record
from streams.errors import BrokerError, ReplayError
from streams.liveness import running_workers
from streams.producer import publish
from streams.settings import Settings
from streams.topology import Topology
from streams.wiring import changelog_topics, table_dir

REQUEST_TIMEOUT = 30.0

Partition = tuple[str, int]


@dataclass(frozen=True)
class ToEarliest:
    """Re-read everything still on the topic."""


@dataclass(frozen=True)
class ToDatetime:
    """Re-read from the first record at or after ``at`` (timezone-aware)."""

    at: datetime

    def __post_init__(self) -> None:
        if self.at.utcoffset() is None:
            raise ReplayError(f"{self.at.isoformat()} has no timezone; give one, e.g. {self.at.isoformat()}+00:00")

    @property
    def epoch_ms(self) -> int:
        return int(self.at.timestamp() * 1000)


@dataclass(frozen=True)
class ToOffset:
    """Re-read from ``offset`` in every partition (clamped to what is on the topic)."""

    offset: int


@dataclass(frozen=True)
class ShiftBy:
    """Move each partition's committed offset by ``delta`` (negative re-reads that many)."""

    delta: int


ReplayTarget = ToEarliest | ToDatetime | ToOffset | ShiftBy


@dataclass(frozen=True)
class OffsetMove:
    """One partition's committed offset before (None: never committed) and after."""

    topic: str
    partition: int
    old: int | None
    new: int


def reset_offsets(
    profile: BrokerProfile, group_id: str, topics: Sequence[str], target: ReplayTarget, *, dry_run: bool = False
) -> list[OffsetMove]:
    """Move ``group_id``'s committed offsets on ``topics`` to ``target``, or only say how with ``dry_run``.

    New offsets are clamped to the records on the topic. ReplayError if the group
    has active members or a shift has no committed offset to start from.
    """
    admin = AdminClient(profile.admin_config())
    if profile.group_state_is_exact:
        _refuse_if_active(admin, group_id)
    partitions = _partitions(admin, topics)
    committed = _committed(admin, group_id, partitions)
    with _Bounds(profile, admin, partitions) as bounds:
        moves = [
            OffsetMove(topic, partition, committed[topic, partition], new)
            for (topic, partition), new in _targets(bounds, group_id, target, committed).items()
        ]
    if dry_run:
        return moves
    if profile.group_state_is_exact:
        _commit(admin, group_id, moves)
    else:
        _forget_group(admin, group_id)
        _commit_as_consumer(profile, group_id, moves)
    return moves


def _refuse_if_active(admin: AdminClient, group_id: str) -> None:
    try:
        group = admin.describe_consumer_groups([group_id], request_timeout=REQUEST_TIMEOUT)[group_id].result()
    except KafkaException as exc:
        raise BrokerError(f"cannot describe consumer group {group_id!r}: {exc.args[0]}") from exc
    if group.members or group.state not in (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD):
        raise ReplayError(
            f"consumer group {group_id!r} is active ({group.state.name.lower()}, {len(group.members)} members "
            f"reported): stop the workers of the agent that consumes as {group_id!r} first, then reset again"
        )


def _partitions(admin: AdminClient, topics: Sequence[str]) -> list[Partition]:
    if not topics:
        raise ReplayError("no topics given: name the topics whose offsets to reset")
    try:
        metadata = admin.list_topics(timeout=REQUEST_TIMEOUT)
    except KafkaException as exc:
        raise BrokerError(f"cannot list topics: {exc.args[0]}") from exc
    missing = [topic for topic in topics if topic not in metadata.topics]
    if missing:
        raise ReplayError(f"no such topics: {', '.join(missing)}; check the names (with their namespace prefix)")
    return [(topic, partition) for topic in topics for partition in sorted(metadata.topics[topic].partitions)]


def _committed(admin: AdminClient, group_id: str, partitions: Sequence[Partition]) -> dict[Partition, int | None]:
    request = ConsumerGroupTopicPartitions(group_id, [TopicPartition(t, p) for t, p in partitions])
    try:
        [future] = admin.list_consumer_group_offsets([request], request_timeout=REQUEST_TIMEOUT).values()
        listed = future.result().topic_partitions
    except KafkaException as exc:
        raise BrokerError(f"cannot read the committed offsets of group {group_id!r}: {exc.args[0]}") from exc
    return {(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None for tp in listed}


def _targets(
    bounds: _Bounds, group_id: str, target: ReplayTarget, committed: dict[Partition, int | None]
) -> dict[Partition, int]:
    """Partition → new offset, clamped to [earliest, end]."""
    match target:
        case ToEarliest():
            wanted = dict(bounds.earliest)
        case ToOffset(offset):
            wanted = {partition: offset for partition in committed}
        case ShiftBy(delta):
            wanted = {partition: _shift(group_id, partition, old, delta) for partition, old in committed.items()}
        case ToDatetime():
            wanted = bounds.first_at(target.epoch_ms)
    return {p: min(max(offset, bounds.earliest[p]), bounds.end[p]) for p, offset in wanted.items()}


def _shift(group_id: str, partition: Partition, old: int | None, delta: int) -> int:
    if old is None:
        raise ReplayError(
            f"group {group_id!r} has no committed offset on {partition[0]} partition {partition[1]} to shift "
            f"from; reset it to the earliest offset or to a time instead"
        )
    return old + delta


class _Bounds:
    """Where each partition's records start and end, and where a time falls among them.

    On brokers whose end offsets or time lookups are wrong (Tansu: see
    ``BrokerProfile.lag_is_exact`` and ``time_lookup_is_exact``), the answers come
    from reading the records themselves, never from the reported offsets.
    """

    def __init__(self, profile: BrokerProfile, admin: AdminClient, partitions: Sequence[Partition]) -> None:
        self._profile = profile
        self._admin = admin
        self._partitions = partitions

    def __enter__(self) -> _Bounds:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if "_reader" in self.__dict__:
            self._reader.close()

    @cached_property
    def earliest(self) -> dict[Partition, int]:
        return self._list(OffsetSpec.earliest())

    @cached_property
    def end(self) -> dict[Partition, int]:
        return real_ends(self._profile, self._list(OffsetSpec.latest()))

    @cached_property
    def _reader(self) -> Consumer:
        """Reads by assignment, so it never joins (or disturbs) a group.

        EOF events mark a partition's end; a short fetch wait delivers them quickly.
        """
        return Consumer(
            self._profile.consumer_config("kappa-replay-reader") | {"enable.partition.eof": True, "fetch.wait.max.ms": 10}
        )

    def first_at(self, epoch_ms: int) -> dict[Partition, int]:
        """Partition → offset of its first record at or after ``epoch_ms``; its end if none."""
        if self._profile.time_lookup_is_exact:
            found = self._list(OffsetSpec.for_timestamp(epoch_ms))
            return {p: offset if offset >= 0 else self.end[p] for p, offset in found.items()}
        return {p: self._read(p, self.earliest[p], lambda m: m.timestamp()[1] >= epoch_ms) for p in self._partitions}

    def _list(self, spec: OffsetSpec) -> dict[Partition, int]:
        request = {TopicPartition(t, p): spec for t, p in self._partitions}
        try:
            futures = self._admin.list_offsets(request, request_timeout=REQUEST_TIMEOUT)
            return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}
        except KafkaException as exc:
            raise BrokerError(f"cannot list offsets of {sorted({t for t, _ in self._partitions})}: {exc.args[0]}") from exc

    def _read(self, partition: Partition, start: int, stop: Callable[[Message], bool]) -> int:
        """Offset of the first record from ``start`` that ``stop`` accepts, or the partition's end."""
        topic, number = partition
        self._reader.assign([TopicPartition(topic, number, start)])
        try:
            return read_until(self._reader, partition, stop)
        finally:
            self._reader.unassign()


def _forget_group(admin: AdminClient, group_id: str) -> None:
    """Delete the (stopped) group so the offsets below are committed to an empty one.

    Tansu keeps a group its aiokafka members left in STABLE and rejects admin
    offset commits to it with "Unknown member"; Apache Kafka accepts them for
    an empty group, so this is only done on the embedded broker.
    """
    try:
        admin.delete_consumer_groups([group_id], request_timeout=REQUEST_TIMEOUT)[group_id].result()
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
            raise BrokerError(f"cannot reset consumer group {group_id!r}: {exc.args[0]}") from exc


def _commit_as_consumer(profile: BrokerProfile, group_id: str, moves: Sequence[OffsetMove]) -> None:
    """Commit as a consumer that never joins: Tansu drops the connection on an
    admin OffsetCommit to a group it just deleted, but takes this one."""
    consumer = Consumer(profile.consumer_config(group_id))
    try:
        committed = consumer.commit(offsets=[TopicPartition(m.topic, m.partition, m.new) for m in moves], asynchronous=False)
    except KafkaException as exc:
        raise BrokerError(f"cannot move the offsets of group {group_id!r}: {exc.args[0]}") from exc
    finally:
        consumer.close()
    _raise_unmoved(group_id, committed or [])


def _commit(admin: AdminClient, group_id: str, moves: Sequence[OffsetMove]) -> None:
    request = ConsumerGroupTopicPartitions(group_id, [TopicPartition(m.topic, m.partition, m.new) for m in moves])
    try:
        [future] = admin.alter_consumer_group_offsets([request], request_timeout=REQUEST_TIMEOUT).values()
        moved = future.result().topic_partitions
    except KafkaException as exc:
        raise BrokerError(f"cannot move the offsets of group {group_id!r}: {exc.args[0]}") from exc
    _raise_unmoved(group_id, moved)


def _raise_unmoved(group_id: str, partitions: Sequence[TopicPartition]) -> None:
    failed = [tp for tp in partitions if tp.error is not None]
    if failed:
        listed = ", ".join(f"{tp.topic} partition {tp.partition}: {tp.error}" for tp in failed)
        raise BrokerError(f"group {group_id!r}: some offsets were not moved: {listed}")


def _record_horizon(profile: BrokerProfile, replays_topic: str, moves: Sequence[OffsetMove]) -> None:
    """Tell the agent which events it is about to see again, so their side effects do not run twice."""
    back = [horizon_record(replays_topic, m.topic, m.partition, m.old) for m in moves if m.old is not None and m.new < m.old]

    publish(profile, back)


def target_from(to_earliest: bool, to_datetime: datetime | None, to_offset: int | None, shift_by: int | None) -> ReplayTarget:
    """The one target the CLI's mutually exclusive flags chose."""
    if to_datetime is not None:
        return ToDatetime(to_datetime)
    if to_offset is not None:
        return ToOffset(to_offset)
    if shift_by is not None:
        return ShiftBy(shift_by)
    if to_earliest:
        return ToEarliest()
    raise ReplayError("choose a target: --to-earliest, --to-datetime ISO, --to-offset N or --shift-by N")


def replay_agent(
    topology: Topology,
    settings: Settings,
    profile: BrokerProfile,
    agent: str,
    target: ReplayTarget,
    *,
    reset_tables: bool = False,
    dry_run: bool = False,
) -> str:
    """Reset one agent's group on its input topics; with ``reset_tables``, drop its tables too.

    Tables are projections of what the agent read: replaying onto tables that
    already hold the replayed events applies them twice. Dropping the
    changelogs and the local RocksDB files makes the replay rebuild them.
    """
    if agent not in topology.agents:
        raise ReplayError(f"no agent '{agent}' in {topology.path.name}; agents: {', '.join(topology.agents)}")
    running = running_workers(settings, topology.group_id(agent))
    if running:
        pids = ", ".join(map(str, running))
        raise ReplayError(f"agent '{agent}' has workers running on this host (pid {pids}): stop the workers first, then replay")
    inputs = [topology.topic_name(t) for t in topology.agents[agent].inputs]
    moves = reset_offsets(profile, topology.group_id(agent), inputs, target, dry_run=dry_run)
    if not dry_run:
        _record_horizon(profile, topology.topic_name(topology.replays_topic(agent)), moves)
    lines = [f"{m.topic}[{m.partition}]: {'-' if m.old is None else m.old} -> {m.new}" for m in moves]
    changelogs = changelog_topics(topology, agent)
    if reset_tables and not dry_run:
        delete_topics(profile, [t for t in changelogs if t in list_topics(profile)])
        shutil.rmtree(table_dir(topology, agent, settings), ignore_errors=True)
    if changelogs:
        what = "dropped; the replay rebuilds them" if reset_tables else "kept; replayed events apply to them again (--reset-tables rebuilds)"
        lines.append(f"tables {', '.join(topology.agents[agent].tables)}: {what}")
    prefix = "dry run, nothing changed:\n" if dry_run else ""
    return prefix + "\n".join(lines)
