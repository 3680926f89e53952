"""Multi-agent patterns declared in topology.yaml (``patterns:``), expanded into topics and agents.

Each kind lives in its own module and turns an entry into ordinary topology
topics and agents: the user's handlers (wrapped where the pattern needs to
route their results) and the runtime agents that coordinate them (gather
results, keep deadlines, award bids...). The wiring, retries, dead letters and
workers then run them like any other agent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

from streams.broker import BrokerProfile
from streams.edge import read_to_end
from streams.envelope import Event, decode
from streams.errors import EnvelopeError
from streams.patterns import blackboard, hierarchical, market, orchestrator
from streams.patterns.common import Entry, Expansion, Pattern, no_history, parse_members
from streams.topology import AgentSpec, Topology, import_handler
from streams.types import Handler
from streams.yaml_nodes import (
    LOWER_NAME,
    LOWER_NAME_FIX,
    Node,
    Report,
    Rule,
    as_mapping,
    check_keys,
    did_you_mean,
    required_key,
)

_KINDS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...], Callable[[Entry], Pattern | None]]] = {
    orchestrator.KIND: (orchestrator.KEYS, orchestrator.MEMBER_KEYS, orchestrator.parse),
    hierarchical.KIND: (hierarchical.KEYS, hierarchical.MEMBER_KEYS, hierarchical.parse),
    market.KIND: (market.KEYS, market.MEMBER_KEYS, market.parse),
    blackboard.KIND: (blackboard.KEYS, blackboard.MEMBER_KEYS, blackboard.parse),
}
"""kind → (its keys, its agents' extra keys, its parser)."""
_PATTERN = Rule("pattern name", LOWER_NAME, LOWER_NAME_FIX)


def expand(node: Node | None, agents: Mapping[str, AgentSpec], handler_dir: Path | None, report: Report) -> Expansion:
    """Every ``patterns:`` entry, parsed and expanded; problems go to ``report``."""
    expansion = Expansion()
    for name, entry_node in as_mapping(node, report).items():
        pattern = _parse_entry(name, entry_node, handler_dir, report)
        if pattern is not None:
            _add(expansion, pattern, entry_node, agents, report)
    return expansion


def bind_handler(topology: Topology, spec: AgentSpec, profile: BrokerProfile | None = None) -> Handler:
    """The handler an agent runs: its own, or the one its pattern gives it.

    ``profile``: the broker its pattern may read history from when it starts; None: no history.
    """
    base_dir = topology.path.parent
    if spec.pattern is None:
        return import_handler(spec.handler, base_dir)
    history = no_history if profile is None else partial(_history, profile, topology)
    return topology.patterns[spec.pattern].handler(spec.name, base_dir, history)


def _history(profile: BrokerProfile, topology: Topology, topic: str) -> list[Event]:
    """The events on a topic so far; what does not decode is the dead-letter path's business, not history."""
    events = []
    for record in read_to_end(profile, topology.topic_name(topic)):
        try:
            events.append(decode(record.value, record.origin))
        except EnvelopeError:
            continue
    return events


def _parse_entry(name: str, node: Node, handler_dir: Path | None, report: Report) -> Pattern | None:
    _PATTERN.check(name, node, report)
    fields = as_mapping(node, report)
    kind_node = required_key(node, fields, "kind", next(iter(_KINDS)), report)
    if kind_node is None:
        return None
    if kind_node.value not in _KINDS:
        hint = did_you_mean(str(kind_node.value), _KINDS)
        report.add(kind_node, f"unknown pattern kind {kind_node.value!r}{hint}", f"use one of: {', '.join(_KINDS)}")
        return None
    keys, member_keys, parse = _KINDS[kind_node.value]
    check_keys(fields, ("kind", "agents", *keys), report)
    agents_node = required_key(node, fields, "agents", "{name: {handler: module:function}}", report)
    members = parse_members(agents_node, name, member_keys, handler_dir, report)
    return parse(Entry(name, node, fields, members, report))


def _add(expansion: Expansion, pattern: Pattern, node: Node, agents: Mapping[str, AgentSpec], report: Report) -> None:
    for agent in pattern.agents:
        if agent.name in agents or agent.name in expansion.agents:
            message = f"pattern '{pattern.name}' adds agent '{agent.name}', which is already defined"
            report.add(node, message, "rename the pattern or the other agent")
        expansion.agents[agent.name] = agent
    for topic in pattern.topics:
        expansion.topics.setdefault(topic.name, topic)
    expansion.patterns[pattern.name] = pattern
