"""Events in and out at the edge, for people: ``kappa-agents send`` and ``tail``.

People write JSON; the system stores Avro. ``send`` wraps each JSON payload in
a new envelope (a new task, a fresh trace) and validates it against the
topology before anything reaches the broker. ``tail`` decodes what is on a
topic, dead letters included, into one JSON line per record.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from streams.actions import default_codec
from streams.broker import BrokerProfile
from streams.catalog import EventCatalog
from streams.failures import DLQ, RETRY, fields
from streams.envelope import Event, Origin, decode, encode, encode_json, json_object, new_event
from streams.errors import BrokerError, EnvelopeError
from streams.lag import LagGate, consumer_groups
from streams.producer import AsyncProducer, publish
from streams.records import Incoming, Record, from_confluent
from streams.topology import Topology
from streams.tracing import new_trace_headers
from streams.types import JsonObject


SEND_CHUNK = 100
"""Events ``send`` publishes between two looks at the consumers' lag."""
READ_FETCH_WAIT_MS = 10
"""How long ``read_to_end``'s fetches may wait for records. The embedded broker holds a
fetch for half its wait even when the partition end is already reached, so librdkafka's
500 ms made reading an empty topic take 0.6-1.2 s (a worker's start reads one)."""
READ_POLL_S = 0.02
"""``read_to_end``'s consume() timeout: consume waits this long unless 1,000 records came."""


@dataclass(frozen=True)
class Outgoing:
    """One event a person sends, with the key that picks its partition."""

    event: Event
    key: str | None


def build_outgoing(
    topology: Topology, topic: str, text: str, *, event_type: str | None, key_field: str | None, key: str | None
) -> Outgoing:
    """JSON text → an envelope for ``topic``; raises EnvelopeError naming what is wrong.

    The text is either a payload object, or ``{"type": ..., "payload": {...}}``.
    The type defaults to the topic's only declared event type.
    """
    if topic not in topology.topics:
        raise EnvelopeError(f"topic '{topic}' is not declared in {topology.path.name}; declared: {', '.join(topology.topics)}")
    data = json_object(text, "the event to send")
    payload: JsonObject = data["payload"] if "payload" in data and "type" in data else data
    chosen = data.get("type") if payload is not data else event_type
    chosen = chosen or _only_type(topology, topic)
    problem = EventCatalog(topology).problem(topic, chosen, payload)
    if problem is not None:
        raise EnvelopeError(problem)
    event = new_event(chosen, payload, source="cli", timestamp=int(time.time() * 1000))
    return Outgoing(event, key if key is not None else _key_from(payload, key_field))


def send(
    profile: BrokerProfile,
    topology: Topology,
    topic: str,
    items: Sequence[Outgoing],
    *,
    as_json: bool = False,
    max_lag: int | None = None,
) -> None:
    """Publish events and wait until the broker acknowledged every one.

    With ``max_lag``, events go in chunks, each once no agent reading the topic
    lags more than ``max_lag`` records behind what this call sent.
    """
    physical = topology.topic_name(topic)
    records = [
        Record(physical, _bytes(item.key), encode_json(item.event) if as_json else encode(item.event), new_trace_headers())
        for item in items
    ]
    if max_lag is None:
        publish(profile, records)
    else:
        asyncio.run(_publish_paced(profile, topology, topic, records, max_lag))


async def _publish_paced(profile: BrokerProfile, topology: Topology, topic: str, records: Sequence[Record], max_lag: int) -> None:
    """``records`` in chunks, each once no agent reading ``topic`` lags more than ``max_lag``."""
    producer = AsyncProducer(profile.producer_config())
    try:
        gate = LagGate(profile, consumer_groups(topology, [topic]), producer.ends, max_lag)
        for start in range(0, len(records), SEND_CHUNK):
            await gate.wait([topology.topic_name(topic)])
            await producer.send(records[start : start + SEND_CHUNK])
    finally:
        producer.close()


def tail(profile: BrokerProfile, physical_topic: str, *, idle_s: float = 2.0, limit: int | None = None) -> Iterator[JsonObject]:
    """Every record of a topic from the beginning, decoded; stops once idle for ``idle_s``."""
    consumer = Consumer({**profile.consumer_config(f"kappa-tail-{uuid.uuid4().hex[:8]}"), "enable.partition.eof": False})
    try:
        consumer.assign(_all_partitions(consumer, physical_topic))
        yield from _read(consumer, idle_s, limit)
    finally:
        consumer.close()


def _read(consumer: Consumer, idle_s: float, limit: int | None) -> Iterator[JsonObject]:
    seen, last = 0, time.monotonic()
    while limit is None or seen < limit:
        message = consumer.poll(0.2)
        if message is None:
            if time.monotonic() - last > idle_s:
                return
            continue
        if message.error():
            raise BrokerError(f"reading '{message.topic()}': {message.error()}")
        seen, last = seen + 1, time.monotonic()
        yield describe(from_confluent(message))


def read_to_end(profile: BrokerProfile, physical_topic: str, only: int | None = None) -> list[Incoming]:
    """Every record of a topic (or of its partition ``only``), read to the real ends (not the reported ones)."""
    config = {
        **profile.consumer_config(f"kappa-reader-{uuid.uuid4().hex[:8]}"),
        "enable.partition.eof": True,
        "fetch.wait.max.ms": READ_FETCH_WAIT_MS,
    }
    consumer = Consumer(config)
    try:
        partitions = [tp for tp in _all_partitions(consumer, physical_topic) if only in (None, tp.partition)]
        consumer.assign(partitions)
        return _until_eof(consumer, {tp.partition for tp in partitions})
    finally:
        consumer.close()


def _until_eof(consumer: Consumer, partitions: set[int]) -> list[Incoming]:
    records: list[Incoming] = []
    while partitions:
        for message in consumer.consume(1000, timeout=READ_POLL_S):
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                partitions.discard(message.partition())
            elif error is not None:
                raise BrokerError(f"reading '{message.topic()}': {error}")
            else:
                records.append(from_confluent(message))
    return records


def describe(record: Incoming) -> JsonObject:
    """A record as a person wants to read it: coordinates, key, decoded event or why not."""
    origin, key, headers = record.origin, record.key, record.headers
    line: JsonObject = {
        "topic": origin.topic,
        "partition": origin.partition,
        "offset": origin.offset,
        "timestamp": origin.timestamp,
        "key": key.decode("utf-8", "replace") if key else None,
    }
    trace = dict(headers).get("traceparent")
    if trace is not None:
        line["traceparent"] = trace.decode("latin-1")
    for name, prefix in (("dead_letter", DLQ), ("retry", RETRY)):
        if history := fields(headers, prefix):
            line[name] = history
    return line | _contents(record.value, origin)


def _contents(value: bytes | None, origin: Origin) -> JsonObject:
    """The event a record holds, or its action log entry (``agents.actions``), or why it holds neither."""
    try:
        return {"event": asdict(decode(value, origin))}
    except EnvelopeError as exc:
        error = str(exc)
    try:
        return {"action": default_codec().decode(value).as_json()}
    except EnvelopeError:
        return {"undecodable": {"error": error, "value_base64": base64.b64encode(value or b"").decode()}}


def _all_partitions(consumer: Consumer, topic: str) -> list[TopicPartition]:
    try:
        metadata = consumer.list_topics(topic, timeout=10)
    except KafkaException as exc:
        raise BrokerError(f"cannot read metadata of topic '{topic}': {exc}") from exc
    partitions = metadata.topics[topic].partitions if topic in metadata.topics else {}
    if not partitions:
        raise BrokerError(f"topic '{topic}' does not exist; run `kappa-agents topics apply`")
    return [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)]


def _only_type(topology: Topology, topic: str) -> str:
    declared = topology.topics[topic].events
    if len(declared) != 1:
        raise EnvelopeError(f"topic '{topic}' carries {len(declared)} event types; choose one with --type")
    return declared[0]


def _key_from(payload: JsonObject, key_field: str | None) -> str | None:
    if key_field is None:
        return None
    if key_field not in payload:
        raise EnvelopeError(f"--key-field '{key_field}' is not in the payload (fields: {', '.join(payload)})")
    return str(payload[key_field])


def _bytes(key: str | None) -> bytes | None:
    return key.encode() if key is not None else None


