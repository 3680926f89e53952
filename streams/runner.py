"""One agent handling one record: decode, call the handler, publish, or route the failure.

``process`` handles a record and returns its publishing (a ``Finish`` for the
dispatcher, awaited without holding a handler slot). Once that returns, the
record's consequences are durable (its outputs, its retry or its dead letter
acknowledged by the broker); only then may the record's offset be acked.
Neither raises for anything a record or a handler can cause; what the
publishing raises is a broker failure, and the record stays unacked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import replace
from typing import Any

from streams.actions import ActionLog, HandlerActions, RecordedEffectScope, RecordingModel
from streams.catalog import EventCatalog
from streams.context import AgentContext, run_handler
from streams.dispatch import Finish
from streams.effects import SideEffects
from streams.envelope import Event, decode, encode
from streams.errors import CircularDelegation, EnvelopeError
from streams.failures import Delivery, Failure, dead_letter_record, retry_record
from streams.human import ANSWER_TYPE, TIMEOUT_TYPE, Conversation, InputRequired, Parked, Parking, answer_problem
from streams.lag import LagGate
from streams.producer import AsyncProducer
from streams.records import Headers, Incoming, Record
from streams.topology import AgentSpec, Topology
from streams.tracing import consuming
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
        parking: Parking,
        clock: Callable[[], float] = time.time,
        reads: Topology | None = None,
        gate: LagGate | None = None,
    ) -> None:
        """``reads``: the topology whose input topics records come from, when not ``topology`` (a sandbox reads production's)."""
        self._topology = topology
        self._spec = spec
        self._handler = handler
        self._model = model
        self._tables = tables
        self._producer = producer
        self._effects = effects
        self._parking = parking
        self._clock = clock
        self._gate = gate
        """Outputs wait while a consumer of their topic lags too far (``flow.max_lag``)."""
        self._catalog = EventCatalog(topology)
        self._logical = {(reads or topology).topic_name(name): name for name in spec.inputs}
        self._human_topic = topology.human_topic(spec.name)
        self._logical[topology.topic_name(self._human_topic)] = self._human_topic
        self._consumed = topology.consumed_topics()
        self._handover = {topology.topic_name(name) for name in self._consumed}
        self._action_log = ActionLog.of(topology)

    async def process(self, record: Incoming) -> Finish:
        delivery = Delivery.of(record)
        if delivery.topic not in self._logical:  # retry headers naming a topic we don't read: someone else's
            delivery = Delivery.first(record)
        logical = self._logical[delivery.topic]
        actions: HandlerActions | None = None
        with consuming(self._spec.name, logical, record.headers) as trace:
            try:
                event = replace(decode(record.value, record.origin), attempt=delivery.attempt)
                actions = HandlerActions(self._spec.name, event, self._clock)
                if logical == self._human_topic:
                    outputs = await self._resume(event, actions, trace)
                else:
                    self._check(logical, event)
                    actions.started(logical)
                    outputs = await self._call(record, logical, event, delivery, actions, Conversation([]), trace) or []
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is data: routed by category, never a crash
                return self._fail(record, delivery, classify(exc), actions)
            if self._gate is not None:
                await self._gate.wait(output.topic for output in outputs)
            return self._publish(self._action_log.records(actions.actions), outputs)

    async def _publish(self, logged: list[Record], outputs: list[Record]) -> None:
        if any(output.topic in self._handover for output in outputs):
            # The action log first, so the agent these outputs go to logs after us: one task, one causal story.
            await self._producer.send(logged)
            logged = []
        await self._producer.send([*logged, *outputs])

    async def _call(
        self, record: Incoming, topic: str, event: Event, delivery: Delivery, actions: HandlerActions,
        conversation: Conversation, trace: Headers,
    ) -> list[Record] | None:
        """The handler's outputs, or None: it asked a person, and the call is parked until the answer."""
        model = RecordingModel(self._model, actions, conversation.decisions)
        try:
            async with asyncio.timeout(self._spec.timeout_s):  # no task per event, unlike wait_for
                return await self._handle(event, record.key, delivery, topic, actions, model, conversation, trace)
        except InputRequired as need:
            parked = Parked(record, topic, conversation.answers, need.question, self._now_ms(), model.made)
            await self._parking.park(event.task_id, parked)
            actions.asked(need.question, self._human_topic, record.origin.partition, record.key)
            return None

    async def _resume(self, answer: Event, actions: HandlerActions, trace: Headers) -> list[Record]:
        """A person answered: check the answer, then run the parked call again with every answer so far."""
        if answer.type == TIMEOUT_TYPE:
            return await self._expire(answer, actions)
        parked = self._parking.waiting(answer.task_id)
        if answer.type != ANSWER_TYPE:
            problem: str | None = f"an answer is an event of type {ANSWER_TYPE!r}, not {answer.type!r}"
        elif parked is None:
            problem = "the task is not waiting for an answer"
        else:
            problem = answer_problem(parked.question.schema, answer.payload)
        if problem is not None:
            log.warning("agent %s refuses an answer for task %s: %s", self._spec.name, answer.task_id, problem)
            actions.refused(answer.payload, problem)
            return []
        assert parked is not None
        actions.answered(answer.payload, parked.question)
        event = decode(parked.record.value, parked.record.origin)
        conversation = Conversation([*parked.answers, answer.payload], parked.decisions)
        outputs = await self._call(parked.record, parked.topic, event, Delivery.of(parked.record), actions, conversation, trace)
        if outputs is None:
            return []
        await self._parking.release(answer.task_id)
        return outputs

    async def _expire(self, timeout: Event, actions: HandlerActions) -> list[Record]:
        """Nobody answered in time: fail the task, or ask again, escalated, with a last timeout that fails it."""
        parked = self._parking.waiting(timeout.task_id)
        if parked is None or parked.asked_at_ms != timeout.payload.get("asked_at_ms"):
            return []  # answered, or asked again, since: this timeout no longer applies
        question = parked.question
        if question.on_timeout == "fail":
            actions.timed_out(question)
            await self._parking.release(timeout.task_id)
            return []
        escalated = replace(question, text=f"[escalated] {question.text}", on_timeout="fail")
        await self._parking.park(timeout.task_id, replace(parked, question=escalated, asked_at_ms=self._now_ms()))
        actions.asked(escalated, self._human_topic, parked.record.origin.partition, parked.record.key)
        return []

    def _check(self, logical: str, event: Event) -> None:
        problem = self._catalog.problem(logical, event.type, event.payload)
        if problem is not None:
            raise EnvelopeError(problem)
        self._check_chain(event)

    def _check_chain(self, event: Event) -> None:
        """An event whose chain already passed through this agent, or too many agents, is circular.

        Pattern agents loop by design (a board, re-awards, a tree); their pattern
        bounds the loop (rounds, awards, depth), so their chains start afresh.
        """
        if self._spec.pattern is not None:
            return
        hops = self._topology.failures.max_hops
        if self._spec.name in event.lineage or len(event.lineage) >= hops:
            chain = " -> ".join([*event.lineage, self._spec.name])
            raise CircularDelegation(f"delegation chain {chain} revisits an agent or exceeds max_hops {hops}")

    async def _handle(
        self, event: Event, key: bytes | None, delivery: Delivery, topic: str, actions: HandlerActions,
        model: RecordingModel, conversation: Conversation, trace: Headers,
    ) -> list[Record]:
        text_key = key.decode("utf-8", "replace") if key is not None else None
        scope = RecordedEffectScope(self._effects, delivery, event.task_id, actions)
        ctx = AgentContext(self._spec, text_key, model, self._tables, self._catalog, scope, conversation)
        emits = await run_handler(self._handler, event, ctx)
        outputs = [self._caused(event, emit, i) for i, emit in enumerate(emits)]
        actions.emitted(topic, outputs, [emit.topic for emit in emits])
        if not self._consumed.intersection(emit.topic for emit in emits):
            actions.state("completed", f"{self._spec.name} left nothing for another agent")
        return [self._output(output, emit, key, trace) for output, emit in zip(outputs, emits)]

    def _caused(self, cause: Event, emit: Emit, index: int) -> Event:
        event = cause.caused(emit.type, emit.payload, source=self._spec.name, index=index, timestamp=self._now_ms())
        return replace(event, lineage=(self._spec.name,)) if self._spec.pattern is not None else event

    def _output(self, event: Event, emit: Emit, key: bytes | None, trace: Headers) -> Record:
        out_key = emit.key.encode() if emit.key is not None else key
        return Record(self._topology.topic_name(emit.topic), out_key, encode(event), trace)

    def _fail(self, record: Incoming, delivery: Delivery, failure: Failure, actions: HandlerActions | None) -> Finish:
        agent, topology = self._spec.name, self._topology
        level = topology.failures.retry_level(failure.category, delivery.attempt)
        where = f"topic '{delivery.topic}' partition {delivery.partition} offset {delivery.offset} (attempt {delivery.attempt})"
        logged = []
        if actions is not None:  # an undecodable record belongs to no task
            actions.failed(failure.category, failure.error, final=level is None)
            logged = self._action_log.records(actions.actions)
        if level is None:
            log.warning("agent %s dead-letters %s as %s: %s", agent, where, failure.category, failure.error)
            dlq = topology.topic_name(topology.dead_letter_topic(agent))
            out = dead_letter_record(record, delivery, failure, dlq, agent, self._spec.version)
        else:
            log.info("agent %s retries %s at level %d (%s): %s", agent, where, level, failure.category, failure.error)
            topic = topology.topic_name(topology.retry_topic(agent, level))
            out = retry_record(record, delivery, failure, topic, topology.failures.retry_delays_s[level - 1])
        return self._producer.send([out, *logged])  # the retry first: its due time was just computed from now

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
