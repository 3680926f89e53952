"""patterns: entries → the exact topics, agents, groups and tables; mistakes reported with their line."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid
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


@pytest.fixture(autouse=True)
def restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))


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
    assert problems(tmp_path, text) == [
        "topology.yaml:4: patterns.research.kind: unknown pattern kind 'orchestrator' (did you mean 'orchestrator-worker'?). "
        "Fix: use one of: orchestrator-worker."
    ]


def test_a_pattern_agent_clashing_with_a_declared_agent_is_reported(tmp_path: Path) -> None:
    text = ORCHESTRATOR_WORKER + "topics: {x: {}}\nagents:\n  research-gather: {handler: m:f, subscribe: x}\n"
    assert any("adds agent 'research-gather', which is already defined" in problem for problem in problems(tmp_path, text))


def run(handler: Any, event: Event, ctx: AgentContext) -> list[Emit]:
    return asyncio.run(run_handler(handler, event, ctx))


def context(topology: Topology, agent: str, key: str | None, tables: dict[str, dict[str, Any]]) -> AgentContext:
    return AgentContext(topology.agents[agent], key, OfflineModel(), tables, EventCatalog(topology))


def test_orchestrator_worker_handlers_split_work_gather_and_complete(tmp_path: Path, module: str) -> None:
    topology = load(tmp_path, ORCHESTRATOR_WORKER, module)
    split, work, gather = (bind_handler(topology, topology.agents[f"research-{r}"]) for r in ("planner", "researcher", "gather"))
    request = new_event("research.requested", {"parts": 2}, source="test", timestamp=0, task_id="t1")
    tables: dict[str, dict[str, Any]] = {"tasks": {}}

    plan, *subtasks = run(split, request, context(topology, "research-planner", None, {}))
    assert (plan.topic, plan.type, plan.key, plan.payload["subtasks"]) == ("research.results", "task.planned", "t1", ["t1/0", "t1/1"])
    assert [(s.topic, s.key, s.payload["input"]) for s in subtasks] == [("research.tasks", "t1/0", {"part": 0}), ("research.tasks", "t1/1", {"part": 1})]
    results = [run(work, request.caused(s.type, s.payload, source="p", index=0, timestamp=0), context(topology, "research-researcher", s.key, {}))[0] for s in subtasks]
    assert [(r.key, r.payload) for r in results] == [("t1", {"subtask_id": "t1/0", "result": {"part": 0}}), ("t1", {"subtask_id": "t1/1", "result": {"part": 1}})]

    outputs = [run(gather, request.caused(e.type, e.payload, source="p", index=0, timestamp=0), context(topology, "research-gather", "t1", tables)) for e in (results[0], plan, results[1], results[1])]

    assert outputs[:2] == [[], []] and outputs[3] == []  # waits for all; a duplicate after completion is ignored
    (completed,) = outputs[2]
    assert (completed.topic, completed.type, completed.key) == ("research.completed", "task.completed", "t1")
    assert completed.payload["complete"] and completed.payload["missing"] == [] and completed.payload["result"] == {"done": 2}
    assert tables["tasks"]["t1"] == {"done": True}


def test_orchestrator_worker_deadline_completes_with_partial_results_and_missing_ids(tmp_path: Path, module: str) -> None:
    topology = load(tmp_path, ORCHESTRATOR_WORKER, module)
    gather = bind_handler(topology, topology.agents["research-gather"])
    tables: dict[str, dict[str, Any]] = {"tasks": {}}
    ctx = context(topology, "research-gather", "t1", tables)
    past = {"subtasks": ["t1/0", "t1/1"], "request": {"parts": 2}, "deadline_ms": 1}
    event = new_event("task.planned", past, source="test", timestamp=0, task_id="t1")
    run(gather, event, ctx)
    run(gather, event.caused("subtask.completed", {"subtask_id": "t1/1", "result": {"part": 1}}, source="w", index=0, timestamp=0), ctx)

    (deadline,) = run(gather, new_event(TICK, {}, source="clock", timestamp=0), context(topology, "research-gather", None, tables))
    (completed,) = run(gather, event.caused(deadline.type, deadline.payload, source="g", index=0, timestamp=0), ctx)

    assert (deadline.type, deadline.key) == ("task.deadline", "t1")
    assert (completed.payload["complete"], completed.payload["missing"]) == (False, ["t1/0"])
    assert completed.payload["results"] == [{"subtask_id": "t1/1", "result": {"part": 1}}]
