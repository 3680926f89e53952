"""Replay sandbox: run a new version of an agent's handler over its history, A/B against the old one.

``kappa-agents replay --agent NAME --sandbox --handler MODULE:FUNCTION --from ISO --to ISO``
reads the agent's historical input (its input topics, by record time) and runs
the new handler through the same runtime path as a worker (``AgentRunner``),
in a namespace of its own: every topic it writes is ``sandbox.<run>.<topic>``
(outputs, its action log, retries, dead letters), its tables are RocksDB files
under ``<state>/sandbox/<run>/``, it commits no consumer group, and side
effects never run (each is recorded in the report as "would have run").
Isolation holds by construction: the sandbox's topology differs from the real
one only in its namespace, and every name the runtime writes goes through it.

It ends with a report (printed, and written as JSON): outputs per type, the
input events whose old and new outputs differ, and the tokens each used.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import orjson
from rocksdict import Rdict

from streams.actions import Action, ActionLog
from streams.admin import apply_topics, list_topics, topics_wanted
from streams.broker import BrokerProfile
from streams.dispatch import KeyedDispatcher
from streams.edge import read_to_end
from streams.effects import TABLE as EFFECTS_TABLE
from streams.effects import SideEffects
from streams.envelope import Event, decode
from streams.errors import EnvelopeError, ReplayError
from streams.failures import Delivery
from streams.human import Parking
from streams.model import model_from_env
from streams.producer import AsyncProducer
from streams.records import Incoming
from streams.runner import AgentRunner
from streams.settings import Settings
from streams.topology import ACTIONS_TOPIC, Topology, import_handler
from streams.timetravel import read_log
from streams.types import JsonObject
from streams.wiring import changelog_topic

SANDBOX_PREFIX = "sandbox."
DIFFERENCES_SHOWN = 50
"""Differing events listed in the printed report; the JSON report lists them all."""


@dataclass(frozen=True)
class Window:
    """Which history to replay: records whose timestamps fall in [start, end] (each optional, timezone-aware)."""

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        for name, at in (("--from", self.start), ("--to", self.end)):
            if at is not None and at.utcoffset() is None:
                raise ReplayError(f"{name} {at.isoformat()} has no timezone; give one, e.g. {at.isoformat()}+00:00")

    def holds(self, timestamp_ms: int) -> bool:
        after = self.start is None or timestamp_ms >= self.start.timestamp() * 1000
        return after and (self.end is None or timestamp_ms <= self.end.timestamp() * 1000)


class WouldHaveRun(SideEffects):
    """Side effects in a sandbox: nothing runs; each call is noted for the report.

    The handler gets what production recorded for the same (task, action), as
    a replay does, so outputs stay comparable; None where production never ran it.
    """

    def __init__(self, recorded: Mapping[str, Any]) -> None:
        super().__init__({}, _nothing, {})
        self._recorded = recorded
        self.calls: list[JsonObject] = []

    async def run(
        self, delivery: Delivery, task_id: str, action_type: str, act: Callable[[], Awaitable[Any]], *, irreversible: bool
    ) -> Any:
        entry = self._recorded.get(f"{task_id}/{action_type}") or {}
        done = entry.get("state") == "done"
        self.calls.append({"task_id": task_id, "action_type": action_type, "irreversible": irreversible, "recorded_result": done})
        return entry.get("result") if done else None


@dataclass(frozen=True)
class SandboxRun:
    run: str
    topology: Topology
    """The real topology in the sandbox's namespace: everything it names is the sandbox's own."""
    state_dir: Path

    @classmethod
    def new(cls, topology: Topology, settings: Settings) -> SandboxRun:
        run = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        sandboxed = replace(topology, namespace=f"{SANDBOX_PREFIX}{run}.{topology.namespace}")
        return cls(run, sandboxed, settings.state_dir / "sandbox" / run)


def run_sandbox(
    topology: Topology, settings: Settings, profile: BrokerProfile, agent: str, handler_ref: str, window: Window
) -> JsonObject:
    """Replay ``agent``'s input in ``window`` through ``handler_ref`` in a new sandbox; the comparison report."""
    if agent not in topology.agents:
        raise ReplayError(f"no agent '{agent}' in {topology.path.name}; agents: {', '.join(topology.agents)}")
    spec = topology.agents[agent]
    handler = import_handler(handler_ref, topology.path.parent)
    sandbox = SandboxRun.new(topology, settings)
    inputs = [r for name in spec.inputs for r in read_to_end(profile, topology.topic_name(name)) if window.holds(r.origin.timestamp)]
    _create_topics(profile, sandbox.topology, agent)
    effects = WouldHaveRun(_recorded_effects(profile, topology, agent))
    asyncio.run(_replay(topology, sandbox, profile, agent, handler, inputs, effects))
    report = _report(topology, sandbox, profile, agent, handler_ref, window, inputs, effects)
    sandbox.state_dir.mkdir(parents=True, exist_ok=True)
    (sandbox.state_dir / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report


async def _replay(
    production: Topology, sandbox: SandboxRun, profile: BrokerProfile, agent: str, handler: Any, inputs: Sequence[Incoming], effects: SideEffects
) -> None:
    spec = sandbox.topology.agents[agent]
    with ExitStack() as tables_stack:
        tables: dict[str, MutableMapping[str, Any]] = {}
        for name in spec.tables:
            sandbox.state_dir.mkdir(parents=True, exist_ok=True)
            db = Rdict(str(sandbox.state_dir / f"{name}.db"))
            tables_stack.callback(db.close)
            tables[name] = cast(MutableMapping[str, Any], db)  # Rdict is a mapping; its stubs do not say so
        async with AsyncExitStack() as stack:
            producer = AsyncProducer(profile.producer_config())
            stack.callback(producer.close)
            model = model_from_env()
            stack.push_async_callback(model.aclose)
            parked: dict[str, Any] = {}
            parking = Parking(parked, _setter(parked))
            runner = AgentRunner(sandbox.topology, spec, handler, model, tables, producer, effects, parking, reads=production)
            dispatcher: KeyedDispatcher[Incoming] = KeyedDispatcher(runner.process, _released, concurrency=spec.concurrency)
            stack.push_async_callback(dispatcher.close)
            for record in inputs:
                await dispatcher.submit((record.origin.topic, record.origin.partition), record.origin.offset, record.key, record)
            await dispatcher.drain()


def _report(
    topology: Topology, sandbox: SandboxRun, profile: BrokerProfile, agent: str, handler_ref: str, window: Window,
    inputs: Sequence[Incoming], effects: WouldHaveRun,
) -> JsonObject:
    spec = topology.agents[agent]
    input_ids = _input_ids(inputs)
    old = _outputs_by_cause(profile, topology, spec.emits, input_ids)
    new = _outputs_by_cause(profile, sandbox.topology, spec.emits, input_ids)
    differing = [
        {**coordinates, "old": old.get(event_id, []), "new": new.get(event_id, [])}
        for event_id, coordinates in input_ids.items()
        if _comparable(old.get(event_id, [])) != _comparable(new.get(event_id, []))
    ]
    old_actions = _agent_actions(profile, topology, agent, input_ids)
    new_actions = _agent_actions(profile, sandbox.topology, agent, input_ids)
    return {
        "run": sandbox.run,
        "agent": agent,
        "old_handler": spec.handler,
        "new_handler": handler_ref,
        "window": {"from": _iso(window.start), "to": _iso(window.end)},
        "inputs": len(inputs),
        "outputs": {"old": _count_types(old), "new": _count_types(new)},
        "differing_events": len(differing),
        "tokens": {"old": _tokens(old_actions), "new": _tokens(new_actions)},
        "failures": {"old": _failures(old_actions), "new": _failures(new_actions)},
        "side_effects_would_have_run": effects.calls,
        "sandbox_topics": sorted(t.name for t in _sandbox_topics(sandbox.topology, agent)),
        "state_dir": str(sandbox.state_dir),
        "differences": differing,
    }


def format_report(report: JsonObject) -> str:
    """The report for a person: the totals, then the first differing events."""
    lines = [
        f"sandbox run {report['run']}: agent {report['agent']}, {report['old_handler']} (old) vs {report['new_handler']} (new)",
        f"  inputs replayed: {report['inputs']}; events whose outputs differ: {report['differing_events']}",
        f"  outputs old: {_counts(report['outputs']['old'])}; new: {_counts(report['outputs']['new'])}",
        f"  tokens old: {report['tokens']['old']}; new: {report['tokens']['new']}",
        f"  failures old: {_counts(report['failures']['old'])}; new: {_counts(report['failures']['new'])}",
        f"  side effects that would have run: {len(report['side_effects_would_have_run'])}",
    ]
    for diff in report["differences"][:DIFFERENCES_SHOWN]:
        lines.append(f"  {diff['topic']}[{diff['partition']}]@{diff['offset']}: old {_brief(diff['old'])} | new {_brief(diff['new'])}")
    if report["differing_events"] > DIFFERENCES_SHOWN:
        lines.append(f"  ... {report['differing_events'] - DIFFERENCES_SHOWN} more in the JSON report")
    lines.append(f"  report: {report['state_dir']}/report.json")
    return "\n".join(lines)


def _create_topics(profile: BrokerProfile, sandboxed: Topology, agent: str) -> None:
    apply_topics(profile, _sandbox_topics(sandboxed, agent))


def _sandbox_topics(sandboxed: Topology, agent: str) -> list[Any]:
    spec = sandboxed.agents[agent]
    wanted = {sandboxed.topic_name(name) for name in [*spec.emits, *sandboxed.failure_topics(agent), ACTIONS_TOPIC]}
    return [topic for topic in topics_wanted(sandboxed) if topic.name in wanted]


def _recorded_effects(profile: BrokerProfile, topology: Topology, agent: str) -> dict[str, Any]:
    """Production's side-effect records of the agent, read from its table's changelog (never from its files)."""
    changelog = changelog_topic(topology.group_id(agent), EFFECTS_TABLE)
    if changelog not in list_topics(profile):
        return {}
    recorded = {}
    for record in read_to_end(profile, changelog):
        if record.key is not None:
            recorded[orjson.loads(record.key)] = None if record.value is None else orjson.loads(record.value)
    return recorded


def _input_ids(inputs: Sequence[Incoming]) -> dict[str, JsonObject]:
    """Input event id → where it was read; undecodable records have no id and no outputs to compare."""
    ids = {}
    for record in inputs:
        try:
            event = decode(record.value, record.origin)
        except EnvelopeError:
            continue
        ids[event.event_id] = {"event_id": event.event_id, "topic": record.origin.topic, "partition": record.origin.partition, "offset": record.origin.offset}
    return ids


def _outputs_by_cause(profile: BrokerProfile, topology: Topology, emits: Iterable[str], causes: Mapping[str, Any]) -> dict[str, list[JsonObject]]:
    by_cause: dict[str, list[JsonObject]] = {}
    for name in emits:
        for record in read_to_end(profile, topology.topic_name(name)):
            event = _decoded(record)
            if event is not None and event.causation_id is not None and event.causation_id in causes:
                by_cause.setdefault(event.causation_id, []).append({"topic": name, "type": event.type, "payload": event.payload})
    return by_cause


def _agent_actions(profile: BrokerProfile, topology: Topology, agent: str, causes: Mapping[str, Any]) -> list[Action]:
    return [e.action for e in read_log(profile, ActionLog.of(topology)) if e.action.agent == agent and e.action.causation_id in causes]


def _decoded(record: Incoming) -> Event | None:
    try:
        return decode(record.value, record.origin)
    except EnvelopeError:
        return None


def _comparable(outputs: list[JsonObject]) -> bytes:
    return orjson.dumps(outputs, option=orjson.OPT_SORT_KEYS)


def _count_types(by_cause: Mapping[str, list[JsonObject]]) -> dict[str, int]:
    return dict(sorted(Counter(output["type"] for outputs in by_cause.values() for output in outputs).items()))


def _tokens(actions: Iterable[Action]) -> int:
    return sum(a.detail["input_tokens"] + a.detail["output_tokens"] for a in actions if a.kind == "AgentDecision")


def _failures(actions: Iterable[Action]) -> dict[str, int]:
    return dict(sorted(Counter(a.detail["category"] for a in actions if a.kind == "TaskFailed").items()))


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "none"


def _brief(outputs: list[JsonObject]) -> str:
    return orjson.dumps([{o["type"]: o["payload"]} for o in outputs]).decode()[:200] if outputs else "(nothing)"


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _setter(table: MutableMapping[str, Any]) -> Callable[[str, Any], Awaitable[None]]:
    async def record(key: str, value: Any) -> None:
        table[key] = value

    return record


async def _released(_record: Incoming) -> None:
    """Nothing to commit: a sandbox has no consumer group."""


async def _nothing(_key: str, _value: Any) -> None:
    """A sandbox records no side effect."""

