"""What every pattern shares: its declared agents, its expansion, and how it names what it adds.

A ``patterns:`` entry names a ``kind`` and the agent types it uses (``agents:``,
each a user's handler); the kind's module turns it into ordinary topics and
agents of the topology model, plus the runtime agents that coordinate them.
Generated names are ``<pattern>.<purpose>`` for topics and ``<pattern>-<role>``
for agents, so ``topology show`` and consumer groups read alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.envelope import Event
from streams.errors import EmitError
from streams.topology import AGENT_NAME, AgentSpec, TopicSpec, handler_ref
from streams.types import Emit, Handler, JsonObject
from streams.yaml_nodes import (
    Node,
    Report,
    as_int,
    as_mapping,
    as_refs,
    as_seconds,
    check_defined,
    check_keys,
    required_key,
)

_MEMBER_KEYS = ("handler", "concurrency")

History = Callable[[str], list[Event]]
"""Every event on a logical topic so far: what an agent joining late needs to know before it acts."""


def no_history(topic: str) -> list[Event]:
    return []


@dataclass(frozen=True)
class Member:
    """An agent type a pattern declares: the user's handler and how it runs."""

    name: str
    handler: str
    concurrency: int | None
    """None: the pattern picks (e.g. its parallelism)."""
    line: int
    on_complete: str | None = None
    """Orchestrator only: called with the gathered results."""
    children: tuple[str, ...] = ()
    """Hierarchical only: the agent types it may spawn."""
    reacts_to: tuple[str, ...] = ()
    """Blackboard only: the entry kinds it is shown."""
    bid: str | None = None
    """Market only: prices an ask; ``handler`` then executes the asks it wins."""


@dataclass(frozen=True, kw_only=True)
class Pattern:
    """One expanded ``patterns:`` entry; a kind subclasses it with its settings and runtime handlers."""

    name: str
    kind: str
    line: int
    members: Mapping[str, Member]
    topics: tuple[TopicSpec, ...]
    agents: tuple[AgentSpec, ...]

    def topic(self, purpose: str) -> str:
        return topic_name(self.name, purpose)

    def member_for(self, agent: str) -> Member | None:
        """The declared agent type an expanded agent runs; None for the runtime's own agents."""
        return next((m for m in self.members.values() if agent_name(self.name, m.name) == agent), None)

    def handler(self, agent: str, base_dir: Path, history: History) -> Handler:
        """The handler one of this pattern's agents runs: a user's, wrapped, or the runtime's."""
        raise NotImplementedError(f"{type(self).__name__} must say how its agents are handled")


@dataclass
class Expansion:
    """Every pattern of a file and the topics and agents they add."""

    patterns: dict[str, Pattern] = field(default_factory=dict)
    topics: dict[str, TopicSpec] = field(default_factory=dict)
    agents: dict[str, AgentSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    """One ``patterns:`` entry being parsed: what a kind's parser reads and reports against."""

    name: str
    node: Node
    fields: dict[str, Node]
    members: dict[str, Member]
    report: Report

    def member(self, key: str, example: str) -> Member | None:
        """The declared agent type a key names; undefined or missing ones are reported."""
        node = required_key(self.node, self.fields, key, example, self.report)
        return None if node is None else self.ref(node)

    def ref(self, node: Node) -> Member | None:
        if not isinstance(node.value, str):
            self.report.add(node, "expected an agent name", f"name one of patterns.{self.name}.agents")
            return None
        if not check_defined(node, "agent", self.members, f"patterns.{self.name}.agents:", self.report):
            return None
        return self.members[node.value]

    def refs(self, key: str) -> list[Member]:
        found = (self.ref(ref) for ref in as_refs(self.fields.get(key), self.report))
        return [member for member in found if member is not None]

    def count(self, key: str, default: int, minimum: int = 1) -> int:
        node = self.fields.get(key)
        return default if node is None else as_int(node, minimum, self.report)

    def seconds(self, key: str, default: float) -> float:
        node = self.fields.get(key)
        return default if node is None else as_seconds(node, default, self.report)

    def optional_seconds(self, key: str) -> float | None:
        """A duration that is off unless given (a deadline)."""
        return self.seconds(key, 1.0) if key in self.fields else None

    def agent_spec(
        self,
        role: str,
        handler: str,
        inputs: tuple[str, ...],
        emits: tuple[str, ...],
        *,
        concurrency: int,
        line: int | None = None,
        tables: tuple[str, ...] = (),
        tick_s: float | None = None,
    ) -> AgentSpec:
        """An agent this pattern adds: a member's (named after it) or the runtime's (named after its role)."""
        return AgentSpec(
            self.agent(role), handler, inputs, inputs, emits, tables, concurrency, line or self.node.line,
            pattern=self.name, tick_s=tick_s,
        )

    def topic(self, purpose: str) -> str:
        return topic_name(self.name, purpose)

    def agent(self, role: str) -> str:
        return agent_name(self.name, role)


def topic_name(pattern: str, purpose: str) -> str:
    return f"{pattern}.{purpose}"


def agent_name(pattern: str, role: str) -> str:
    return f"{pattern}-{role}"


def parse_members(
    node: Node | None, pattern: str, extra_keys: tuple[str, ...], handler_dir: Path | None, report: Report
) -> dict[str, Member]:
    """The ``agents:`` of a pattern entry: each a handler and the keys its kind allows."""
    members = {}
    for name, entry in as_mapping(node, report).items():
        AGENT_NAME.check(name, entry, report)
        fields = as_mapping(entry, report)
        check_keys(fields, (*_MEMBER_KEYS, *extra_keys), report)
        handler_node = required_key(entry, fields, "handler", f"agents.{pattern}:{name}", report)
        on_complete, bid = fields.get("on_complete"), fields.get("bid")
        members[name] = Member(
            name=name,
            handler=handler_ref(handler_node, handler_dir, report),
            concurrency=as_int(fields.get("concurrency"), 1, report) if "concurrency" in fields else None,
            line=entry.line,
            on_complete=handler_ref(on_complete, handler_dir, report) if on_complete is not None else None,
            children=tuple(ref.value for ref in as_refs(fields.get("children"), report)),
            reacts_to=tuple(ref.value for ref in as_refs(fields.get("reacts_to"), report)),
            bid=handler_ref(bid, handler_dir, report) if bid is not None else None,
        )
    if node is not None and not members:
        report.add(node, f"pattern '{pattern}' declares no agents", "declare its agent types under agents:")
    return members


def result_object(value: Any) -> JsonObject:
    """What a user's handler returned where the pattern needs a JSON object (a result, a roll-up)."""
    if not isinstance(value, dict):
        raise EmitError(f"a pattern handler must return a JSON object here, got {type(value).__name__}")
    return value


def now_ms() -> int:
    return int(time.time() * 1000)


def deadline_ms(seconds: float | None) -> int | None:
    """When something started now is overdue; None: never."""
    return None if seconds is None else now_ms() + int(seconds * 1000)


RETENTION_S = 600.0
"""How long a finished task leaves its marker in a runtime agent's table: its late or redelivered events change nothing."""
FORGET = "pattern.forget"


def finished() -> JsonObject:
    """The marker a finished task (a gathered task, a settled ask, a completed tree) leaves behind."""
    return {"done": True, "done_ms": now_ms()}


def forgettable(table: Mapping[str, Any], topic: str) -> list[Emit]:
    """For a tick: a ``pattern.forget`` per marker past ``RETENTION_S``, keyed so it reaches the key's partition."""
    horizon = now_ms() - RETENTION_S * 1000
    return [Emit(topic, FORGET, {}, key=key) for key, state in table.items() if state.get("done") and state["done_ms"] <= horizon]


def forget(table: MutableMapping[str, Any], key: str | None) -> list[Emit]:
    """Handle a ``pattern.forget``: tombstone the marker (still expired: the forget may be a redelivery)."""
    state = table.get(key) if key is not None else None
    if key is not None and state is not None and state.get("done") and state["done_ms"] <= now_ms() - RETENTION_S * 1000:
        del table[key]
    return []


def runtime_topic(name: str, partitions: int, line: int) -> TopicSpec:
    """A topic a pattern adds; any event type may travel on it (the runtime writes them)."""
    return TopicSpec(name, partitions, line=line)
