"""The projections worker: task lifecycle and per-agent tables, fed only from ``agents.actions``.

A faust app of its own (``kappa-agents worker --agent projections``), with
RocksDB tables co-partitioned with the action log: ``tasks`` (one view per
task, keyed by task id) and ``agents`` (one view per agent and log partition,
summed when queried). Everything in them is a fold (``streams.lifecycle``) of
the log, so deleting the state and the group's offsets (``kappa-agents
projections rebuild``) and re-reading gives the same tables, byte for byte.
Its faust web server answers the queries (``streams.views``).
"""

from __future__ import annotations

import logging
import shutil
import weakref
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.types import EventT, TableT
from faust.streams import _current_event
from mode.supervisors import CrashingSupervisor

from streams.actions import ActionLog
from streams.admin import delete_topics
from streams.broker import BrokerProfile
from streams.changelog import DurableTable, acknowledged, changelog_sends
from streams.errors import EnvelopeError, ReplayError
from streams.failures import Delivery, Failure, dead_letter_record
from streams.lifecycle import fold_agent, fold_task
from streams.liveness import claim_state_dir, register, running_workers
from streams.producer import AsyncProducer
from streams.replay import ToEarliest, reset_offsets
from streams.settings import Settings
from streams.topology import ACTIONS_TOPIC, PROJECTIONS, Topology
from streams.views import add_views
from streams.wiring import TABLE_STORE_OPTIONS, TablesWiredFirst, changelog_topic, incoming_of
from streams.worker import require_existing, run_faust_worker

TASKS = "tasks"
AGENTS = "agents"
VERSION = "1"
"""Recorded on the projections' dead letters, as agents record theirs."""
FOLD_BATCH = 500
FOLD_WITHIN_S = 0.05

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProjectionApp:
    app: faust.App
    tasks: TableT[Any, Any]
    agents: TableT[Any, Any]


def build_projection_app(topology: Topology, settings: Settings, profile: BrokerProfile) -> ProjectionApp:
    """Wire the projections: one stream over the action log, two tables, the query views."""
    actions = ActionLog.of(topology)
    app = profile.faust_app(
        topology.group_id(PROJECTIONS),
        store="rocksdb://",
        datadir=str(claim_state_dir(settings, topology.group_id(PROJECTIONS), projection_dir(topology, settings))),
        topic_partitions=actions.partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        key_serializer="json",
        value_serializer="json",
        web_enabled=True,
        web_host=settings.query_host,
        web_port=settings.query_port,
        autodiscover=False,
        TableManager=TablesWiredFirst,
        Table=DurableTable,
    )
    partitions, options = actions.partitions, TABLE_STORE_OPTIONS
    tasks = app.Table(TASKS, default=None, partitions=partitions, options=options, help="task lifecycle views, by task id")
    agents = app.Table(AGENTS, default=None, partitions=partitions, options=options, help="per-agent activity, by agent@partition")
    dead_letters = topology.topic_name(topology.dead_letter_topic(PROJECTIONS))

    async def project(stream: faust.Stream[Any]) -> None:
        async with AsyncExitStack() as stack:
            producer = AsyncProducer(profile.producer_config())
            stack.callback(producer.close)
            # Acked a batch at a time, once the batch's table writes are acknowledged, as agents' events are.
            async for batch in stream.noack_take(FOLD_BATCH, within=FOLD_WITHIN_S):
                writes = changelog_sends()
                for event in batch:
                    _current_event.set(weakref.ref(event))  # the tables write to this action's partition
                    await _apply(event, actions, tasks, agents, producer, dead_letters)
                await acknowledged(writes)
                for event in batch:
                    await stream.ack(event)

    topic = app.topic(actions.topic, key_serializer="raw", value_serializer="raw")
    app.agent(topic, name=PROJECTIONS, supervisor_strategy=CrashingSupervisor)(project)  # type: ignore[arg-type]  # faust passes a Stream
    add_views(app, tasks, agents, actions)
    return ProjectionApp(app, tasks, agents)


async def _apply(
    event: EventT, actions: ActionLog, tasks: TableT[Any, Any], agents: TableT[Any, Any], producer: AsyncProducer, dead_letters: str
) -> None:
    record = incoming_of(event)
    try:
        action = actions.codec.decode(record.value)
    except EnvelopeError as exc:  # never crash on a bad record, never drop it silently
        delivery = Delivery.of(record)
        log.warning("projections dead-letter %s partition %d offset %d: %s", delivery.topic, delivery.partition, delivery.offset, exc)
        await producer.send([dead_letter_record(record, delivery, Failure("poison", str(exc)), dead_letters, PROJECTIONS, VERSION)])
        return
    folded = fold_task(tasks.get(action.task_id), action)
    if folded.duplicate:  # a redelivered action: already in both tables
        return
    tasks[action.task_id] = folded.view
    if action.agent != PROJECTIONS:
        shard = f"{action.agent}@{record.origin.partition}"
        agents[shard] = fold_agent(agents.get(shard), action)
    if folded.rejection is not None:
        log.warning("task %s: illegal transition rejected: %s", action.task_id, folded.rejection.detail)
        await producer.send(actions.records([folded.rejection]))


def projection_dir(topology: Topology, settings: Settings) -> Path:
    return settings.tables_dir / topology.group_id(PROJECTIONS)


def run_projections(topology: Topology, settings: Settings, profile: BrokerProfile, faust_args: Sequence[str]) -> None:
    """Run the projections worker in this process until it is stopped (never returns)."""
    require_existing(topology, PROJECTIONS, [ACTIONS_TOPIC, topology.dead_letter_topic(PROJECTIONS)], profile)
    wired = build_projection_app(topology, settings, profile)
    register(settings, topology.group_id(PROJECTIONS))
    run_faust_worker(wired.app, faust_args)


def rebuild_projections(topology: Topology, settings: Settings, profile: BrokerProfile) -> str:
    """Forget every projection (local tables, changelogs, offsets) so the next worker folds the whole log again."""
    group = topology.group_id(PROJECTIONS)
    if running_workers(settings, group):
        raise ReplayError(f"projections workers are running (group {group}); stop the workers first, then rebuild")
    moves = reset_offsets(profile, group, [ActionLog.of(topology).topic], ToEarliest())
    delete_topics(profile, [changelog_topic(group, table) for table in (TASKS, AGENTS)])
    shutil.rmtree(projection_dir(topology, settings), ignore_errors=True)
    return f"projections reset: {len(moves)} partition(s) of the action log to be re-read; start `kappa-agents worker --agent {PROJECTIONS}`"
