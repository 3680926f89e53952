"""Intake against a real (unstarted) faust consumer: which records reach the dispatcher, and what faust is told."""

from __future__ import annotations

import asyncio

import faust
from faust.types import TP
from faust.types.tuples import Message

from streams.intake import Intake

TOPIC = TP("in", 0)


def _delivered(app: faust.App, offset: int) -> faust.Event:
    """A record as faust's conductor hands it to a stream: tracked as in progress until acked."""
    message = Message(TOPIC.topic, TOPIC.partition, offset, 0.0, 0, None, b"k", b"v", None)
    app.consumer.track_message(message)
    return faust.Event(app, b"k", b"v", None, message)


def test_a_copy_delivered_twice_is_admitted_once_and_the_dropped_copy_does_not_hold_up_shutdown() -> None:
    app = faust.App("intake-test", broker="kafka://127.0.0.1:1")
    consumer = app.consumer
    consumer._committed_offset[TOPIC] = 5
    app.topics._acking_topics.add(TOPIC.topic)  # as when an agent subscribes to it
    first, second, copy = (_delivered(app, offset) for offset in (5, 6, 5))

    admitted = asyncio.run(Intake(app).admit([first, second, copy]))

    assert admitted == [first, second]
    # faust's shutdown waits for the admitted records only (not for the copy, whose offset stays unrecorded)
    assert sorted(m.offset for m in consumer._unacked_messages) == [5, 6]
    assert not consumer._acked[TOPIC]
    consumer.ack(first.message)
    assert consumer._acked[TOPIC] == [5]
