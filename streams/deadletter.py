"""Dead letters: the original record, byte for byte, plus why it failed.

A record the runtime cannot handle is never dropped and never crashes the
worker: it goes to ``<topic>.dlq`` with its reason in headers, and its offset
is acked only after the dead letter is durable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

from streams.records import Headers, Record

HEADER_PREFIX = "dlq."


class Reason(str, Enum):
    """Why a record was dead-lettered."""

    POISON = "poison"
    """The bytes are not a valid event (bad Avro/JSON, missing field, unknown type)."""
    HANDLER_ERROR = "handler_error"
    """The agent's handler raised."""
    INVALID_OUTPUT = "invalid_output"
    """The handler tried to publish something its topology or schema forbids."""


@dataclass(frozen=True)
class DeadLetter:
    """Where a failed record came from and why it failed."""

    reason: Reason
    error: str
    agent: str
    topic: str
    partition: int
    offset: int

    def headers(self) -> Headers:
        fields = {
            "reason": self.reason.value,
            "error": self.error[:4000],
            "agent": self.agent,
            "topic": self.topic,
            "partition": str(self.partition),
            "offset": str(self.offset),
            "failed_at": str(int(time.time() * 1000)),
        }
        return [(HEADER_PREFIX + name, value.encode()) for name, value in fields.items()]

    def record(self, dlq_topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> Record:
        """The dead-letter record: original key, value and headers, plus ours."""
        return Record(dlq_topic, key, value, [*headers, *self.headers()])


def read_dead_letter_headers(headers: Headers) -> dict[str, str]:
    """The ``dlq.*`` headers of a dead-letter record, without the prefix."""
    n = len(HEADER_PREFIX)
    return {k[n:]: v.decode() for k, v in headers if k.startswith(HEADER_PREFIX) and v is not None}
