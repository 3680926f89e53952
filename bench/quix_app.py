"""Row (d): the same work as a quixstreams application, written as its documentation writes it.

A StreamingDataFrame over the input topic, the running total in quixstreams' RocksDB
state (with its changelog topic), one output per input via ``to_topic``; quixstreams'
defaults otherwise (at-least-once, 5 s commit interval).

quixstreams pins an older confluent-kafka than the project's, so this runs in a venv
of its own (bench/.venv-quix, built by ``make bench`` from bench/quix-requirements.txt)
and imports nothing that needs the project's client: the topic names and the broker
profile's client settings (the embedded broker's workarounds) come from the
environment bench/measure.py sets. Runs until SIGTERM/SIGINT (quixstreams stops cleanly).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from quixstreams import Application, State, message_context

from bench.work import encoded_answer
from streams.envelope import Origin, decode

SOURCE = "bench-quix"


def main() -> None:
    consumer = json.loads(os.environ["BENCH_CONSUMER_CONFIG"])
    app = Application(
        broker_address=consumer["bootstrap.servers"],
        consumer_group=consumer["group.id"],
        auto_offset_reset="earliest",
        # quixstreams sets group, commits and offset reset itself; the rest is the broker profile's
        # (on the embedded broker: a short session timeout, since Tansu holds a join for half of it).
        consumer_extra_config=consumer,
        producer_extra_config=json.loads(os.environ["BENCH_PRODUCER_CONFIG"]),
        state_dir=Path(os.environ["KAPPA_STATE_DIR"]) / "quix",
        loglevel="WARNING",
    )
    source = app.topic(os.environ["BENCH_INPUT_TOPIC"], key_deserializer="bytes", value_deserializer="bytes")
    sink = app.topic(os.environ["BENCH_OUTPUT_TOPIC"], key_serializer="bytes", value_serializer="bytes")
    totals = app.dataframe(source).apply(_total, stateful=True, metadata=True)
    # quixstreams gives an output its input's timestamp; the bench reads throughput off the
    # outputs' timestamps, so they carry when they were made, as in the other rows.
    totals.set_timestamp(_now_ms).to_topic(sink)
    app.run()


def _total(value: bytes, key: bytes, timestamp_ms: int, headers: object, state: State) -> bytes:
    """quixstreams scopes ``state`` to the message key, which is the payload's key."""
    context = message_context()
    cause = decode(value, Origin(context.topic, context.partition, context.offset, timestamp_ms))
    running = state.get("total", 0) + cause.payload["amount"]
    state.set("total", running)
    return encoded_answer(cause, running, SOURCE)


def _now_ms(value: bytes, key: bytes, timestamp_ms: int, headers: object) -> int:
    return int(time.time() * 1000)


if __name__ == "__main__":
    main()
