"""Kafka records as the runtime handles them, before and after the envelope.

``Incoming`` is a record as read (coordinates, raw key/value/headers), whatever
client read it; ``Record`` is one to publish. Decoding and encoding the event
inside is ``streams.envelope``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Message

from streams.envelope import Origin

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Incoming:
    """A record as read from Kafka, before anything is decoded."""

    origin: Origin
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(frozen=True)
class Record:
    """One record to publish: physical topic, key, value and headers."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    partition: int | None = None
    """None lets the partitioner choose by key."""


def from_confluent(message: Message) -> Incoming:
    """A record librdkafka delivered (without error) as an ``Incoming``."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None, "an error message has no record"
    origin = Origin(topic, partition, offset, message.timestamp()[1])
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = [(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs]
    return Incoming(origin, message.key(), message.value(), headers)
