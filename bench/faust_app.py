"""Row (c): the same work written as the faust documentation writes it.

``async for`` over the stream, a RocksDB table, ``await topic.send`` per event;
only the broker profile's settings (the embedded broker's workarounds) are added.
Run as ``python -m bench.faust_app worker``; configured like a runtime worker.
"""

from __future__ import annotations

from typing import Any


from bench.work import encoded_answer
from bench.workload import INPUT_TOPIC, OUTPUT_TOPIC, WorkerEnv
from streams.envelope import Origin, decode

SOURCE = "bench-faust"

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


@app.agent(source)
async def total(stream: Any) -> None:
    async for event in stream.events():
        message = event.message
        cause = decode(event.value, Origin(message.topic, message.partition, message.offset, int(message.timestamp * 1000)))
        key = cause.payload["key"]
        running = totals[key] + cause.payload["amount"]
        totals[key] = running
        await sink.send(key=message.key, value=encoded_answer(cause, running, SOURCE))


if __name__ == "__main__":
    app.main()
