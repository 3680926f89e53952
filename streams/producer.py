"""An asyncio face on librdkafka's producer, for everything the agents publish.

Outputs and dead letters go through librdkafka rather than faust's producer:
it batches on its own thread (faust's aiokafka producer runs on the event loop
the handlers need), and ``send`` resolves only once the
broker acknowledged the record, which is what lets the runtime ack an input
event after, and only after, everything it caused is durable.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streams.errors import BrokerError
from streams.records import Record

if TYPE_CHECKING:
    from streams.broker import BrokerProfile

_UNASSIGNED = -1
"""librdkafka's RD_KAFKA_PARTITION_UA: let the partitioner choose by key."""


class AsyncProducer:
    """librdkafka producer whose deliveries are awaitable from asyncio."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer(config)
        self.ends: dict[tuple[str, int], int] = {}
        """Per (topic, partition): the offset after the last record this producer had acknowledged."""
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kappa-producer-poll", daemon=True)
        self._poller.start()

    async def send(self, records: Sequence[Record]) -> None:
        """Publish records in order; returns once the broker acknowledged all of them."""
        loop = asyncio.get_running_loop()
        futures = [self._produce(loop, record) for record in records]
        await asyncio.gather(*futures)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, then stop the polling thread."""
        remaining = self._producer.flush(timeout)
        self._stopping.set()
        self._poller.join(timeout=2)
        if remaining:
            raise BrokerError(f"{remaining} record(s) were not delivered within {timeout:.0f} s")

    def _produce(self, loop: asyncio.AbstractEventLoop, record: Record) -> asyncio.Future[None]:
        future: asyncio.Future[None] = loop.create_future()

        def delivered(err: KafkaError | None, msg: Message) -> None:
            partition, offset = msg.partition(), msg.offset()
            if err is None and partition is not None and offset is not None:
                where = (record.topic, partition)
                self.ends[where] = max(self.ends.get(where, 0), offset + 1)
            loop.call_soon_threadsafe(_settle, future, err, record.topic)

        while True:
            try:
                self._producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers),
                    partition=_UNASSIGNED if record.partition is None else record.partition,
                    on_delivery=delivered,
                )
                return future
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain
            except KafkaException as exc:
                raise BrokerError(f"cannot produce to topic '{record.topic}': {exc}") from exc

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)


def _settle(future: asyncio.Future[None], err: KafkaError | None, topic: str) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(BrokerError(f"delivery to topic '{topic}' failed: {err.str()}"))


def publish(profile: BrokerProfile, records: Sequence[Record]) -> None:
    """Publish records from synchronous code (the CLI, tools); returns once all are acknowledged."""

    async def send() -> None:
        producer = AsyncProducer(profile.producer_config())
        try:
            await producer.send(records)
        finally:
            producer.close()

    asyncio.run(send())
