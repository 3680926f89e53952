"""Rows (c) and (c2): the same work written with plain faust, as its documentation writes it.

(c) ``async for`` over the stream, a RocksDB table, ``await topic.send`` per event.
(c2) faust's floor: the same table work over ``take()`` batches, each batch's answers sent
at once through the runtime's librdkafka producer and acked once delivered. What is left is
faust's own per-record stream and table cost, which any faust agent pays before its own work.
Only the broker profile's settings (the embedded broker's workarounds) are added.
Run as ``python -m bench.faust_app worker`` or ``python -m bench.faust_app batched worker``; configured like a runtime worker.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from typing import Any

from faust.streams import _current_event

from bench.work import encoded_answer
from bench.workload import INPUT_TOPIC, OUTPUT_TOPIC, WorkerEnv
from streams.envelope import Origin, decode
from streams.producer import AsyncProducer
from streams.records import Record
from streams.worker import run_faust_worker

SOURCE = "bench-faust"
BATCH = 500
BATCH_WITHIN_S = 0.02
BATCHES_IN_FLIGHT = 8
"""Batches whose answers await the broker's acknowledgement while the next ones are handled."""

env = WorkerEnv.load()
partitions = env.topology.topics[INPUT_TOPIC].partitions
app = env.profile.faust_app(
    env.group,
    store="rocksdb://",
    datadir=str(env.datadir()),
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    autodiscover=False,
)
source = app.topic(env.topic(INPUT_TOPIC), key_serializer="raw", value_serializer="raw")
sink = app.topic(env.topic(OUTPUT_TOPIC), key_serializer="raw", value_serializer="raw")
totals = app.Table("totals", default=int, partitions=partitions)


def answer(event: Any) -> bytes:
    """The event's answer, its key's total updated in the table."""
    message = event.message
    cause = decode(event.value, Origin(message.topic, message.partition, message.offset, int(message.timestamp * 1000)))
    key = cause.payload["key"]
    running = totals[key] + cause.payload["amount"]
    totals[key] = running
    return encoded_answer(cause, running, SOURCE)


async def one_by_one(stream: Any) -> None:
    async for event in stream.events():
        await sink.send(key=event.message.key, value=answer(event))


async def batched(stream: Any) -> None:
    producer = AsyncProducer(env.profile.producer_config())
    in_flight = asyncio.Semaphore(BATCHES_IN_FLIGHT)

    async def ack_once_sent(batch: list[Any], answers: list[Record]) -> None:
        try:
            await producer.send(answers)
            for event in batch:
                await stream.ack(event)
        finally:
            in_flight.release()

    sending: set[asyncio.Task[None]] = set()
    async for batch in stream.noack_take(BATCH, within=BATCH_WITHIN_S):
        for sent in [task for task in sending if task.done()]:
            sending.discard(sent)
            sent.result()  # a failed send stops the row
        answers = []
        for event in batch:
            _current_event.set(weakref.ref(event))  # so the table writes to this event's changelog partition
            answers.append(Record(env.topic(OUTPUT_TOPIC), event.message.key, answer(event), []))
        await in_flight.acquire()
        sending.add(asyncio.create_task(ack_once_sent(batch, answers)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["batched"]:  # on the runtime's event loop (uvloop), as a floor for it
        app.agent(source)(batched)
        run_faust_worker(app, sys.argv[3:])
    app.agent(source)(one_by_one)
    app.main()
