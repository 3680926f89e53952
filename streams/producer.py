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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streams.errors import BrokerError
from streams.records import Record

if TYPE_CHECKING:
    from streams.broker import BrokerProfile

_UNASSIGNED = -1
"""librdkafka's RD_KAFKA_PARTITION_UA: let the partitioner choose by key."""
QUEUE_FULL_WAIT_S = 0.01


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
        """Publish records in order; returns once the broker acknowledged all of them.

        Raises BrokerError for the first record the broker refused.
        """
        if not records:
            return
        loop = asyncio.get_running_loop()
        batch = _Batch(loop, len(records), self.ends)
        for record in records:
            while not self._produce(record, batch.delivered):
                await asyncio.sleep(QUEUE_FULL_WAIT_S)  # local queue full: the poll thread drains deliveries
        await batch.future

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, then stop the polling thread."""
        remaining = self._producer.flush(timeout)
        self._stopping.set()
        self._poller.join(timeout=2)
        if remaining:
            raise BrokerError(f"{remaining} record(s) were not delivered within {timeout:.0f} s")

    def _produce(self, record: Record, on_delivery: Callable[[KafkaError | None, Message], None]) -> bool:
        """False when librdkafka's local queue is full."""
        try:
            self._producer.produce(
                record.topic,
                value=record.value,
                key=record.key,
                headers=list(record.headers) if record.headers else None,
                partition=_UNASSIGNED if record.partition is None else record.partition,
                on_delivery=on_delivery,
            )
        except BufferError:
            return False
        except KafkaException as exc:
            raise BrokerError(f"cannot produce to topic '{record.topic}': {exc}") from exc
        return True

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)


class _Batch:
    """The deliveries of one ``send``: counted on the poll thread, the waiting loop woken once.

    One future and one cross-thread wake-up per send rather than per record:
    the action log makes every handled event several records.
    """

    __slots__ = ("_loop", "_remaining", "_ends", "_lock", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int, ends: dict[tuple[str, int], int]) -> None:
        self._loop = loop
        self._remaining = count
        self._ends = ends
        self._lock = threading.Lock()
        """librdkafka runs callbacks in whichever thread polls: the poll thread, or ``close``'s flush."""
        self.future: asyncio.Future[None] = loop.create_future()

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            self._remaining -= 1
            last = not self._remaining
        if err is not None:  # the first failure settles the send; later ones find it settled
            self._loop.call_soon_threadsafe(_settle, self.future, BrokerError(f"delivery to topic '{msg.topic()}' failed: {err.str()}"))
            return
        self._acknowledged(msg)
        if last:
            self._loop.call_soon_threadsafe(_settle, self.future, None)

    def _acknowledged(self, msg: Message) -> None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is not None and partition is not None and offset is not None:
            self._ends[topic, partition] = max(self._ends.get((topic, partition), 0), offset + 1)


def _settle(future: asyncio.Future[None], error: BrokerError | None) -> None:
    if future.done():  # settled by an earlier failure, or the sender was cancelled
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def publish(profile: BrokerProfile, records: Sequence[Record]) -> None:
    """Publish records from synchronous code (the CLI, tools); returns once all are acknowledged."""

    async def send() -> None:
        producer = AsyncProducer(profile.producer_config())
        try:
            await producer.send(records)
        finally:
            producer.close()

    asyncio.run(send())
