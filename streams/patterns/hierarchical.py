"""Hierarchical: a parent spawns ephemeral children, which may spawn their own, up to limits.

```yaml
patterns:
  incident:
    kind: hierarchical
    root: commander                  # handles each event on incident.requests
    max_depth: 2                     # root is depth 0
    max_children: 3                  # per node
    deadline_s: 60                   # optional: a parent rolls up what it has after this long
    agents:
      commander: {handler: agents.incident:command, children: [region], on_complete: agents.incident:summarize}
      region:    {handler: agents.incident:region, children: [host]}
      host:      {handler: agents.incident:inspect}
```

A handler returns either its result (a JSON object) or the children to spawn
(a list of ``Child``). The runtime agent ``<pattern>-supervisor`` owns the tree: it
checks the limits (refusing with a ``spawn.refused`` event, never a crash),
keeps one ``nodes`` table entry per running node (child task id, parent id,
depth), sends each child its command, rolls results up (through the parent
type's ``on_complete``, if declared) and tombstones a node's entry once it
finished. The root's rolled-up result goes to ``<pattern>.completed``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from streams.context import AgentContext
from streams.envelope import Event
from streams.patterns.clock import TICK, TICK_S
from streams.patterns.common import (
    FORGET,
    Entry,
    History,
    Member,
    Pattern,
    deadline_ms,
    finished,
    forget,
    forgettable,
    now_ms,
    result_object,
    runtime_topic,
    topic_name,
)
from streams.topology import import_handler
from streams.types import Context, Emit, Handler, JsonObject
from streams.yaml_nodes import as_mapping, as_refs

KIND = "hierarchical"
KEYS = ("root", "max_depth", "max_children", "deadline_s", "parallelism")
MEMBER_KEYS = ("children", "on_complete")
SUPERVISOR = "supervisor"
TABLE = "nodes"

NODE = "node.task"
SPAWNED = "node.spawned"
FINISHED = "node.finished"
REFUSED = "spawn.refused"
DEADLINE = "node.deadline"
COMPLETED = "tree.completed"


@dataclass(frozen=True)
class Child:
    """A child a handler asks for: an instance of a declared agent type, with its input."""

    type: str
    payload: JsonObject


@dataclass(frozen=True, kw_only=True)
class Hierarchy(Pattern):
    root: Member
    max_depth: int
    max_children: int
    deadline_s: float | None

    def handler(self, agent: str, base_dir: Path, history: History) -> Handler:
        member = self.member_for(agent)
        if member is None:
            rollups = {m.name: import_handler(m.on_complete, base_dir) for m in self.members.values() if m.on_complete}
            return _supervise(self, rollups)
        return _node(self, member, import_handler(member.handler, base_dir))

    def tasks_topic(self, member: str) -> str:
        return topic_name(self.name, "requests" if member == self.root.name else f"{member}.tasks")


def parse(entry: Entry) -> Hierarchy | None:
    root = entry.member("root", "commander")
    max_depth, max_children, parallelism = entry.count("max_depth", 1, 0), entry.count("max_children", 8), entry.count("parallelism", 4)
    deadline_s = entry.optional_seconds("deadline_s")
    _check_children(entry)
    if root is None:
        return None
    line = entry.node.line
    events, completed = entry.topic("events"), entry.topic("completed")
    pattern = Hierarchy(
        name=entry.name, kind=KIND, line=line, members=entry.members, topics=(), agents=(),
        root=root, max_depth=max_depth, max_children=max_children, deadline_s=deadline_s,
    )
    tasks = {member.name: pattern.tasks_topic(member.name) for member in entry.members.values()}
    children = [topic for name, topic in tasks.items() if name != root.name]
    agents = [
        entry.agent_spec(m.name, m.handler, (tasks[m.name],), (events,), concurrency=m.concurrency or parallelism, line=m.line)
        for m in entry.members.values()
    ]
    agents.append(
        entry.agent_spec(SUPERVISOR, f"{__name__}:supervise (runtime)", (events,), (events, completed, *children), concurrency=parallelism,
                         tables=(TABLE,), tick_s=TICK_S)
    )
    topics = tuple(runtime_topic(name, parallelism, line) for name in (*tasks.values(), events, completed))
    return replace(pattern, topics=topics, agents=tuple(agents))


def _check_children(entry: Entry) -> None:
    """Every child type is declared, and no type is its own descendant (a tree, not a loop)."""
    declared = as_mapping(entry.fields.get("agents"), entry.report)
    for name in entry.members:
        for ref in as_refs(as_mapping(declared[name], entry.report).get("children"), entry.report):
            entry.ref(ref)
    for name in entry.members:
        cycle = _cycle(name, entry.members, [])
        if cycle:
            fix = "remove one of these children: a hierarchy is a tree"
            entry.report.add(declared[name], f"agent types form a cycle: {' -> '.join(cycle)}", fix)
            return


def _cycle(name: str, members: dict[str, Member], path: list[str]) -> list[str]:
    if name in path:
        return [*path[path.index(name):], name]
    member = members.get(name)
    for child in member.children if member is not None else ():
        found = _cycle(child, members, [*path, name])
        if found:
            return found
    return []


def _node(pattern: Hierarchy, member: Member, user: Callable[..., Awaitable[Any]]) -> Handler:
    """One node: the user's handler returns its result or the children it wants."""

    async def node(event: Event, ctx: Context) -> Emit:
        task: JsonObject = event.payload if event.type == NODE else {"node": event.task_id, "parent": None, "root": event.task_id, "depth": 0, "input": event.payload}
        answer = await user(replace(event, payload=task["input"]), ctx)
        where = {key: task[key] for key in ("node", "parent", "root", "depth")} | {"type": member.name}
        if isinstance(answer, list) and all(isinstance(child, Child) for child in answer):
            children = [{"type": child.type, "input": child.payload} for child in answer]
            return Emit(pattern.topic("events"), SPAWNED, {**where, "children": children, "input": task["input"]}, key=task["root"])
        return Emit(pattern.topic("events"), FINISHED, {**where, "result": result_object(answer)}, key=task["root"])

    return node


def _supervise(pattern: Hierarchy, rollups: dict[str, Callable[..., Awaitable[Any]]]) -> Handler:
    """The runtime agent: limits, child commands, node entries, roll-up, tombstones."""

    async def supervise(event: Event, ctx: AgentContext) -> list[Emit]:
        nodes = ctx.tables[TABLE]
        if event.type == TICK:
            overdue = [Emit(pattern.topic("events"), DEADLINE, {"node": k}, key=s["root"]) for k, s in nodes.items() if _overdue(s)]
            return overdue + forgettable(nodes, pattern.topic("events"))
        if event.type == FORGET:
            return forget(nodes, ctx.key)
        out: list[Emit] = []
        p = event.payload
        if event.type == SPAWNED and (nodes.get(p["node"]) or {}).get("children") is None and _alive(nodes, p):
            await _spawn(pattern, rollups, event, ctx, p, out)
        elif event.type == FINISHED and _alive(nodes, p):
            await _finish(pattern, rollups, event, ctx, p["node"], p["result"], out)
        elif event.type == DEADLINE and _overdue(nodes.get(p["node"]) or {}):
            await _finish(pattern, rollups, event, ctx, p["node"], await _rollup(rollups, event, ctx, nodes[p["node"]]), out)
        return out

    return supervise  # type: ignore[return-value]  # the runtime passes an AgentContext


def _alive(nodes: Any, p: JsonObject) -> bool:
    """A child counts while its entry lives; a root until its tree exists (so redeliveries change nothing)."""
    return p["node"] in nodes if p["parent"] is not None else p["node"] not in nodes


async def _spawn(pattern: Hierarchy, rollups: Any, event: Event, ctx: AgentContext, p: JsonObject, out: list[Emit]) -> None:
    nodes = ctx.tables[TABLE]
    allowed = pattern.members[p["type"]].children
    accepted: list[str] = []
    for i, child in enumerate(p["children"]):
        child_id = f"{p['node']}/{i}"
        reason = _refusal(pattern, p, child["type"], allowed, len(accepted))
        if reason is not None:
            out.append(Emit(pattern.topic("events"), REFUSED, {"node": p["node"], "child": child_id, "type": child["type"], "reason": reason}, key=p["root"]))
            continue
        accepted.append(child_id)
        task = {"node": child_id, "parent": p["node"], "root": p["root"], "depth": p["depth"] + 1, "input": child["input"]}
        nodes[child_id] = {**task, "type": child["type"], "children": None, "deadline_ms": deadline_ms(pattern.deadline_s)}
        out.append(Emit(pattern.tasks_topic(child["type"]), NODE, task, key=child_id))
    state = {**(nodes.get(p["node"]) or {}), **{k: p[k] for k in ("node", "parent", "root", "depth", "type", "input")}}
    state.update(children=accepted, results={}, deadline_ms=deadline_ms(pattern.deadline_s))
    nodes[p["node"]] = state
    if not accepted:
        await _finish(pattern, rollups, event, ctx, p["node"], await _rollup(rollups, event, ctx, state), out)


def _refusal(pattern: Hierarchy, p: JsonObject, child_type: str, allowed: tuple[str, ...], spawned: int) -> str | None:
    if p["depth"] + 1 > pattern.max_depth:
        return f"max_depth {pattern.max_depth} reached: a node at depth {p['depth']} may not spawn"
    if spawned >= pattern.max_children:
        return f"max_children {pattern.max_children} reached"
    if child_type not in allowed:
        return f"'{p['type']}' may spawn only {', '.join(allowed) or 'nothing'}, not '{child_type}'"
    return None


async def _finish(pattern: Hierarchy, rollups: Any, event: Event, ctx: AgentContext, node: str, result: JsonObject, out: list[Emit]) -> None:
    """A node is done: its entry is tombstoned and its result rolls up into its parent, maybe finishing it too."""
    nodes = ctx.tables[TABLE]
    state = nodes.get(node) or {"parent": None, "root": node}
    _tombstone(nodes, node)
    if state["parent"] is None:
        nodes[node] = finished()  # until forgotten, a redelivered root event cannot grow the tree again
        out.append(Emit(pattern.topic("completed"), COMPLETED, {"root": node, "result": result}, key=node))
        return
    parent = nodes.get(state["parent"])
    if parent is None or parent.get("children") is None:
        return  # the parent already rolled up without this child (deadline)
    parent = {**parent, "results": {**parent["results"], node: result}}
    nodes[state["parent"]] = parent
    if set(parent["children"]) <= set(parent["results"]):
        await _finish(pattern, rollups, event, ctx, state["parent"], await _rollup(rollups, event, ctx, parent), out)


def _tombstone(nodes: Any, node: str) -> None:
    """Tombstone a node's entry and those of its unfinished descendants (cut off by a deadline)."""
    state = nodes.pop(node, None) or {}
    for child in state.get("children") or ():
        if child in nodes:
            _tombstone(nodes, child)


async def _rollup(rollups: dict[str, Callable[..., Awaitable[Any]]], event: Event, ctx: AgentContext, state: JsonObject) -> JsonObject:
    """A parent's result from its children's: its type's ``on_complete``, or the results as they are."""
    results = [{"node": child, "result": state["results"][child]} for child in state["children"] if child in state["results"]]
    missing = [child for child in state["children"] if child not in state["results"]]
    summary = {"node": state["node"], "input": state["input"], "results": results, "missing": missing}
    rollup = rollups.get(state["type"])
    if rollup is None:
        return {"children": results, "missing": missing}
    return result_object(await rollup(replace(event, payload=summary), ctx))


def _overdue(state: JsonObject) -> bool:
    deadline = state.get("deadline_ms")
    return state.get("children") is not None and deadline is not None and now_ms() >= deadline
