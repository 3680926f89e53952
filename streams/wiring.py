"""Topology model → a faust app per agent: its consumer group, tables and stream.

Each topology agent becomes its own faust App, so each has its own consumer
group (replay resets one agent without touching the others) and its own
RocksDB tables with changelogs. The faust agent only feeds records into a
``KeyedDispatcher``; acks flow back in offset order, so faust commits only
what is finished.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from functools import partial
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.streams import _current_event, current_event
from faust.tables import TableManager
from faust.types import EventT, TableT
from faust.types.tuples import FutureMessage
from mode.supervisors import CrashingSupervisor

from streams.broker import BrokerProfile
from streams.changelog import DurableTable, acknowledged, changelog_sends
from streams.diagnostics import install_task_dump
from streams.dispatch import Finish, KeyedDispatcher
from streams.edge import read_to_end
from streams.effects import TABLE as EFFECTS_TABLE
from streams.effects import SideEffects, horizon_of
from streams.envelope import Origin
from streams.failures import due_ms
from streams.flow import FlowControl
from streams.lag import LagGate, consumer_groups
from streams.liveness import claim_state_dir
from streams.intake import Intake
from streams.human import TABLE as PARKED_TABLE
from streams.human import TIMEOUT_CHECK_S, Parking, now_ms, timeout_record
from streams.model import model_from_env
from streams.patterns import bind_handler
from streams.patterns.clock import ticker
from streams.producer import AsyncProducer
from streams.records import Headers, Incoming
from streams.runner import AgentRunner
from streams.settings import Settings
from streams.topology import AgentSpec, Topology
from streams.types import Model

TABLE_STORE_OPTIONS = {"write_buffer_size": 1 << 20, "max_write_buffer_number": 2, "block_cache_size": 8 << 20}
"""RocksDB sizes for every table, small because faust opens one database per table partition and
agent state is small and hot. faust's defaults (3 write buffers of 64 MB, a 2 GB block cache, per
database) let a worker's memory grow with every event written until they filled (bench soak: 137 MB
after 100k events, 226 MB after 1M); with these, 134 MB after 100k, 136 MB after 400k."""
FETCH_BATCH = 500
"""Records taken from faust's stream at once; the dispatcher's capacity bounds memory."""
FETCH_WITHIN_S = 0.02
STREAM_BUFFER = FETCH_BATCH * 2
"""Records faust holds fetched ahead of the dispatcher. When the dispatcher is full (slow
handlers, a saturated model bucket) this buffer fills and faust pauses fetching those
partitions until it drains: a backlog waits in Kafka, and the worker's memory stays flat."""


FETCH_MAX_WAIT_MS = 100
"""How long a fetch may wait for records. faust fixes it at 1.5 s with no setting, and the
embedded broker holds a fetch for half its wait, records or not (bench fan-out: 3.73 s →
3.58 s with 100 ms). Kafka answers as soon as records are there: a short wait costs idle polls."""


CRASH_EXIT_S = 30.0
"""How long a crashed worker may take to stop before its process exits anyway. faust stops every
service first, and against a broker that stopped answering each stop waits out its own timeout
(a worker whose sends timed out on a frozen broker still ran 90 s after its agent crashed).
Exiting skips nothing that matters: offsets are committed only for work the broker acknowledged."""
EXIT_FAILURE = 1

log = logging.getLogger(__name__)


class _Worker(faust.Worker):
    """faust's worker without its startup spinner, fetching with a short wait, dumping its tasks on SIGUSR1,
    and exiting non-zero at most ``CRASH_EXIT_S`` after a crash.

    At ``-l warn`` or above the spinner sets the root logger to DEBUG for good,
    so every ``log.debug`` in aiokafka builds a record: 6% of the dispatch's CPU.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None
        self._exit_timer: threading.Timer | None = None

    def _crash(self, reason: BaseException) -> None:
        super()._crash(reason)
        if self._exit_timer is None:
            self._exit_timer = threading.Timer(CRASH_EXIT_S, _exit_crashed, (reason,))
            self._exit_timer.daemon = True
            self._exit_timer.start()

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        install_task_dump(asyncio.get_running_loop())
        self.app.consumer._thread._consumer._fetcher._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # type: ignore[attr-defined]


def _exit_crashed(reason: BaseException) -> None:
    log.critical("crashed (%r) and still stopping after %.0f s: exiting", reason, CRASH_EXIT_S)
    logging.shutdown()
    os._exit(EXIT_FAILURE)


class TablesWiredFirst(TableManager):
    """faust's table manager without its fixed 1 s pause before it registers the tables.

    faust pauses so that tables an agent creates while starting still get registered
    (a table added later raises "Too late to add tables"). Our apps create every table
    while wiring, before the app starts, so there is nothing to wait for: the pause was
    a second of every worker's cold start.
    """

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


@dataclass(frozen=True)
class AgentApp:
    """A wired agent: the faust app to run and the tables it owns."""

    app: faust.App
    spec: AgentSpec
    tables: Mapping[str, TableT[Any, Any]]


def build_agent_app(
    topology: Topology, agent: str, settings: Settings, profile: BrokerProfile, model: Model | None = None
) -> AgentApp:
    """Wire one topology agent into a faust app, ready for ``app.main()`` or a Worker."""
    spec = topology.agents[agent]
    app = profile.faust_app(
        topology.group_id(agent),
        store="rocksdb://",
        datadir=str(claim_state_dir(settings, topology.group_id(agent), table_dir(topology, agent, settings))),
        topic_partitions=topology.input_partitions(agent),
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=STREAM_BUFFER,
        broker_commit_interval=settings.commit_interval_s,
        key_serializer="json",  # tables: str keys and JSON values survive a changelog rebuild
        value_serializer="json",
        web_enabled=False,
        autodiscover=False,
        Worker=_Worker,
        TableManager=TablesWiredFirst,
        Table=DurableTable,
    )
    tables = {name: _table(app, name, topology, spec) for name in spec.tables}
    effects_table = _table(app, EFFECTS_TABLE, topology, spec)
    parked_table = _table(app, PARKED_TABLE, topology, spec)
    handler = bind_handler(topology, spec, profile)
    parking = Parking(parked_table, partial(_record_durably, parked_table))
    app.timer(TIMEOUT_CHECK_S)(partial(_send_timeouts, profile, parking, topology.topic_name(topology.human_topic(agent)), set()))
    flow = FlowControl(topology.flow)
    horizon = horizon_of(read_to_end(profile, topology.topic_name(topology.replays_topic(agent))))

    def stream_agent(name: str, logical_topics: list[str], *, delayed: bool) -> None:
        topic = app.topic(*map(topology.topic_name, logical_topics), key_serializer="raw", value_serializer="raw")

        async def consume(stream: faust.Stream[Any]) -> None:
            async with AsyncExitStack() as stack:
                producer = AsyncProducer(profile.producer_config())
                stack.callback(producer.close)
                llm = flow.throttle(model or model_from_env(), spec.name, spec.max_model_calls)
                stack.push_async_callback(llm.aclose)
                effects = SideEffects(effects_table, partial(_record_durably, effects_table), horizon)
                runner = AgentRunner(
                    topology, spec, handler, llm, tables, producer, effects, parking, gate=_gate(topology, spec, profile, producer)
                )
                await _feed(stream, runner, spec.concurrency, stack, delayed=delayed)

        app.agent(topic, name=name, supervisor_strategy=CrashingSupervisor)(consume)  # type: ignore[arg-type]  # faust passes a Stream

    # Fresh events, redriven dead letters and people's answers flow at once; each retry level is its
    # own stream that waits for its records to fall due, so retries never hold up
    # the main flow (and a level's uniform delay keeps its records in due order).
    stream_agent(agent, [*spec.inputs, topology.redrive_topic(agent), topology.human_topic(agent)], delayed=False)
    for level in range(1, len(topology.failures.retry_delays_s) + 1):
        stream_agent(f"{agent}-retry-{level}", [topology.retry_topic(agent, level)], delayed=True)
    if spec.tick_s is not None:
        app.task(ticker(lambda: app.assignor.assigned_actives(), topology, spec, profile))
    return AgentApp(app, spec, tables)


async def _feed(
    stream: faust.Stream[Any], runner: AgentRunner, concurrency: int, stack: AsyncExitStack, *, delayed: bool
) -> None:
    async def handle(event: EventT) -> Finish:
        _current_event.set(weakref.ref(event))  # faust tables find their partition through it
        writes = changelog_sends()
        return _durable(await runner.process(incoming_of(event)), writes)

    async def release(event: EventT) -> None:
        await stream.ack(event)

    dispatcher = KeyedDispatcher(handle, release, concurrency=concurrency, capacity=max(FETCH_BATCH, concurrency * 4))
    stack.push_async_callback(dispatcher.close)
    intake = Intake(stream.app)
    watch = asyncio.create_task(intake.watch())
    stack.callback(watch.cancel)
    # A failed handler or send (a delivery timeout when the broker stopped answering) must stop the
    # agent, and so the worker, even while no input arrives to submit: it interrupts the wait for input,
    # and only that wait (the cleanup after it must run to its end).
    failed = asyncio.create_task(dispatcher.failed())
    stack.callback(failed.cancel)
    feeding = asyncio.current_task()
    assert feeding is not None, "faust runs each agent in a task"
    interruptible = True

    def interrupt(task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        task.exception()  # retrieved: the failure is raised below, or by submit
        if interruptible:
            feeding.cancel()

    failed.add_done_callback(interrupt)
    try:
        async for batch in stream.noack_take(FETCH_BATCH, within=FETCH_WITHIN_S):
            for event in await intake.admit(batch):
                message = event.message
                if delayed:
                    await _until_due(message.headers)
                await dispatcher.submit(message.tp, message.offset, message.key, event)
    except asyncio.CancelledError:
        if failed.done() and not failed.cancelled():
            feeding.uncancel()  # our own cancel, handled here: later timeouts must not mistake it for a stop
            failed.result()  # raises: the agent crashes with the failure instead of stopping quietly
        raise
    finally:
        interruptible = False


async def _durable(finish: Finish, writes: list[FutureMessage]) -> None:
    """An event's outputs, then its table writes: once both are acknowledged, so is all it caused."""
    await finish
    await acknowledged(writes)


def _gate(topology: Topology, spec: AgentSpec, profile: BrokerProfile, producer: AsyncProducer) -> LagGate | None:
    max_lag = topology.flow.max_lag
    if max_lag is None:
        return None
    return LagGate(profile, consumer_groups(topology, spec.emits), producer.ends, max_lag)


async def _send_timeouts(profile: BrokerProfile, parking: Parking, topic: str, sent: set[tuple[str, int]]) -> None:
    """Tell the owner of each timed-out question (this worker) to apply its policy, through the log."""
    due = [(task_id, parked) for task_id, parked in parking.overdue(now_ms()) if (task_id, parked.asked_at_ms) not in sent]
    if not due:
        return
    producer = AsyncProducer(profile.producer_config())
    try:
        await producer.send([timeout_record(topic, task_id, parked) for task_id, parked in due])
    finally:
        producer.close()
    sent.update((task_id, parked.asked_at_ms) for task_id, parked in due)


async def _record_durably(table: TableT[Any, Any], key: str, value: Any) -> None:
    """Set a table key once its changelog record is acknowledged by the broker.

    The record is sent without faust's changelog callback: that callback moves the
    store's persisted offset past the record on acknowledgement, so a crash before
    the local write would make recovery skip the record and the key would read as
    unfinished. Without it, the next start replays the record (the table's
    partition is the current event's, as for ``table[key] = value``).
    """
    event = current_event()
    assert event is not None, "side effects run while handling an event"
    sent = await table.changelog_topic.send(key=key, value=value, partition=event.message.partition)
    await sent
    table.data[key] = value


async def _until_due(raw_headers: Any) -> None:
    wait_s = due_ms(_headers(raw_headers)) / 1000 - time.time()
    if wait_s > 0:
        await asyncio.sleep(wait_s)


def table_dir(topology: Topology, agent: str, settings: Settings) -> Path:
    """Where the agent's RocksDB tables live on this host (a directory per worker below it)."""
    return settings.tables_dir / topology.group_id(agent)


def changelog_topics(topology: Topology, agent: str) -> list[str]:
    """The agent's table changelog topics, named as faust names them."""
    return [changelog_topic(topology.group_id(agent), table) for table in topology.agents[agent].tables]


def changelog_topic(group: str, table: str) -> str:
    """The changelog of a table of the faust app ``group``, named as faust names it."""
    return f"{group}-{table}-changelog"


def incoming_of(event: EventT) -> Incoming:
    message = event.message
    origin = Origin(message.topic, message.partition, message.offset, int(message.timestamp * 1000))
    return Incoming(origin, message.key, message.value, _headers(message.headers))


def _headers(raw: Any) -> Headers:
    items = raw.items() if isinstance(raw, Mapping) else (raw or ())
    return [(k, v) for k, v in items if v is not None]


def _table(app: faust.App, name: str, topology: Topology, spec: AgentSpec) -> TableT[Any, Any]:
    return app.Table(
        name,
        default=None,
        partitions=topology.input_partitions(spec.name),
        help=f"owned by agent {spec.name}",
        options=TABLE_STORE_OPTIONS,
    )
