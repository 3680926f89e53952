"""Row (a): the floor. A plain confluent-kafka consume → decode → total → produce loop.

One process, one consumer group member, a RocksDB (rocksdict) read and write per
event, at-least-once: offsets are committed only after the producer flushed every
output of what they cover. Unlike the other rows its state has no changelog.
Runs until SIGTERM/SIGINT; configured by the same environment as a runtime worker.
"""

from __future__ import annotations

import signal
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from rocksdict import Rdict

from bench.work import encoded_answer
from bench.workload import INPUT_TOPIC, OUTPUT_TOPIC, WorkerEnv
from streams.envelope import Origin, decode

SOURCE = "bench-raw"
BATCH = 1000
BATCH_WAIT_S = 0.01
"""consume() waits this long for a full batch: short, so a trickle is not held back."""
COMMIT_EVERY_S = 1.0


def main() -> None:
    env = WorkerEnv.load()
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    consumer = Consumer(env.profile.consumer_config(env.group))
    consumer.subscribe([env.topic(INPUT_TOPIC)])
    producer = Producer(env.profile.producer_config())
    totals = Rdict(str(env.datadir()))
    try:
        _loop(consumer, producer, totals, env.topic(OUTPUT_TOPIC), stopping)
    finally:
        _commit(consumer, producer)
        consumer.close()
        totals.close()


def _loop(consumer: Consumer, producer: Producer, totals: Rdict, out: str, stopping: threading.Event) -> None:
    committed = time.monotonic()
    while not stopping.is_set():
        for message in consumer.consume(BATCH, timeout=BATCH_WAIT_S):
            _handle(message, producer, totals, out)
        producer.poll(0)
        if time.monotonic() - committed >= COMMIT_EVERY_S:
            _commit(consumer, producer)
            committed = time.monotonic()


def _handle(message: Message, producer: Producer, totals: Rdict, out: str) -> None:
    if message.error():
        raise KafkaException(message.error())
    origin = Origin(message.topic(), message.partition(), message.offset(), message.timestamp()[1])
    event = decode(message.value(), origin)
    key = event.payload["key"]
    total = totals.get(key, 0) + event.payload["amount"]
    totals[key] = total
    value = encoded_answer(event, total, SOURCE)
    while True:
        try:
            producer.produce(out, value=value, key=message.key())
            return
        except BufferError:
            producer.poll(0.05)  # local queue full: let deliveries drain


def _commit(consumer: Consumer, producer: Producer) -> None:
    """Commit what was consumed, once every output it caused is acknowledged."""
    if producer.flush(30):
        raise RuntimeError("outputs were not acknowledged within 30 s; offsets left uncommitted")
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:  # nothing consumed since the last commit
            raise


if __name__ == "__main__":
    main()
