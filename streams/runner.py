"""One agent handling one record: decode, call the handler, publish or dead-letter.

``process`` returns only when the record's consequences are durable (its
outputs or its dead letter acknowledged by the broker); only then may the
record's offset be acked. It never raises for anything a record or a handler
can cause; what it raises is a broker failure, and the record stays unacked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from streams.catalog import EventCatalog
from streams.context import AgentContext, run_handler
from streams.deadletter import DeadLetter, Reason
from streams.envelope import Event, decode, encode
from streams.errors import EmitError, EnvelopeError
from streams.producer import AsyncProducer
from streams.records import Incoming, Record
from streams.topology import AgentSpec, Topology
from streams.tracing import consuming, current_trace_headers
from streams.types import Emit, Handler, Model

log = logging.getLogger(__name__)


class AgentRunner:
    """Runs one topology agent's handler over records of its input topics."""

    def __init__(
        self,
        topology: Topology,
        spec: AgentSpec,
        handler: Handler,
        model: Model,
        tables: Mapping[str, MutableMapping[str, Any]],
        producer: AsyncProducer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._topology = topology
        self._spec = spec
        self._handler = handler
        self._model = model
        self._tables = tables
        self._producer = producer
        self._clock = clock
        self._catalog = EventCatalog(topology)
        self._logical = {topology.topic_name(name): name for name in spec.inputs}

    async def process(self, record: Incoming) -> None:
        logical = self._logical[record.origin.topic]
        with consuming(self._spec.name, logical, record.headers):
            try:
                event = self._decode(logical, record)
            except EnvelopeError as exc:
                await self._dead_letter(logical, record, Reason.POISON, str(exc))
                return
            await self._handle(logical, record, event)

    def _decode(self, logical: str, record: Incoming) -> Event:
        event = decode(record.value, record.origin)
        problem = self._catalog.problem(logical, event.type, event.payload)
        if problem is not None:
            raise EnvelopeError(problem)
        return event

    async def _handle(self, logical: str, record: Incoming, event: Event) -> None:
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        ctx = AgentContext(self._spec, key, self._model, self._tables, self._catalog)
        try:
            outputs = await run_handler(self._handler, event, ctx)
        except EmitError as exc:
            await self._dead_letter(logical, record, Reason.INVALID_OUTPUT, str(exc))
            return
        except Exception as exc:  # a handler's own failure is data, not a crash
            log.exception("agent %s failed on %s", self._spec.name, _where(record))
            await self._dead_letter(logical, record, Reason.HANDLER_ERROR, f"{type(exc).__name__}: {exc}")
            return
        await self._producer.send([self._output(event, emit, i, record.key) for i, emit in enumerate(outputs)])

    def _output(self, cause: Event, emit: Emit, index: int, key: bytes | None) -> Record:
        event = cause.caused(emit.type, emit.payload, source=self._spec.name, index=index, timestamp=self._now_ms())
        out_key = emit.key.encode() if emit.key is not None else key
        return Record(self._topology.topic_name(emit.topic), out_key, encode(event), current_trace_headers())

    async def _dead_letter(self, logical: str, record: Incoming, reason: Reason, error: str) -> None:
        log.warning("agent %s dead-letters %s as %s: %s", self._spec.name, _where(record), reason.value, error)
        origin = record.origin
        letter = DeadLetter(reason, error, self._spec.name, origin.topic, origin.partition, origin.offset)
        dlq = self._topology.topic_name(self._topology.dead_letter_topic(logical))
        await self._producer.send([letter.record(dlq, record.key, record.value, record.headers)])

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _where(record: Incoming) -> str:
    o = record.origin
    return f"topic '{o.topic}' partition {o.partition} offset {o.offset}"
