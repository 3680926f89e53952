"""The benchmark's workload, defined once; the work every row does on it is in bench/work.py.

Input: JSON payloads ``{"key", "amount", "seq", "sent_ms"}`` in the runtime's Avro
envelope, keyed by ``key`` (1,000 keys). ``seq`` numbers the inputs 0..n-1, so a
reader can tell loss and duplicates apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer

from streams.broker import BrokerProfile, detect_profile
from streams.envelope import encode, new_event
from streams.settings import Settings, load_settings
from streams.topology import Topology, load_topology
from streams.types import JsonObject

TOPOLOGY = Path(__file__).with_name("topology.yaml")
AGENT = "total"
INPUT_TOPIC = "bench.in"
OUTPUT_TOPIC = "bench.out"
INPUT_TYPE = "bench.amount"
KEYS = 1000
PACE_TICK_S = 0.001
ENCODE_BUDGET_S = 50e-6
"""Per record, for encoding a paced phase before its first send is due (measured: ~16 µs idle); doubled while overrun."""

InputRecord = tuple[bytes, bytes]
"""(key, encoded envelope) as produced onto the input topic."""


def payload(seq: int, sent_ms: int = 0) -> JsonObject:
    """The ``seq``-th input; amounts vary by seq so a lost or doubled event changes a total."""
    return {"key": f"k{seq % KEYS}", "amount": 1 + (seq * 7919) % 100, "seq": seq, "sent_ms": sent_ms}


def expected_totals(count: int) -> dict[str, int]:
    """Each key's total after inputs 0..count-1."""
    totals: dict[str, int] = {}
    for seq in range(count):
        item = payload(seq)
        totals[item["key"]] = totals.get(item["key"], 0) + item["amount"]
    return totals


def input_records(seqs: range, sent_ms: Sequence[int] | None = None) -> list[InputRecord]:
    """Encoded inputs; ``sent_ms`` stays 0 for a backlog, whose latency nobody measures."""
    stamps = [0] * len(seqs) if sent_ms is None else sent_ms
    return [_input_record(payload(seq, ms)) for seq, ms in zip(seqs, stamps, strict=True)]


def _input_record(item: JsonObject) -> InputRecord:
    event = new_event(INPUT_TYPE, item, source="bench", timestamp=item["sent_ms"])
    return item["key"].encode(), encode(event)


def produce_backlog(profile: BrokerProfile, topic: str, records: list[InputRecord]) -> None:
    """Publish all records as fast as the broker takes them; returns once all are acknowledged."""
    producer = Producer({**profile.producer_config(), "linger.ms": 20, "queue.buffering.max.messages": 1_000_000})
    for key, value in records:
        _produce(producer, topic, key, value)
    _flush(producer, topic, len(records))


def produce_paced(profile: BrokerProfile, topic: str, first_seq: int, count: int, rate: float) -> None:
    """Publish ``count`` inputs at ``rate``/s, each stamped with its scheduled send time.

    Latency is measured from the schedule, not from when the record actually left,
    so a producer that falls behind shows up in the latency instead of hiding it.
    """
    producer = _connected(Producer(profile.producer_config()), topic)
    schedule, records = _scheduled(range(first_seq, first_seq + count), rate)
    for due, batch in _due_batches(schedule, records):
        time.sleep(max(0.0, due - time.time()))
        for key, value in batch:
            _produce(producer, topic, key, value)
        producer.poll(0)
    _flush(producer, topic, count)


def _scheduled(seqs: range, rate: float) -> tuple[list[float], list[InputRecord]]:
    """Send times at ``rate``/s and the inputs stamped with them, the first due once all are encoded.

    The stamps are inside the records, so the schedule is fixed before encoding; when
    encoding overruns it (a loaded machine), it is done again with twice the time.
    """
    budget = ENCODE_BUDGET_S
    while True:
        start = time.time() + 0.2 + len(seqs) * budget
        schedule = [start + i / rate for i in range(len(seqs))]
        records = input_records(seqs, [int(at * 1000) for at in schedule])
        if time.time() <= start:
            return schedule, records
        budget *= 2


def _connected(producer: Producer, topic: str) -> Producer:
    """The producer with its connection and the topic's metadata in place, so no send waits for them."""
    producer.list_topics(topic, timeout=10)
    return producer


def _due_batches(schedule: list[float], records: list[InputRecord]) -> Iterator[tuple[float, list[InputRecord]]]:
    """Records grouped per ``PACE_TICK_S``, each group with the time it is due."""
    i = 0
    while i < len(records):
        due = schedule[i]
        j = i
        while j < len(records) and schedule[j] < due + PACE_TICK_S:
            j += 1
        yield due, records[i:j]
        i = j


def _produce(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            return
        except BufferError:
            producer.poll(0.05)  # local queue full: let deliveries drain


def _flush(producer: Producer, topic: str, count: int) -> None:
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} of {count} records to topic '{topic}' were not acknowledged within 60 s")


@dataclass(frozen=True)
class WorkerEnv:
    """What a non-runtime row's worker reads from the ``KAPPA_*`` environment, as the runtime's does."""

    settings: Settings
    topology: Topology
    profile: BrokerProfile

    @classmethod
    def load(cls) -> WorkerEnv:
        settings = load_settings()
        topology = load_topology(TOPOLOGY, namespace=settings.namespace, import_handlers=False)
        return cls(settings, topology, detect_profile(settings))

    def topic(self, logical: str) -> str:
        return self.topology.topic_name(logical)

    @property
    def group(self) -> str:
        return self.topology.group_id(AGENT)

    def datadir(self) -> Path:
        """Where the row keeps its RocksDB state; the parent exists (faust needs that)."""
        self.settings.tables_dir.mkdir(parents=True, exist_ok=True)
        return self.settings.tables_dir / self.group

