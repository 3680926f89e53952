"""``kappa-agents topology show``: what each pattern expanded into, in the names Kafka and faust use."""

from __future__ import annotations

from streams.topology import AgentSpec, Topology


def show(topology: Topology) -> str:
    """Per pattern (then the plain agents): its topics, consumer groups and tables with their changelogs."""
    lines = [f"app {topology.app}" + (f" (namespace {topology.namespace!r})" if topology.namespace else "")]
    for pattern in topology.patterns.values():
        lines.append(f"\npattern {pattern.name} ({pattern.kind}), line {pattern.line}")
        lines += _section(topology, [topic.name for topic in pattern.topics], list(pattern.agents))
    plain = [agent for agent in topology.agents.values() if agent.pattern is None]
    if plain:
        lines.append("\nagents")
        lines += _section(topology, sorted({t for a in plain for t in (*a.inputs, *a.emits)}), plain)
    return "\n".join(lines)


def _section(topology: Topology, topics: list[str], agents: list[AgentSpec]) -> list[str]:
    lines = ["  topics:"]
    lines += [f"    {topology.topic_name(t)}  ({topology.topics[t].partitions} partitions)" for t in topics]
    lines.append("  consumer groups:")
    for agent in agents:
        lines.append(f"    {topology.group_id(agent.name)}  {', '.join(agent.inputs)} -> {', '.join(agent.emits) or '(nothing)'}")
    tables = [(agent, table) for agent in agents for table in agent.tables]
    if tables:
        lines.append("  tables:")
        lines += [f"    {agent.name}.{table}  (changelog {topology.group_id(agent.name)}-{table}-changelog)" for agent, table in tables]
    return lines
