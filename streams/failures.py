"""Where a failed event goes, and the history it carries there.

A failed event is never dropped and never blocks its partition: it is
re-published, byte for byte, either to one of its agent's retry levels
(``<agent>.retry.N``, delivered again after that level's delay) or to the
agent's dead-letter topic (``<agent>.dlq``). Its history travels in headers:
``retry.*`` while it is retried, ``dlq.*`` once it is dead. ``kappa-agents dlq
redrive`` sends dead letters to ``<agent>.redrive`` with their attempts reset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from streams.records import Headers, Incoming, Record

RETRY = "retry."
DLQ = "dlq."
REDRIVE = "redrive."
_OURS = (RETRY, DLQ, REDRIVE)


@dataclass(frozen=True)
class Failure:
    """Why handling failed: a category from the topology's policies and the error text."""

    category: str
    error: str
    retry_after: float | None = None
    """Seconds the failing service asked us to wait (HTTP Retry-After), when it said."""


@dataclass(frozen=True)
class Delivery:
    """Which delivery of an event this is and where the event first entered.

    A first delivery is its own origin; a retried or redriven one carries the
    original topic/partition/offset and the attempt number in headers.
    """

    topic: str
    partition: int
    offset: int
    attempt: int
    """0 on the first delivery."""
    first_failure_ms: int | None

    @classmethod
    def of(cls, record: Incoming) -> Delivery:
        """This delivery; ``retry.*`` headers that do not parse (another producer wrote them) count as none."""
        retry = fields(record.headers, RETRY)
        if "topic" in retry:
            try:
                first = retry.get("first_failure_ms")
                delivery = cls(retry["topic"], int(retry["partition"]), int(retry["offset"]), int(retry["attempt"]), int(first) if first else None)
            except (KeyError, ValueError):
                return cls.first(record)
            if min(delivery.partition, delivery.offset, delivery.attempt) >= 0:
                return delivery
        return cls.first(record)

    @classmethod
    def first(cls, record: Incoming) -> Delivery:
        """A first delivery: the record is its own origin."""
        o = record.origin
        return cls(o.topic, o.partition, o.offset, 0, None)


def retry_record(record: Incoming, delivery: Delivery, failure: Failure, topic: str, delay_s: float) -> Record:
    """The record that delivers the event again after ``delay_s`` (or the service's retry-after)."""
    now = _now_ms()
    wait_s = max(delay_s, failure.retry_after or 0.0)
    history = {
        "attempt": str(delivery.attempt + 1),
        "due_ms": str(now + int(wait_s * 1000)),
        "first_failure_ms": str(delivery.first_failure_ms or now),
        "category": failure.category,
        "error": failure.error[:2000],
        **_coordinates(delivery),
    }
    return Record(topic, record.key, record.value, [*original_headers(record.headers), *_prefixed(RETRY, history)], delivery.partition)


def dead_letter_record(record: Incoming, delivery: Delivery, failure: Failure, topic: str, agent: str, version: str) -> Record:
    """The dead letter: the original bytes plus everything a person needs to decide."""
    now = _now_ms()
    reason = {
        "category": failure.category,
        "error": failure.error[:4000],
        "agent": agent,
        "agent_version": version,
        "attempts": str(delivery.attempt + 1),
        "first_failure_ms": str(delivery.first_failure_ms or now),
        "last_failure_ms": str(now),
        **_coordinates(delivery),
    }
    return Record(topic, record.key, record.value, [*original_headers(record.headers), *_prefixed(DLQ, reason)], delivery.partition)


def redrive_record(key: bytes | None, value: bytes | None, headers: Headers, topic: str, partition: int, dead_letter_id: str) -> Record:
    """A dead letter sent back to its agent: attempts reset, marked as redriven."""
    dead = fields(headers, DLQ)
    retry = {"attempt": "0", "due_ms": "0", "topic": dead["topic"], "partition": dead["partition"], "offset": dead["offset"]}
    marks = {"at_ms": str(_now_ms()), "from": dead_letter_id, "category": dead.get("category", "")}
    return Record(topic, key, value, [*original_headers(headers), *_prefixed(RETRY, retry), *_prefixed(REDRIVE, marks)], partition)


def due_ms(headers: Headers) -> int:
    """When a retried event may be handled again (0: now)."""
    return int(fields(headers, RETRY).get("due_ms", "0"))


def fields(headers: Headers, prefix: str) -> dict[str, str]:
    """The headers under one prefix (``retry.``, ``dlq.``, ``redrive.``), without it."""
    n = len(prefix)
    return {k[n:]: (v or b"").decode("utf-8", "replace") for k, v in headers if k.startswith(prefix)}


def original_headers(headers: Headers) -> Headers:
    """The headers the event had before any failure handling touched it."""
    return [(k, v) for k, v in headers if not k.startswith(_OURS)]


def _coordinates(delivery: Delivery) -> dict[str, str]:
    return {"topic": delivery.topic, "partition": str(delivery.partition), "offset": str(delivery.offset)}


def _prefixed(prefix: str, values: dict[str, str]) -> Headers:
    return [(prefix + k, v.encode()) for k, v in values.items()]


def _now_ms() -> int:
    return int(time.time() * 1000)
