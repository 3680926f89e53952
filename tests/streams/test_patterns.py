"""patterns: entries → the exact topics, agents, groups and tables; mistakes reported with their line."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streams.catalog import EventCatalog
from streams.context import AgentContext, run_handler
from streams.envelope import Event, new_event
from streams.errors import TopologyError
from streams.model import OfflineModel
from streams.patterns import bind_handler
from streams.patterns.clock import TICK
from streams.patterns.common import finished
from streams.topology import Topology, load_topology
from streams.types import Emit

HANDLERS = """
async def plan(event, ctx):
    return [{"part": i} for i in range(event.payload["parts"])]


async def work(event, ctx):
    return {"part": event.payload["part"]}


async def report(event, ctx):
    return {"done": len(event.payload["results"])}
"""

ORCHESTRATOR_WORKER = """\
app: demo
patterns:
  research:
    kind: orchestrator-worker
    orchestrator: planner
    workers: researcher
    parallelism: 5
    deadline_s: 30
    agents:
      planner:    {handler: {module}:plan, on_complete: {module}:report}
      researcher: {handler: {module}:work, concurrency: 8}
"""


pytestmark = pytest.mark.usefixtures("restore_sys_path")


@pytest.fixture
def module(tmp_path: Path) -> str:
    name = f"pattern_handlers_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(HANDLERS)
    return name


def load(tmp_path: Path, text: str, module: str = "m") -> Topology:
    path = tmp_path / "topology.yaml"
    path.write_text(textwrap.dedent(text).replace("{module}", module))
    return load_topology(path, import_handlers=module != "m")


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        load(tmp_path, text)
    return [str(problem).replace(f"{tmp_path}/", "") for problem in caught.value.problems]


def test_orchestrator_worker_expands_into_its_topics_agents_groups_and_tables(tmp_path: Path) -> None:
    topology = load(tmp_path, ORCHESTRATOR_WORKER)

    assert {name: spec.partitions for name, spec in topology.topics.items()} == {
        "research.requests": 5, "research.tasks": 5, "research.results": 5, "research.completed": 5
    }
    planner, researcher, gather = (topology.agents[name] for name in ("research-planner", "research-researcher", "research-gather"))
    assert (planner.inputs, planner.emits, planner.concurrency) == (("research.requests",), ("research.tasks", "research.results"), 5)
    assert (researcher.inputs, researcher.emits, researcher.concurrency) == (("research.tasks",), ("research.results",), 8)
    assert (gather.inputs, gather.emits, gather.tables, gather.tick_s) == (
        ("research.results",), ("research.results", "research.completed"), ("tasks",), 1.0
    )
    assert {agent.pattern for agent in topology.agents.values()} == {"research"}
    assert topology.group_id("research-researcher") == "demo.research-researcher"  # one consumer group of workers
    assert list(topology.patterns) == ["research"]


def test_a_declared_topic_overrides_the_one_a_pattern_would_add(tmp_path: Path) -> None:
    topology = load(tmp_path, ORCHESTRATOR_WORKER + "topics:\n  research.completed: {partitions: 1, retention_ms: 1000}\n")
    assert (topology.topics["research.completed"].partitions, topology.topics["research.completed"].retention_ms) == (1, 1000)


def test_pattern_naming_an_undefined_agent_is_reported_with_line_and_fix(tmp_path: Path) -> None:
    found = problems(tmp_path, ORCHESTRATOR_WORKER.replace("workers: researcher", "workers: reseacher"))
    assert found == [
        "topology.yaml:6: patterns.research.workers: agent 'reseacher' is not defined (did you mean 'researcher'?). "
        "Fix: declare it under patterns.research.agents: or correct the name."
    ]


def test_unknown_pattern_kind_is_reported(tmp_path: Path) -> None:
    text = ORCHESTRATOR_WORKER.replace("kind: orchestrator-worker", "kind: orchestrator")
    (found,) = problems(tmp_path, text)
    assert found.startswith(
        "topology.yaml:4: patterns.research.kind: unknown pattern kind 'orchestrator' (did you mean 'orchestrator-worker'?). "
        "Fix: use one of: orchestrator-worker, hierarchical"
    )


def test_a_pattern_agent_clashing_with_a_declared_agent_is_reported(tmp_path: Path) -> None:
    text = ORCHESTRATOR_WORKER + "topics: {x: {}}\nagents:\n  research-gather: {handler: m:f, subscribe: x}\n"
    assert any("adds agent 'research-gather', which is already defined" in problem for problem in problems(tmp_path, text))


@dataclass
class Agents:
    """Calls a topology's pattern agents as the runtime does, with plain dicts as each agent's tables."""

    topology: Topology
    tables: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(dict)))

    def run(self, agent: str, event: Event, key: str | None = None) -> list[Emit]:
        spec = self.topology.agents[agent]
        ctx = AgentContext(spec, key, OfflineModel(), self.tables[agent], EventCatalog(self.topology))
        return asyncio.run(run_handler(bind_handler(self.topology, spec), event, ctx))


def delivered(emit: Emit) -> Event:
    """What the next agent receives for an emitted event."""
    return new_event(emit.type, emit.payload, source="test", timestamp=0, task_id="t1")


def test_orchestrator_worker_handlers_split_work_gather_and_complete(tmp_path: Path, module: str) -> None:
    agents = Agents(load(tmp_path, ORCHESTRATOR_WORKER, module))
    request = new_event("research.requested", {"parts": 2}, source="test", timestamp=0, task_id="t1")

    plan, *subtasks = agents.run("research-planner", request)
    assert (plan.topic, plan.type, plan.key, plan.payload["subtasks"]) == ("research.results", "task.planned", "t1", ["t1/0", "t1/1"])
    assert [(s.topic, s.key, s.payload["input"]) for s in subtasks] == [("research.tasks", "t1/0", {"part": 0}), ("research.tasks", "t1/1", {"part": 1})]
    results = [agents.run("research-researcher", delivered(s), s.key)[0] for s in subtasks]
    assert [(r.key, r.payload) for r in results] == [("t1", {"subtask_id": "t1/0", "result": {"part": 0}}), ("t1", {"subtask_id": "t1/1", "result": {"part": 1}})]

    outputs = [agents.run("research-gather", delivered(e), "t1") for e in (results[0], plan, results[1], results[1])]

    assert outputs[:2] == [[], []] and outputs[3] == []  # waits for all; a duplicate after completion is ignored
    (completed,) = outputs[2]
    assert (completed.topic, completed.type, completed.key) == ("research.completed", "task.completed", "t1")
    assert completed.payload["complete"] and completed.payload["missing"] == [] and completed.payload["result"] == {"done": 2}
    assert agents.tables["research-gather"]["tasks"]["t1"]["done"]  # a marker, until forgotten


def test_orchestrator_worker_deadline_completes_with_partial_results_and_missing_ids(tmp_path: Path, module: str) -> None:
    agents = Agents(load(tmp_path, ORCHESTRATOR_WORKER, module))
    past = {"subtasks": ["t1/0", "t1/1"], "request": {"parts": 2}, "deadline_ms": 1}
    agents.run("research-gather", new_event("task.planned", past, source="test", timestamp=0), "t1")
    agents.run("research-gather", new_event("subtask.completed", {"subtask_id": "t1/1", "result": {"part": 1}}, source="w", timestamp=0), "t1")

    (deadline,) = agents.run("research-gather", new_event(TICK, {}, source="clock", timestamp=0))
    (completed,) = agents.run("research-gather", delivered(deadline), deadline.key)

    assert (deadline.type, deadline.key) == ("task.deadline", "t1")
    assert (completed.payload["complete"], completed.payload["missing"]) == (False, ["t1/0"])
    assert completed.payload["results"] == [{"subtask_id": "t1/1", "result": {"part": 1}}]

HIERARCHICAL = """\
app: demo
patterns:
  incident:
    kind: hierarchical
    root: commander
    max_depth: 1
    max_children: 2
    agents:
      commander: {handler: {module}:plan, children: [host], on_complete: {module}:report}
      host:      {handler: {module}:work}
"""


def test_hierarchical_expands_into_a_topic_per_agent_type_and_a_supervisor_with_node_table(tmp_path: Path) -> None:
    topology = load(tmp_path, HIERARCHICAL)

    assert set(topology.topics) == {"incident.requests", "incident.host.tasks", "incident.events", "incident.completed"}
    commander, host, supervisor = (topology.agents[f"incident-{r}"] for r in ("commander", "host", "supervisor"))
    assert (commander.inputs, commander.emits) == (("incident.requests",), ("incident.events",))
    assert (host.inputs, host.emits) == (("incident.host.tasks",), ("incident.events",))
    assert (supervisor.inputs, supervisor.tables, supervisor.tick_s) == (("incident.events",), ("nodes",), 1.0)
    assert supervisor.emits == ("incident.events", "incident.completed", "incident.host.tasks")


def test_cycle_in_a_hierarchy_is_reported(tmp_path: Path) -> None:
    text = HIERARCHICAL.replace("{handler: {module}:work}", "{handler: {module}:work, children: [commander]}")
    assert problems(tmp_path, text) == [
        "topology.yaml:9: patterns.incident.agents.commander: agent types form a cycle: commander -> host -> commander. "
        "Fix: remove one of these children: a hierarchy is a tree."
    ]


def test_hierarchy_child_naming_an_undefined_agent_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, HIERARCHICAL.replace("children: [host]", "children: [hots]"))
    assert found == [
        "topology.yaml:9: patterns.incident.agents.commander.children[0]: agent 'hots' is not defined (did you mean 'host'?). "
        "Fix: declare it under patterns.incident.agents: or correct the name."
    ]


def test_spawning_past_max_depth_or_max_children_is_refused_with_an_event(tmp_path: Path, module: str) -> None:
    agents = Agents(load(tmp_path, HIERARCHICAL, module))
    where = {"node": "r", "parent": None, "root": "r", "depth": 0, "type": "commander", "input": {}}
    children = [{"type": "host", "input": {"n": i}} for i in range(3)]
    out = agents.run("incident-supervisor", new_event("node.spawned", {**where, "children": children}, source="t", timestamp=0), "r")

    assert [(e.type, e.topic, e.key) for e in out] == [
        ("node.task", "incident.host.tasks", "r/0"), ("node.task", "incident.host.tasks", "r/1"), ("spawn.refused", "incident.events", "r")
    ]
    assert out[2].payload["reason"] == "max_children 2 reached"
    assert set(agents.tables["incident-supervisor"]["nodes"]) == {"r", "r/0", "r/1"}

    deeper = {**where, "node": "r/0", "parent": "r", "depth": 1, "type": "host", "children": [{"type": "host", "input": {}}]}
    out = agents.run("incident-supervisor", new_event("node.spawned", deeper, source="t", timestamp=0), "r")
    assert [e.payload["reason"] for e in out if e.type == "spawn.refused"] == ["max_depth 1 reached: a node at depth 1 may not spawn"]
    assert set(agents.tables["incident-supervisor"]["nodes"]) == {"r", "r/1"}  # r/0 finished (with nothing): its entry is gone


def test_a_finished_tree_rolls_up_to_the_root_and_leaves_no_node_entries(tmp_path: Path, module: str) -> None:
    agents = Agents(load(tmp_path, HIERARCHICAL, module))
    root = {"node": "r", "parent": None, "root": "r", "depth": 0, "type": "commander", "input": {}}
    tasks = agents.run("incident-supervisor", new_event("node.spawned", {**root, "children": [{"type": "host", "input": {}}] * 2}, source="t", timestamp=0), "r")
    outputs = [
        agents.run("incident-supervisor", new_event("node.finished", {**t.payload, "type": "host", "result": {"ok": t.key}}, source="t", timestamp=0), "r")
        for t in tasks
    ]

    assert outputs[0] == []
    (completed,) = outputs[1]
    assert (completed.topic, completed.payload) == ("incident.completed", {"root": "r", "result": {"done": 2}})
    assert list(agents.tables["incident-supervisor"]["nodes"]) == ["r"] and agents.tables["incident-supervisor"]["nodes"]["r"]["done"]
    again = agents.run("incident-supervisor", new_event("node.spawned", {**root, "children": [{"type": "host", "input": {}}]}, source="t", timestamp=0), "r")
    assert again == []  # a redelivered root event does not grow the finished tree again


def test_a_finished_tasks_marker_is_forgotten_after_the_retention(tmp_path: Path, module: str) -> None:
    agents = Agents(load(tmp_path, ORCHESTRATOR_WORKER, module))
    tasks = agents.tables["research-gather"]["tasks"]
    tasks.update({"old": {"done": True, "done_ms": 0}, "new": finished()})

    (forget,) = agents.run("research-gather", new_event(TICK, {}, source="clock", timestamp=0))
    agents.run("research-gather", delivered(forget), forget.key)

    assert (forget.topic, forget.type, forget.key) == ("research.results", "pattern.forget", "old")
    assert list(tasks) == ["new"]


MARKET = """\
app: demo
patterns:
  jobs:
    kind: market
    solvers: [fast, cheap]
    award: weighted
    weights: {confidence: 10, price: 1}
    agents:
      fast:  {bid: {module}:plan, handler: {module}:work}
      cheap: {bid: {module}:plan, handler: {module}:work}
"""


def test_market_expands_into_asks_bids_awards_results_solvers_and_a_maker(tmp_path: Path) -> None:
    topology = load(tmp_path, MARKET)

    assert set(topology.topics) == {"jobs.asks", "jobs.bids", "jobs.awards", "jobs.results"}
    fast, maker = topology.agents["jobs-fast"], topology.agents["jobs-maker"]
    assert (fast.inputs, fast.emits) == (("jobs.asks", "jobs.awards"), ("jobs.bids",))
    assert (maker.inputs, maker.emits, maker.tables) == (("jobs.bids", "jobs.asks"), ("jobs.bids", "jobs.awards", "jobs.results"), ("asks",))
    assert topology.group_id("jobs-fast") != topology.group_id("jobs-cheap")  # every solver sees every ask


def test_market_with_no_solvers_is_reported(tmp_path: Path) -> None:
    assert problems(tmp_path, MARKET.replace("solvers: [fast, cheap]", "solvers: []")) == [
        "topology.yaml:5: patterns.jobs.solvers: market 'jobs' has no solvers. Fix: list the agents that bid, e.g. `solvers: [fast, cheap]`."
    ]


def test_weighted_rule_ranks_by_score_and_an_ask_without_bids_is_unfilled(tmp_path: Path, module: str) -> None:
    agents = Agents(load(tmp_path, MARKET, module))
    market = agents.topology.patterns["jobs"]
    bids = [{"solver": "cheap", "price": 1.0, "confidence": 0.5, "tokens": 0}, {"solver": "fast", "price": 3.0, "confidence": 0.8, "tokens": 0}]
    assert [b["solver"] for b in market.rank(bids)] == ["fast", "cheap"]  # 10*0.8-3 = 5 beats 10*0.5-1 = 4

    agents.run("jobs-maker", new_event("ask.opened", {"ask_id": "a1", "ask": {}, "close_ms": 0}, source="t", timestamp=0), "a1")
    (deadline,) = agents.run("jobs-maker", new_event(TICK, {}, source="clock", timestamp=0))
    (unfilled,) = agents.run("jobs-maker", delivered(deadline), "a1")
    assert (unfilled.topic, unfilled.type, unfilled.payload["reason"]) == ("jobs.results", "ask.unfilled", "no bids")


BLACKBOARD = """\
app: demo
patterns:
  board:
    kind: blackboard
    max_rounds: 2
    agents:
      echo: {handler: {module}:echo, reacts_to: [note]}
"""

ECHO = """
async def echo(event, ctx):
    return {"kind": "note", "content": {"heard": event.payload["entry"]["author"]}}
"""


def test_blackboard_expands_into_a_board_a_sessions_topic_and_projecting_participants(tmp_path: Path) -> None:
    topology = load(tmp_path, BLACKBOARD)

    assert set(topology.topics) == {"board.board", "board.sessions"}
    echo, keeper = topology.agents["board-echo"], topology.agents["board-keeper"]
    assert (echo.inputs, echo.emits, echo.tables) == (("board.board",), ("board.board",), ("board",))
    assert (keeper.inputs, keeper.emits, keeper.tables) == (("board.board",), ("board.board", "board.sessions"), ("board",))


def test_blackboard_participant_reacting_to_nothing_is_reported(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, BLACKBOARD.replace(", reacts_to: [note]", ""))
    assert "participant 'echo' reacts to no entry kind" in found


def test_participant_never_sees_its_own_posts_and_the_keeper_stops_at_max_rounds(tmp_path: Path) -> None:
    name = f"echo_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(ECHO)
    agents = Agents(load(tmp_path, BLACKBOARD, name))
    opening = new_event("board.entry", {"kind": "note", "content": {}}, source="person", timestamp=0)

    (reply,) = agents.run("board-echo", opening, "s1")
    assert (reply.key, reply.payload["author"], reply.payload["round"]) == ("s1", "echo", 1)
    assert agents.run("board-echo", delivered(reply), "s1") == []  # its own post is only projected

    keeper = [agents.run("board-keeper", e, "s1") for e in (opening, delivered(reply))]
    other = new_event("board.entry", {"session": "s1", "kind": "note", "author": "person", "round": 2}, source="person", timestamp=0)
    closing = agents.run("board-keeper", other, "s1")
    assert keeper == [[], []]
    assert [e.type for e in closing] == ["board.entry", "session.closed"]
    assert closing[1].payload["reason"] == "max_rounds 2 reached" and len(closing[1].payload["entries"]) == 3
    assert agents.run("board-echo", other, "s1") == []  # round 2 is the last: nobody answers it


def test_a_winner_that_times_out_loses_the_ask_to_the_next_best_bid(tmp_path: Path, module: str) -> None:
    agents = Agents(load(tmp_path, MARKET, module))
    ledger = agents.tables["jobs-maker"]["asks"]

    def maker(type: str, payload: dict[str, Any]) -> list[Emit]:
        return agents.run("jobs-maker", new_event(type, {"ask_id": "a1", **payload}, source="t", timestamp=0), "a1")

    maker("ask.opened", {"ask": {"n": 1}, "close_ms": 10**15})
    maker("bid", {"solver": "cheap", "price": 1.0, "confidence": 0.5, "tokens": 0})
    (first,) = maker("bid", {"solver": "fast", "price": 3.0, "confidence": 0.8, "tokens": 0})  # max_bids (2) reached
    ledger["a1"] = {**ledger["a1"], "timeout_ms": 0}  # the winner's execution time is up
    (deadline,) = agents.run("jobs-maker", new_event(TICK, {}, source="clock", timestamp=0))
    (second,) = agents.run("jobs-maker", delivered(deadline), "a1")
    late = maker("result.completed", {"solver": "fast", "award": 1, "result": {}})
    (filled,) = maker("result.completed", {"solver": "cheap", "award": 2, "result": {"ok": True}})

    assert [(a.payload["solver"], a.payload["award"]) for a in (first, second)] == [("fast", 1), ("cheap", 2)]
    assert late == []  # the timed-out winner's result no longer counts
    assert (filled.type, filled.payload["solver"], filled.payload["awards"]) == ("ask.filled", "cheap", 2)


def test_a_parent_past_its_deadline_rolls_up_without_the_slow_child_and_drops_its_entry(tmp_path: Path, module: str) -> None:
    agents = Agents(load(tmp_path, HIERARCHICAL.replace("max_children: 2", "max_children: 2\n    deadline_s: 30"), module))
    nodes = agents.tables["incident-supervisor"]["nodes"]
    root = {"node": "r", "parent": None, "root": "r", "depth": 0, "type": "commander", "input": {}}
    spawned = new_event("node.spawned", {**root, "children": [{"type": "host", "input": {}}] * 2}, source="t", timestamp=0)
    fast, _slow = agents.run("incident-supervisor", spawned, "r")
    agents.run("incident-supervisor", new_event("node.finished", {**fast.payload, "type": "host", "result": {"ok": 1}}, source="t", timestamp=0), "r")
    nodes["r"] = {**nodes["r"], "deadline_ms": 0}

    (deadline,) = agents.run("incident-supervisor", new_event(TICK, {}, source="clock", timestamp=0))
    (completed,) = agents.run("incident-supervisor", delivered(deadline), deadline.key)

    assert (deadline.type, deadline.payload, deadline.key) == ("node.deadline", {"node": "r"}, "r")
    assert completed.payload == {"root": "r", "result": {"done": 1}}
    assert list(nodes) == ["r"]  # the slow child's entry is tombstoned with its parent's
