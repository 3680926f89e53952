"""One agent handling one record: decode, call the handler, publish, or route the failure.

``process`` returns only when the record's consequences are durable (its
outputs, its retry or its dead letter acknowledged by the broker); only then
may the record's offset be acked. It never raises for anything a record or a
handler can cause; what it raises is a broker failure, and the record stays
unacked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import replace
from typing import Any

from streams.catalog import EventCatalog
from streams.context import AgentContext, run_handler
from streams.effects import EffectScope, SideEffects
from streams.envelope import Event, decode, encode
from streams.errors import CircularDelegation, EnvelopeError
from streams.failures import Delivery, Failure, dead_letter_record, retry_record
from streams.lag import LagGate
from streams.producer import AsyncProducer
from streams.records import Incoming, Record
from streams.topology import AgentSpec, Topology
from streams.tracing import consuming, current_trace_headers
from streams.triage import classify
from streams.types import Emit, Handler, Model

log = logging.getLogger(__name__)


class AgentRunner:
    """Runs one topology agent's handler over records of its inputs, retries and redrives."""

    def __init__(
        self,
        topology: Topology,
        spec: AgentSpec,
        handler: Handler,
        model: Model,
        tables: Mapping[str, MutableMapping[str, Any]],
        producer: AsyncProducer,
        effects: SideEffects,
        clock: Callable[[], float] = time.time,
        gate: LagGate | None = None,
    ) -> None:
        self._topology = topology
        self._spec = spec
        self._handler = handler
        self._model = model
        self._tables = tables
        self._producer = producer
        self._effects = effects
        self._clock = clock
        self._gate = gate
        """Outputs wait while a consumer of their topic lags too far (``flow.max_lag``)."""
        self._catalog = EventCatalog(topology)
        self._logical = {topology.topic_name(name): name for name in spec.inputs}

    async def process(self, record: Incoming) -> None:
        delivery = Delivery.of(record)
        logical = self._logical[delivery.topic]
        with consuming(self._spec.name, logical, record.headers):
            try:
                event = self._decode(logical, record, delivery)
                async with asyncio.timeout(self._spec.timeout_s):  # no task per event, unlike wait_for
                    outputs = await self._handle(event, record.key, delivery)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is data: routed by category, never a crash
                await self._fail(record, delivery, classify(exc))
                return
            if self._gate is not None:
                await self._gate.wait(output.topic for output in outputs)
            await self._producer.send(outputs)

    def _decode(self, logical: str, record: Incoming, delivery: Delivery) -> Event:
        event = decode(record.value, record.origin)
        problem = self._catalog.problem(logical, event.type, event.payload)
        if problem is not None:
            raise EnvelopeError(problem)
        self._check_chain(event)
        return replace(event, attempt=delivery.attempt)

    def _check_chain(self, event: Event) -> None:
        """An event whose chain already passed through this agent, or too many agents, is circular."""
        hops = self._topology.failures.max_hops
        if self._spec.name in event.lineage or len(event.lineage) >= hops:
            chain = " -> ".join([*event.lineage, self._spec.name])
            raise CircularDelegation(f"delegation chain {chain} revisits an agent or exceeds max_hops {hops}")

    async def _handle(self, event: Event, key: bytes | None, delivery: Delivery) -> list[Record]:
        text_key = key.decode("utf-8", "replace") if key is not None else None
        scope = EffectScope(self._effects, delivery, event.task_id)
        ctx = AgentContext(self._spec, text_key, self._model, self._tables, self._catalog, scope)
        outputs = await run_handler(self._handler, event, ctx)
        return [self._output(event, emit, i, key) for i, emit in enumerate(outputs)]

    def _output(self, cause: Event, emit: Emit, index: int, key: bytes | None) -> Record:
        event = cause.caused(emit.type, emit.payload, source=self._spec.name, index=index, timestamp=self._now_ms())
        out_key = emit.key.encode() if emit.key is not None else key
        return Record(self._topology.topic_name(emit.topic), out_key, encode(event), current_trace_headers())

    async def _fail(self, record: Incoming, delivery: Delivery, failure: Failure) -> None:
        agent, topology = self._spec.name, self._topology
        level = topology.failures.retry_level(failure.category, delivery.attempt)
        where = f"topic '{delivery.topic}' partition {delivery.partition} offset {delivery.offset} (attempt {delivery.attempt})"
        if level is None:
            log.warning("agent %s dead-letters %s as %s: %s", agent, where, failure.category, failure.error)
            dlq = topology.topic_name(topology.dead_letter_topic(agent))
            out = dead_letter_record(record, delivery, failure, dlq, agent, self._spec.version)
        else:
            log.info("agent %s retries %s at level %d (%s): %s", agent, where, level, failure.category, failure.error)
            topic = topology.topic_name(topology.retry_topic(agent, level))
            out = retry_record(record, delivery, failure, topic, topology.failures.retry_delays_s[level - 1])
        await self._producer.send([out])

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
