"""Load topology.yaml into a typed, validated model.

Everything downstream (wiring, CLI, replay) reads ``Topology`` and never the
YAML, so every mistake a user can make in the file is caught here, all at once,
each with its file:line, a dotted path to the offending value and the fix.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import fastavro
from fastavro.schema import SchemaParseException

from streams.errors import TopologyError
from streams.flow import FlowSpec, ModelLimits
from streams.yaml_nodes import (
    LOWER_NAME,
    LOWER_NAME_FIX,
    Node,
    Report,
    Rule,
    as_choice,
    as_int,
    as_list,
    as_mapping,
    as_refs,
    as_seconds,
    as_text,
    check_defined,
    check_keys,
    did_you_mean,
    read_nodes,
    required_key,
    shown,
)

if TYPE_CHECKING:
    from streams.patterns.common import Pattern

SCHEMA_DIR = "schemas"
"""Avro schemas live in ``schemas/<Name>.avsc`` next to the topology file."""
DLQ_SUFFIX = ".dlq"
ACTIONS_TOPIC = "agents.actions"
"""The action log every agent's runtime writes (``streams.actions``); declare it under topics: to size it."""
ACTIONS_PARTITIONS = 4
PROJECTIONS = "projections"
"""The built-in worker that folds the action log into the read side (``streams.projections``)."""

_TOP_LEVEL_KEYS = ("app", "events", "topics", "agents", "failures", "patterns", "flow")
_FAILURE_KEYS = ("retry_delays_s", "max_hops", "dlq_depth_warning", "categories")
_CATEGORY_KEYS = ("retryable", "max_attempts")
_EVENT_KEYS = ("schema",)
_TOPIC_KEYS = ("partitions", "replication", "retention_ms", "cleanup_policy", "events", "config")
_AGENT_KEYS = ("handler", "subscribe", "exclude", "emits", "tables", "concurrency", "timeout_s", "version", "max_model_calls")
_FLOW_KEYS = ("models", "max_model_calls", "max_lag")
_MODEL_LIMIT_KEYS = ("tokens_per_s", "requests_per_s", "burst_tokens", "burst_requests")
_CLEANUP_POLICIES = ("delete", "compact", "compact,delete")
_FIRST_CLASS_CONFIGS = {"cleanup.policy": "cleanup_policy", "retention.ms": "retention_ms"}
_GLOB_CHARS = frozenset("*?[")

_T = TypeVar("_T")


@dataclass(frozen=True)
class EventTypeSpec:
    name: str
    schema: str | None
    """Avro record name, read from ``schemas/<schema>.avsc``; None: free JSON."""
    line: int


@dataclass(frozen=True)
class TopicSpec:
    """A logical topic; its physical name adds the namespace (``Topology.topic_name``)."""

    name: str
    partitions: int = 1
    replication: int = 1
    retention_ms: int | None = None
    cleanup_policy: str = "delete"
    events: tuple[str, ...] = ()
    """Event types allowed on the topic; empty allows any."""
    config: tuple[tuple[str, str], ...] = ()
    line: int = 0

    def kafka_config(self) -> dict[str, str]:
        """Topic configs to create it with; ``retention.ms`` only when set, else the broker's."""
        retention = {} if self.retention_ms is None else {"retention.ms": str(self.retention_ms)}
        return {"cleanup.policy": self.cleanup_policy, **retention, **dict(self.config)}


@dataclass(frozen=True)
class AgentSpec:
    name: str
    handler: str
    subscribe: tuple[str, ...]
    inputs: tuple[str, ...]
    """``subscribe`` resolved against the declared topics, minus ``exclude``, sorted."""
    emits: tuple[str, ...]
    tables: tuple[str, ...]
    concurrency: int
    line: int
    timeout_s: float = 120.0
    """A handler call running longer fails as ``tool_timeout``."""
    version: str = "1"
    """Recorded on dead letters, so a fix can be told apart from the code that failed."""
    pattern: str | None = None
    """The ``patterns:`` entry this agent was expanded from; ``streams.patterns`` binds its handler."""
    tick_s: float | None = None
    """Set: the runtime posts a tick to each of its assigned input partitions this often (deadlines)."""
    max_model_calls: int | None = None
    """Model calls of this agent in flight at once (``streams.flow``); None: only ``concurrency`` caps them."""


@dataclass(frozen=True)
class CategoryPolicy:
    """What happens to an event whose handling failed in one category."""

    retryable: bool
    max_attempts: int | None = None
    """Deliveries in all, the first included; None: one per retry level, plus the first."""


DEFAULT_CATEGORIES: Mapping[str, CategoryPolicy] = MappingProxyType(
    {
        "context_window_exceeded": CategoryPolicy(retryable=False),
        "rate_limited": CategoryPolicy(retryable=True),
        "validation_failed": CategoryPolicy(retryable=True, max_attempts=2),
        "circular_delegation": CategoryPolicy(retryable=False),
        "tool_timeout": CategoryPolicy(retryable=True),
        "poison": CategoryPolicy(retryable=False),
        "unknown": CategoryPolicy(retryable=True, max_attempts=2),
        "side_effect_unknown": CategoryPolicy(retryable=False),
    }
)
"""The failure categories and their default policies; ``failures.categories`` overrides them."""


@dataclass(frozen=True)
class FailurePolicy:
    """Retry levels, hop limit and per-category policies (``failures:`` in the file)."""

    retry_delays_s: tuple[float, ...] = (1.0, 10.0, 60.0)
    """Delay of each retry level: level N is topic ``<agent>.retry.N``."""
    max_hops: int = 8
    """Agents an event's causal chain may pass through before it counts as circular."""
    dlq_depth_warning: int | None = None
    categories: Mapping[str, CategoryPolicy] = field(default_factory=lambda: DEFAULT_CATEGORIES)

    def retry_level(self, category: str, attempt: int) -> int | None:
        """The retry level (1-based) for a failure at ``attempt`` (0-based), or None: dead-letter it."""
        policy = self.categories.get(category, self.categories["unknown"])
        limit = policy.max_attempts if policy.max_attempts is not None else len(self.retry_delays_s) + 1
        if not policy.retryable or attempt + 1 >= limit or attempt >= len(self.retry_delays_s):
            return None
        return attempt + 1


@dataclass(frozen=True)
class Topology:
    """The validated file; names in it are logical (no namespace) unless a method says so."""

    path: Path
    app: str
    namespace: str
    events: Mapping[str, EventTypeSpec]
    topics: Mapping[str, TopicSpec]
    agents: Mapping[str, AgentSpec]
    failures: FailurePolicy = field(default_factory=FailurePolicy)
    patterns: Mapping[str, Pattern] = field(default_factory=lambda: MappingProxyType({}))
    """What each ``patterns:`` entry expanded into; its topics and agents are in ``topics``/``agents`` too."""
    flow: FlowSpec = field(default_factory=FlowSpec)

    def topic_name(self, logical: str) -> str:
        """The physical Kafka topic."""
        return f"{self.namespace}{logical}"

    def group_id(self, agent: str) -> str:
        """Consumer group of an agent, also its faust app id."""
        return f"{self.namespace}{self.app}.{agent}"

    def dead_letter_topic(self, agent: str) -> str:
        """Where an agent's failed events end, with the reason (logical name)."""
        return f"{agent}{DLQ_SUFFIX}"

    def retry_topic(self, agent: str, level: int) -> str:
        """Retry level ``level`` (1-based) of an agent: events wait there ``retry_delays_s[level-1]``."""
        return f"{agent}.retry.{level}"

    def redrive_topic(self, agent: str) -> str:
        """Dead letters sent back to one agent (and no other) by ``kappa-agents dlq redrive``."""
        return f"{agent}.redrive"

    def human_topic(self, agent: str) -> str:
        """Answers to an agent's questions (``ctx.ask_human``), co-partitioned with its inputs."""
        return f"{agent}.human"

    def replays_topic(self, agent: str) -> str:
        """Compacted record of where each ``kappa-agents replay`` moved the agent back from."""
        return f"{agent}.replays"

    def failure_topics(self, agent: str) -> list[str]:
        """The agent's own runtime topics: retry levels, redrive, human answers, dead letters, replays (logical)."""
        levels = range(1, len(self.failures.retry_delays_s) + 1)
        return [
            *(self.retry_topic(agent, n) for n in levels),
            self.redrive_topic(agent),
            self.human_topic(agent),
            self.dead_letter_topic(agent),
            self.replays_topic(agent),
        ]

    def actions_partitions(self) -> int:
        """Partitions of the action log: as declared, else a fixed default (so topologies sharing a namespace agree)."""
        declared = self.topics.get(ACTIONS_TOPIC)
        return declared.partitions if declared else ACTIONS_PARTITIONS

    def consumed_topics(self) -> frozenset[str]:
        """Logical topics some agent reads: an output elsewhere leaves work for no one."""
        return frozenset(name for agent in self.agents.values() for name in agent.inputs)

    def input_partitions(self, agent: str) -> int:
        """Partitions of the agent's inputs: its tables and failure topics have as many."""
        return max(self.topics[name].partitions for name in self.agents[agent].inputs)

    def all_topics(self) -> list[TopicSpec]:
        """Every topic to create: declared ones plus each agent's failure topics, sorted by name.

        Failure topics are co-partitioned with the agent's inputs, so a retried
        event returns to the partition (and table shard) it came from; declaring
        one under ``topics:`` overrides it.
        """
        derived = [
            TopicSpec(
                name,
                self.input_partitions(agent.name),
                max(self.topics[t].replication for t in agent.inputs),
                cleanup_policy="compact" if name == self.replays_topic(agent.name) else "delete",
            )
            for agent in self.agents.values()
            for name in self.failure_topics(agent.name)
            if name not in self.topics
        ]
        replication = max((t.replication for t in self.topics.values()), default=1)
        for name in (ACTIONS_TOPIC, self.dead_letter_topic(PROJECTIONS)):
            if name not in self.topics:
                derived.append(TopicSpec(name, self.actions_partitions(), replication))
        return sorted([*self.topics.values(), *derived], key=lambda topic: topic.name)

    def schema_path(self, event_type: str) -> Path | None:
        """The .avsc of an event type; None when it carries free JSON or is not declared."""
        spec = self.events.get(event_type)
        if spec is None or spec.schema is None:
            return None
        return self.path.parent / SCHEMA_DIR / f"{spec.schema}.avsc"

    def summary(self) -> str:
        head = f"app {self.app}: {len(self.topics)} topics, {len(self.agents)} agents"
        if self.namespace:
            head += f" (namespace {self.namespace!r})"
        return "\n".join([head, *(_describe(agent) for agent in self.agents.values())])


def _describe(agent: AgentSpec) -> str:
    emits = ", ".join(agent.emits) or "(nothing)"
    tables = f"; tables: {', '.join(agent.tables)}" if agent.tables else ""
    return f"  {agent.name}: {', '.join(agent.inputs)} -> {emits}{tables}; concurrency {agent.concurrency}"


def load_topology(path: str | Path, *, namespace: str = "", import_handlers: bool = True) -> Topology:
    """Read and validate the file; raises ``TopologyError`` listing every problem, sorted by line.

    ``import_handlers=False`` skips importing handlers (tools that only need the wiring).
    """
    path = Path(path)
    report = Report(str(path))
    root = read_nodes(path, report)
    if root is None:
        raise TopologyError(report.problems)
    topology = _parse(root, path, namespace, path.parent if import_handlers else None, report)
    if report.problems:
        raise TopologyError(sorted(report.problems, key=lambda problem: problem.line))
    return topology


def import_handler(ref: str, base_dir: Path) -> Callable[..., Any]:
    """Import ``module:function`` with ``base_dir`` (the topology's directory) on ``sys.path``.

    Raises ImportError, AttributeError or TypeError with a message naming the handler.
    """
    module_name, _, attribute = ref.partition(":")
    if str(base_dir.resolve()) not in sys.path:
        sys.path.insert(0, str(base_dir.resolve()))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # user code: any failure while importing means "does not import"
        raise ImportError(f"handler '{ref}': module '{module_name}' does not import: {exc!r}") from exc
    if not hasattr(module, attribute):
        raise AttributeError(f"handler '{ref}': module '{module_name}' has no attribute '{attribute}'")
    handler = getattr(module, attribute)
    if not (inspect.iscoroutinefunction(handler) or inspect.isasyncgenfunction(handler)):
        raise TypeError(f"handler '{ref}' is not an async function (it is a {type(handler).__name__})")
    return handler


_KAFKA_CHARS_FIX = "use only letters, digits, '.', '_' and '-'"
_APP = Rule("app name", re.compile(r"[a-z][a-z0-9-]*"), "use lowercase letters, digits and '-', e.g. kappa-demo")
_TOPIC = Rule("Kafka topic name", re.compile(r"(?!\.\.?$)[a-zA-Z0-9._-]{1,249}"), f"{_KAFKA_CHARS_FIX}, 249 at most")
_NAMESPACE = Rule("namespace", re.compile(r"[a-zA-Z0-9._-]*"), _KAFKA_CHARS_FIX)
AGENT_NAME = Rule("agent name", LOWER_NAME, LOWER_NAME_FIX)
_TABLE = Rule("table name", LOWER_NAME, LOWER_NAME_FIX)
_HANDLER = Rule("handler", re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*"), "write module:function, e.g. agents.a:handle")
_SCHEMA = Rule("Avro record name", re.compile(r"[A-Za-z_]\w*"), "write the record's name, e.g. Transaction")
_HANDLER_FIXES: dict[type[Exception], str] = {
    ImportError: "check the module path (relative to {dir}) and that the module imports",
    AttributeError: "define `async def {function}(event, ctx)` in that module, or correct the name",
    TypeError: "declare it with `async def`",
}


def _parse(root: Node, path: Path, namespace: str, handler_dir: Path | None, report: Report) -> Topology:
    _NAMESPACE.check(namespace, Node(namespace, 0, "namespace"), report)
    fields = as_mapping(root, report)
    check_keys(fields, _TOP_LEVEL_KEYS, report)
    app = as_text(required_key(root, fields, "app", "kappa-demo", report), _APP, report) or ""
    schemas_dir = path.parent / SCHEMA_DIR
    events = _section(fields.get("events"), report, lambda n, e: _parse_event(n, e, schemas_dir, report))
    topics = _section(fields.get("topics"), report, lambda n, e: _parse_topic(n, e, events, report))
    agents = _section(fields.get("agents"), report, lambda n, e: _parse_agent(n, e, topics, handler_dir, report))
    failures = _parse_failures(fields.get("failures"), report)
    from streams.patterns import expand  # the patterns package builds on this module's parser

    expansion = expand(fields.get("patterns"), agents, handler_dir, report)
    return Topology(
        path,
        app,
        namespace,
        MappingProxyType(events),
        MappingProxyType({**expansion.topics, **topics}),
        MappingProxyType({**agents, **expansion.agents}),
        failures,
        MappingProxyType(expansion.patterns),
        _parse_flow(fields.get("flow"), report),
    )


def _parse_failures(node: Node | None, report: Report) -> FailurePolicy:
    if node is None:
        return FailurePolicy()
    fields = as_mapping(node, report)
    check_keys(fields, _FAILURE_KEYS, report)
    delays = tuple(as_seconds(item, 0.0, report) for item in as_list(fields.get("retry_delays_s"), report))
    warning = fields.get("dlq_depth_warning")
    return FailurePolicy(
        retry_delays_s=delays if "retry_delays_s" in fields else FailurePolicy.retry_delays_s,
        max_hops=as_int(fields["max_hops"], 1, report) if "max_hops" in fields else FailurePolicy.max_hops,
        dlq_depth_warning=as_int(warning, 1, report) if warning is not None else None,
        categories=MappingProxyType({**DEFAULT_CATEGORIES, **_categories(fields.get("categories"), report)}),
    )


def _parse_flow(node: Node | None, report: Report) -> FlowSpec:
    fields = as_mapping(node, report)
    check_keys(fields, _FLOW_KEYS, report)
    calls, lag = fields.get("max_model_calls"), fields.get("max_lag")
    return FlowSpec(
        models=MappingProxyType(_section(fields.get("models"), report, lambda _, entry: _model_limits(entry, report))),
        max_model_calls=as_int(calls, 1, report) if calls is not None else None,
        max_lag=as_int(lag, 1, report) if lag is not None else None,
    )


def _model_limits(entry: Node, report: Report) -> ModelLimits:
    """A model's budget; every figure a number > 0, at least one of the two rates."""
    fields = as_mapping(entry, report)
    check_keys(fields, _MODEL_LIMIT_KEYS, report)
    if "tokens_per_s" not in fields and "requests_per_s" not in fields:
        report.add(entry, "a model's limits need a rate", "add tokens_per_s: and/or requests_per_s:")
    figures = {key: _rate(node, report) for key, node in fields.items() if key in _MODEL_LIMIT_KEYS}
    return ModelLimits(**figures, line=entry.line)


def _rate(node: Node, report: Report) -> float | None:
    if isinstance(node.value, int | float) and not isinstance(node.value, bool) and node.value > 0:
        return float(node.value)
    report.add(node, f"expected a number > 0, got {shown(node.value)}", "write e.g. 1000 or 2.5")
    return None


def _categories(node: Node | None, report: Report) -> dict[str, CategoryPolicy]:
    policies = {}
    for name, entry in as_mapping(node, report).items():
        if name not in DEFAULT_CATEGORIES:
            hint = did_you_mean(name, DEFAULT_CATEGORIES)
            report.add(entry, f"unknown failure category '{name}'{hint}", f"use one of: {', '.join(DEFAULT_CATEGORIES)}")
            continue
        fields = as_mapping(entry, report)
        check_keys(fields, _CATEGORY_KEYS, report)
        retryable = fields.get("retryable")
        if retryable is not None and not isinstance(retryable.value, bool):
            report.add(retryable, f"expected true or false, got {shown(retryable.value)}", "write true or false")
        attempts = fields.get("max_attempts")
        policies[name] = CategoryPolicy(
            retryable=bool(retryable.value) if retryable is not None else DEFAULT_CATEGORIES[name].retryable,
            max_attempts=as_int(attempts, 1, report) if attempts is not None else DEFAULT_CATEGORIES[name].max_attempts,
        )
    return policies


def _section(node: Node | None, report: Report, parse: Callable[[str, Node], _T]) -> dict[str, _T]:
    return {name: parse(name, entry) for name, entry in as_mapping(node, report).items()}


def _parse_event(name: str, entry: Node, schemas_dir: Path, report: Report) -> EventTypeSpec:
    fields = as_mapping(entry, report)
    check_keys(fields, _EVENT_KEYS, report)
    schema = as_text(fields.get("schema"), _SCHEMA, report)
    if schema is not None:
        _check_schema(schemas_dir / f"{schema}.avsc", fields["schema"], report)
    return EventTypeSpec(name, schema, entry.line)


def _check_schema(path: Path, at: Node, report: Report) -> None:
    shown = f"{SCHEMA_DIR}/{path.name}"
    if not path.is_file():
        report.add(at, f"schema file {shown} does not exist", f"create {shown} or correct the name")
        return
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(schema, dict) and schema.get("type") == "record"):
            raise SchemaParseException('its top-level "type" must be "record"')
        fastavro.parse_schema(schema)
    except (ValueError, TypeError, SchemaParseException) as exc:
        report.add(at, f"{shown} is not a valid Avro record schema: {exc}", f"correct {shown}")


def _parse_topic(name: str, entry: Node, events: Mapping[str, EventTypeSpec], report: Report) -> TopicSpec:
    _TOPIC.check(name, entry, report)
    fields = as_mapping(entry, report)
    check_keys(fields, _TOPIC_KEYS, report)
    event_types = as_refs(fields.get("events"), report)
    for ref in event_types:
        check_defined(ref, "event type", events, "events:", report)
    return TopicSpec(
        name=name,
        partitions=as_int(fields.get("partitions"), 1, report),
        replication=as_int(fields.get("replication"), 1, report),
        retention_ms=_retention(fields.get("retention_ms"), report),
        cleanup_policy=as_choice(fields.get("cleanup_policy"), _CLEANUP_POLICIES, report),
        events=tuple(ref.value for ref in event_types),
        config=_config(fields.get("config"), report),
        line=entry.line,
    )


def _retention(node: Node | None, report: Report) -> int | None:
    """Null (or absent) leaves retention to the broker; -1 keeps records forever."""
    return None if node is None or node.value is None else as_int(node, -1, report)


def _config(node: Node | None, report: Report) -> tuple[tuple[str, str], ...]:
    """Extra topic configs, stringified as Kafka wants them (``false``, not ``False``)."""
    items: list[tuple[str, str]] = []
    for key, entry in as_mapping(node, report).items():
        value = str(entry.value).lower() if isinstance(entry.value, bool) else entry.value
        if key in _FIRST_CLASS_CONFIGS:
            report.add(entry, f"'{key}' has its own key", f"set `{_FIRST_CLASS_CONFIGS[key]}:` instead")
        elif not isinstance(value, str | int | float):
            report.add(entry, f"expected text or a number, got {shown(value)}", f'quote it, e.g. "{key}": "1"')
        else:
            items.append((key, str(value)))
    return tuple(items)


def _parse_agent(
    name: str, entry: Node, topics: Mapping[str, TopicSpec], handler_dir: Path | None, report: Report
) -> AgentSpec:
    AGENT_NAME.check(name, entry, report)
    if name == PROJECTIONS:
        report.add(entry, f"agent name '{PROJECTIONS}' is the built-in worker that folds agents.actions", "rename the agent")
    fields = as_mapping(entry, report)
    check_keys(fields, _AGENT_KEYS, report)
    handler_node = required_key(entry, fields, "handler", f"agents.{name}:handle", report)
    handler = handler_ref(handler_node, handler_dir, report)
    subscribe = _subscriptions(entry, fields, report)
    inputs = _inputs(entry, subscribe, as_refs(fields.get("exclude"), report), topics, report)
    emits = as_refs(fields.get("emits"), report)
    for ref in emits:
        check_defined(ref, "topic", topics, "topics:", report)
    _check_loops(subscribe, emits, inputs, report)
    return AgentSpec(
        name=name,
        handler=handler,
        subscribe=tuple(ref.value for ref in subscribe),
        inputs=inputs,
        emits=tuple(ref.value for ref in emits),
        tables=_tables(fields.get("tables"), inputs, topics, report),
        concurrency=as_int(fields.get("concurrency"), 1, report),
        line=entry.line,
        timeout_s=as_seconds(fields.get("timeout_s"), AgentSpec.timeout_s, report),
        version=str(fields["version"].value) if "version" in fields else AgentSpec.version,
        max_model_calls=as_int(fields["max_model_calls"], 1, report) if "max_model_calls" in fields else None,
    )


def handler_ref(node: Node | None, handler_dir: Path | None, report: Report) -> str:
    ref = as_text(node, _HANDLER, report)
    if node is None or ref is None or handler_dir is None:
        return ref or ""
    try:
        import_handler(ref, handler_dir)
    except (ImportError, AttributeError, TypeError) as exc:
        fix = next(fix for kind, fix in _HANDLER_FIXES.items() if isinstance(exc, kind))
        report.add(node, str(exc), fix.format(dir=handler_dir.resolve(), function=ref.partition(":")[2]))
    return ref


def _subscriptions(entry: Node, fields: dict[str, Node], report: Report) -> list[Node]:
    node = required_key(entry, fields, "subscribe", "[topic]", report)
    if node is not None and node.value in (None, []):
        report.add(node, "subscribes to no topic", "list at least one topic or pattern")
    return as_refs(node, report)


def _inputs(
    entry: Node, subscribe: list[Node], exclude: list[Node], topics: Mapping[str, TopicSpec], report: Report
) -> tuple[str, ...]:
    matched = _resolve(subscribe, topics, report)
    inputs = tuple(sorted(matched - _resolve(exclude, topics, report)))
    if matched and not inputs:
        report.add(entry, "exclude removes every subscribed topic: the agent has no inputs", "narrow exclude:")
    return inputs


def _resolve(refs: list[Node], topics: Mapping[str, TopicSpec], report: Report) -> set[str]:
    return {topic for ref in refs for topic in _matches(ref, topics, report)}


def _matches(ref: Node, topics: Mapping[str, TopicSpec], report: Report) -> list[str]:
    """The declared topics an exact name or a glob pattern stands for; none is a problem."""
    if not _is_pattern(ref.value):
        return [ref.value] if check_defined(ref, "topic", topics, "topics:", report) else []
    matches = [topic for topic in topics if fnmatch.fnmatchcase(topic, ref.value)]
    if not matches:
        report.add(ref, f"pattern '{ref.value}' matches no declared topic", "declare a matching topic or fix it")
    return matches


def _check_loops(subscribe: list[Node], emits: list[Node], inputs: tuple[str, ...], report: Report) -> None:
    """A pattern that also catches the agent's own output is a feedback loop nobody asked for."""
    explicit = {ref.value for ref in subscribe if not _is_pattern(ref.value)}
    looping = [ref.value for ref in emits if ref.value in inputs and ref.value not in explicit]
    for pattern in (ref for ref in subscribe if _is_pattern(ref.value)):
        for target in (name for name in looping if fnmatch.fnmatchcase(name, pattern.value)):
            message = f"pattern '{pattern.value}' also matches '{target}', which this agent emits to (a loop)"
            report.add(pattern, message, f"add `exclude: [{target}]` or narrow the pattern")


def _tables(
    node: Node | None, inputs: tuple[str, ...], topics: Mapping[str, TopicSpec], report: Report
) -> tuple[str, ...]:
    """Table names, checked; faust co-partitions a table with its source, so inputs must agree."""
    first: dict[str, int] = {}
    for ref in as_refs(node, report):
        if ref.value in first:
            report.add(ref, f"table '{ref.value}' is listed twice (first at line {first[ref.value]})", "drop one")
        elif _TABLE.check(ref.value, ref, report):
            first[ref.value] = ref.line
    if node is not None and first and len({topics[name].partitions for name in inputs}) > 1:
        counts = ", ".join(f"{name}: {topics[name].partitions}" for name in inputs)
        message = f"tables need co-partitioned inputs, but the partition counts differ ({counts})"
        report.add(node, message, "give every input topic the same partitions:, or move the tables")
    return tuple(first)


def _is_pattern(name: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(name)


