"""Ticks: how a pattern's runtime agent notices time passing when no event arrives.

Deadlines live in the agent's tables (absolute times), never in memory. Every
``tick_s`` the worker posts a ``pattern.tick`` event to each input partition it
owns; the agent handles it like any event, on that partition, and compares the
deadlines it finds with the clock. After a restart or a rebalance the new owner
ticks the same partitions, so no deadline is lost with a process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from streams.broker import BrokerProfile
from streams.envelope import encode, new_event
from streams.producer import AsyncProducer
from streams.records import Record
from streams.topology import AgentSpec, Topology

TICK = "pattern.tick"
TICK_S = 1.0
"""How often a pattern agent with deadlines is ticked: the deadlines' precision."""


def ticker(
    assigned: Callable[[], Iterable[Any]], topology: Topology, spec: AgentSpec, profile: BrokerProfile
) -> Callable[[], Awaitable[None]]:
    """A task for the agent's worker: ticks its first input's partitions it owns, until stopped."""
    assert spec.tick_s is not None, "only agents with tick_s tick"
    interval, topic = spec.tick_s, topology.topic_name(spec.inputs[0])

    async def tick() -> None:
        producer = AsyncProducer(profile.producer_config())
        try:
            while True:
                await asyncio.sleep(interval)
                owned = sorted(tp.partition for tp in assigned() if tp.topic == topic)
                await producer.send([tick_record(topic, partition, spec.name) for partition in owned])
        finally:
            producer.close()

    return tick


def tick_record(topic: str, partition: int, source: str) -> Record:
    event = new_event(TICK, {}, source=source, timestamp=int(time.time() * 1000))
    return Record(topic, None, encode(event), [], partition=partition)
