"""The work every row does per input: add ``amount`` to the key's running total, answer once.

The answer is one envelope ``{"key", "total", "seq", "sent_ms"}``. This module imports no
Kafka client, so the quixstreams row (bench/quix_app.py), whose venv holds an older
confluent-kafka than the project's, does the same work with the same code.
"""

from __future__ import annotations

import time

from streams.envelope import Event, encode
from streams.types import JsonObject

OUTPUT_TYPE = "bench.total"


def answer(cause: JsonObject, total: int) -> JsonObject:
    """The output payload for one input, given the key's total including it."""
    return {"key": cause["key"], "total": total, "seq": cause["seq"], "sent_ms": cause["sent_ms"]}


def encoded_answer(cause: Event, total: int, source: str) -> bytes:
    """The output envelope as the runtime would write it (for the rows that are not the runtime)."""
    now_ms = int(time.time() * 1000)
    return encode(cause.caused(OUTPUT_TYPE, answer(cause.payload, total), source=source, index=0, timestamp=now_ms))
