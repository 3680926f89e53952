"""Dead-letter topics as operational tooling: list, show, redrive, purge, and the depth warning.

``<agent>.dlq`` is an append-only log. The runtime appends dead letters
(``streams.failures.dead_letter_record``); this module appends markers: "dead
letter ID was redriven" and "dead letters older than T are purged". Which dead
letters are still live, and the depth per category, is ``fold`` over that log:
the one definition the CLI and the worker's warning (``DepthWatch``) share.

Purging is a marker rather than Kafka's DeleteRecords because the embedded
broker cannot delete records: Tansu 0.6 panics ("not yet implemented",
tansu-storage/src/dynostore.rs:641) and drops the connection.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from streams.admin import list_topics
from streams.broker import BrokerProfile, read_until
from streams.edge import describe
from streams.errors import KappaError
from streams.failures import DLQ, fields, redrive_record
from streams.producer import publish
from streams.records import Incoming, Record, from_confluent
from streams.topology import Topology
from streams.types import JsonObject

log = logging.getLogger(__name__)

REDRIVEN = "redriven"
"""Marker header (under ``dlq.``): the ID of the dead letter that was redriven."""
PURGED_BEFORE_MS = "purged_before_ms"
"""Marker header (under ``dlq.``): dead letters that died before this epoch ms are purged."""
_ERROR_EXCERPT = 80


class DlqError(KappaError):
    """A dead-letter command was refused (unknown agent or ID, bad time)."""


@dataclass(frozen=True)
class DeadLetterId:
    """A dead letter's position in its agent's DLQ, written ``AGENT:PARTITION:OFFSET``."""

    agent: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.agent}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> DeadLetterId:
        agent, _, rest = text.partition(":")
        partition, _, offset = rest.partition(":")
        if not (agent and partition.isdigit() and offset.isdigit()):
            raise DlqError(f"{text!r} is not a dead letter ID: write AGENT:PARTITION:OFFSET, as `kappa-agents dlq list` shows")
        return cls(agent, int(partition), int(offset))


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter: the record as read (original key, value, headers) and its reason."""

    id: DeadLetterId
    record: Incoming
    category: str
    error: str
    attempts: int
    first_failure_ms: int
    last_failure_ms: int
    """When it died: what ``--since`` and ``purge --before`` compare with."""
    source: str
    """Where the event first entered: ``topic[partition]@offset``."""

    @classmethod
    def of(cls, agent: str, record: Incoming) -> DeadLetter:
        """Its ``dlq.*`` headers read leniently: a record someone else wrote still lists."""
        reason, at = fields(record.headers, DLQ), record.origin
        died = int(reason.get("last_failure_ms") or at.timestamp)
        return cls(
            id=DeadLetterId(agent, at.partition, at.offset),
            record=record,
            category=reason.get("category", "unknown"),
            error=reason.get("error", ""),
            attempts=int(reason.get("attempts") or 0),
            first_failure_ms=int(reason.get("first_failure_ms") or died),
            last_failure_ms=died,
            source=f"{reason.get('topic', '?')}[{reason.get('partition', '?')}]@{reason.get('offset', '?')}",
        )


@dataclass(frozen=True)
class Depth:
    """Live dead letters per category of one agent; every category its log ever held is listed, 0 included."""

    agent: str
    by_category: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_category.values())

    def __str__(self) -> str:
        counts = " ".join(f"{category}={n}" for category, n in sorted(self.by_category.items()))
        return f"depth {self.agent}: {counts + ' ' if counts else ''}total={self.total}"


@dataclass(frozen=True)
class DlqState:
    """What an agent's DLQ log says: every dead letter, which were redriven, what is purged."""

    agent: str
    letters: tuple[DeadLetter, ...]
    redriven: frozenset[DeadLetterId]
    purged_before_ms: int
    """0: nothing purged."""

    def status(self, letter: DeadLetter) -> str:
        """``live``, ``redriven`` or ``purged``."""
        if letter.id in self.redriven:
            return "redriven"
        return "purged" if letter.last_failure_ms < self.purged_before_ms else "live"

    @property
    def live(self) -> tuple[DeadLetter, ...]:
        return tuple(letter for letter in self.letters if self.status(letter) == "live")

    @property
    def depth(self) -> Depth:
        counts = Counter({letter.category: 0 for letter in self.letters})
        counts.update(letter.category for letter in self.live)
        return Depth(self.agent, dict(counts))


def fold(agent: str, records: Iterable[Incoming]) -> DlqState:
    """The state of ``agent``'s DLQ from its records (any order): pure, so every reader agrees."""
    letters: list[DeadLetter] = []
    redriven: set[DeadLetterId] = set()
    purged_before_ms = 0
    for record in records:
        marks = fields(record.headers, DLQ)
        if REDRIVEN in marks:
            redriven.add(DeadLetterId.parse(marks[REDRIVEN]))
        elif PURGED_BEFORE_MS in marks:
            purged_before_ms = max(purged_before_ms, int(marks[PURGED_BEFORE_MS]))
        else:
            letters.append(DeadLetter.of(agent, record))
    letters.sort(key=lambda letter: (letter.id.partition, letter.id.offset))
    return DlqState(agent, tuple(letters), frozenset(redriven), purged_before_ms)


def redrive_marker(letter: DeadLetter, dlq_topic: str) -> Record:
    """Appended to the DLQ after the dead letter went back to its agent."""
    headers = [(DLQ + REDRIVEN, str(letter.id).encode()), (DLQ + "category", letter.category.encode())]
    return Record(dlq_topic, None, b"", headers, letter.id.partition)


def purge_marker(dlq_topic: str, before_ms: int) -> Record:
    return Record(dlq_topic, None, b"", [(DLQ + PURGED_BEFORE_MS, str(before_ms).encode())], 0)


@dataclass(frozen=True)
class Selection:
    """Which live dead letters a command is about; an empty filter matches all."""

    categories: frozenset[str] = frozenset()
    ids: frozenset[DeadLetterId] = frozenset()
    since_ms: int = 0

    @classmethod
    def of(cls, categories: Sequence[str] | None, ids: Sequence[str] | None, since: datetime | None) -> Selection:
        return cls(frozenset(categories or ()), frozenset(map(DeadLetterId.parse, ids or ())), epoch_ms(since) if since else 0)

    def matches(self, letter: DeadLetter) -> bool:
        return (
            (not self.categories or letter.category in self.categories)
            and (not self.ids or letter.id in self.ids)
            and letter.last_failure_ms >= self.since_ms
        )


def list_dead_letters(profile: BrokerProfile, topology: Topology, agent: str | None, selection: Selection) -> str:
    """One line per selected live dead letter, then each agent's depth."""
    lines = []
    for state in read_states(profile, topology, _agents(topology, agent, selection)):
        lines += [summary_line(letter) for letter in state.live if selection.matches(letter)]
        lines.append(str(state.depth))
    return "\n".join(lines)


def show_dead_letter(profile: BrokerProfile, topology: Topology, dead_letter_id: str) -> JsonObject:
    """Everything about one dead letter: status, all headers, key, decoded event (or its bytes and why not)."""
    wanted = DeadLetterId.parse(dead_letter_id)
    [state] = read_states(profile, topology, _agents(topology, wanted.agent, Selection()))
    letter = next((letter for letter in state.letters if letter.id == wanted), None)
    if letter is None:
        dlq = topology.topic_name(topology.dead_letter_topic(wanted.agent))
        where = f"{dlq} partition {wanted.partition} offset {wanted.offset}"
        raise DlqError(f"no dead letter at {where}; see `kappa-agents dlq list --agent {wanted.agent}`")
    headers = [[key, value.decode("utf-8", "backslashreplace")] for key, value in letter.record.headers]
    return {"id": str(letter.id), "status": state.status(letter), "headers": headers, **describe(letter.record)}


def redrive(profile: BrokerProfile, topology: Topology, agent: str | None, selection: Selection, *, dry_run: bool = False) -> str:
    """Send the selected live dead letters back to their agents (attempts reset), then mark them redriven.

    Redrive before marking: if marking fails, a second redrive may send an
    event twice, but no event is ever marked without having been sent.
    """
    states = read_states(profile, topology, _agents(topology, agent, selection))
    chosen = [letter for state in states for letter in state.live if selection.matches(letter)]
    _refuse_missing_ids(selection, chosen)
    verb = "would redrive" if dry_run else "redrove"
    lines = [
        f"{verb} {letter.id} ({letter.category}) to {_redrive_topic(topology, letter)}[{letter.id.partition}]" for letter in chosen
    ]
    if dry_run:
        return "\n".join(["dry run, nothing changed:", *lines, f"{len(chosen)} dead letter(s) would be redriven"])
    publish(profile, [_back_to_agent(topology, letter) for letter in chosen])
    publish(profile, [redrive_marker(letter, _dlq_topic(topology, letter.id.agent)) for letter in chosen])
    return "\n".join([*lines, f"redrove {len(chosen)} dead letter(s)"])


def purge(profile: BrokerProfile, topology: Topology, agent: str | None, before: datetime, *, dry_run: bool = False) -> str:
    """Purge the dead letters that died before ``before``: they leave the list and the depth."""
    before_ms, lines = epoch_ms(before), []
    for state in read_states(profile, topology, _agents(topology, agent, Selection())):
        gone = Depth(state.agent, Counter(letter.category for letter in state.live if letter.last_failure_ms < before_ms))
        verb = "would purge" if dry_run else "purged"
        lines.append(f"{verb} {gone.total} dead letter(s) of {state.agent} that died before {before.isoformat()}: {gone}")
        if not dry_run and gone.total:
            publish(profile, [purge_marker(_dlq_topic(topology, state.agent), before_ms)])
    return "\n".join(["dry run, nothing changed:", *lines] if dry_run else lines)


class DepthWatch:
    """Warns in the worker's log when one category of an agent's dead letters reaches ``failures.dlq_depth_warning``.

    It starts from ``fold`` over the DLQ and counts the dead letters this worker
    writes; redrives and purges made while it runs are seen at its next start.
    It warns at the threshold and again at each further multiple of it.
    """

    def __init__(self, depth: Depth, threshold: int | None) -> None:
        self._agent = depth.agent
        self._depth = Counter(depth.by_category)
        self._threshold = threshold
        for category, n in sorted(depth.by_category.items()):
            if threshold is not None and n >= threshold:
                self._warn(category, n)

    @classmethod
    def at_start(cls, profile: BrokerProfile, topology: Topology, agent: str) -> DepthWatch:
        """Read the agent's DLQ, unless the topology sets no threshold (then it never warns)."""
        threshold = topology.failures.dlq_depth_warning
        if threshold is None:
            return cls(Depth(agent, {}), None)
        [state] = read_states(profile, topology, [agent])
        return cls(state.depth, threshold)

    def dead_lettered(self, category: str) -> None:
        """Count one dead letter the worker wrote (after the broker acknowledged it)."""
        self._depth[category] += 1
        n = self._depth[category]
        if self._threshold is not None and n % self._threshold == 0:
            self._warn(category, n)

    def _warn(self, category: str, depth: int) -> None:
        log.warning(
            "agent %s has %d dead letters of category %s (warning threshold %d, failures.dlq_depth_warning): "
            "run `kappa-agents dlq list --agent %s`",
            self._agent, depth, category, self._threshold, self._agent,
        )  # fmt: skip


def summary_line(letter: DeadLetter) -> str:
    error = letter.error.splitlines()[0] if letter.error else ""
    excerpt = error if len(error) <= _ERROR_EXCERPT else error[: _ERROR_EXCERPT - 3] + "..."
    return (
        f"{letter.id}  {letter.category}  attempts={letter.attempts}  first={_iso(letter.first_failure_ms)}  "
        f"last={_iso(letter.last_failure_ms)}  from={letter.source}  error={excerpt}"
    )


def read_states(profile: BrokerProfile, topology: Topology, agents: Sequence[str]) -> list[DlqState]:
    """Each agent's DLQ read from its first record to its real end, folded."""
    topics = list_topics(profile)
    missing = [_dlq_topic(topology, agent) for agent in agents if _dlq_topic(topology, agent) not in topics]
    if missing:
        raise DlqError(f"dead-letter topic(s) {', '.join(missing)} do not exist; run `kappa-agents topics apply`")
    return [fold(agent, read_log(profile, _dlq_topic(topology, agent), topics[_dlq_topic(topology, agent)])) for agent in agents]


def read_log(profile: BrokerProfile, topic: str, partitions: int) -> list[Incoming]:
    """Every record of ``topic``, partition by partition, up to the real end (not the reported one)."""
    records: list[Incoming] = []

    def keep(message: Message) -> bool:
        records.append(from_confluent(message))
        return False

    # Assigned, never joining a group; EOF events mark each partition's end, a short fetch wait brings them quickly.
    reader = Consumer(profile.consumer_config("kappa-dlq-reader") | {"enable.partition.eof": True, "fetch.wait.max.ms": 10})
    try:
        for partition in range(partitions):
            reader.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
            read_until(reader, (topic, partition), keep)
            reader.unassign()
    finally:
        reader.close()
    return records


def epoch_ms(at: datetime) -> int:
    if at.utcoffset() is None:
        raise DlqError(f"{at.isoformat()} has no timezone; give one, e.g. {at.isoformat()}+00:00")
    return int(at.timestamp() * 1000)


def _agents(topology: Topology, agent: str | None, selection: Selection) -> list[str]:
    """The agent asked for; else the agents the IDs name; else every agent."""
    names = [agent] if agent else sorted({i.agent for i in selection.ids}) or list(topology.agents)
    unknown = [name for name in names if name not in topology.agents]
    if unknown:
        raise DlqError(f"no agent {', '.join(map(repr, unknown))} in {topology.path.name}; agents: {', '.join(topology.agents)}")
    return names


def _refuse_missing_ids(selection: Selection, chosen: Sequence[DeadLetter]) -> None:
    missing = sorted(map(str, selection.ids - {letter.id for letter in chosen}))
    if missing:
        raise DlqError(
            f"no live dead letter {', '.join(missing)} matches: already redriven, purged, of another category or agent, "
            f"or not a dead letter; see `kappa-agents dlq list`"
        )


def _dlq_topic(topology: Topology, agent: str) -> str:
    return topology.topic_name(topology.dead_letter_topic(agent))


def _redrive_topic(topology: Topology, letter: DeadLetter) -> str:
    return topology.topic_name(topology.redrive_topic(letter.id.agent))


def _back_to_agent(topology: Topology, letter: DeadLetter) -> Record:
    record = letter.record
    topic = _redrive_topic(topology, letter)
    return redrive_record(record.key, record.value, record.headers, topic, letter.id.partition, str(letter.id))


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")
