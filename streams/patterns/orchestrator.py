"""Orchestrator-worker: one handler splits a task, a group of workers runs the pieces in parallel.

```yaml
patterns:
  research:
    kind: orchestrator-worker
    orchestrator: planner            # returns the subtasks: a list of JSON objects (or Subtask)
    workers: researcher              # returns one subtask's result: a JSON object
    parallelism: 5                   # partitions of the tasks topic: subtasks in flight at once
    deadline_s: 30                   # optional: complete with partial results after this long
    agents:
      planner:    {handler: agents.research:plan, on_complete: agents.research:report}
      researcher: {handler: agents.research:research}
```

Expands into topics ``research.requests`` (tasks arrive), ``research.tasks``
(one keyed command per subtask), ``research.results`` and ``research.completed``,
and agents ``research-planner``, ``research-researcher`` (one consumer group)
and ``research-gather``, the runtime agent that collects results per task in
its ``tasks`` table and emits ``task.completed`` (after calling ``on_complete``,
if declared) once every subtask is in or the deadline passed.
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
    agent_name,
    deadline_ms,
    finished,
    forget,
    forgettable,
    now_ms,
    result_object,
    runtime_topic,
)
from streams.topology import import_handler
from streams.types import Context, Emit, Handler, JsonObject

KIND = "orchestrator-worker"
KEYS = ("orchestrator", "workers", "parallelism", "deadline_s")
MEMBER_KEYS = ("on_complete",)
TABLE = "tasks"

SUBTASK = "subtask"
PLANNED = "task.planned"
SUBTASK_DONE = "subtask.completed"
DEADLINE = "task.deadline"
COMPLETED = "task.completed"


@dataclass(frozen=True)
class Subtask:
    """A subtask an orchestrator returns when it must choose the key (a stateful worker sees every
    subtask with the same key); a plain JSON object gets its own subtask id as key."""

    payload: JsonObject
    key: str | None = None


@dataclass(frozen=True, kw_only=True)
class OrchestratorWorker(Pattern):
    orchestrator: Member
    worker: Member
    parallelism: int
    deadline_s: float | None

    def handler(self, agent: str, base_dir: Path, history: History) -> Handler:
        if agent == self.roles["orchestrator"]:
            return _split(self, import_handler(self.orchestrator.handler, base_dir))
        if agent == self.roles["worker"]:
            return _work(self, import_handler(self.worker.handler, base_dir))
        on_complete = self.orchestrator.on_complete
        return _gather(self, import_handler(on_complete, base_dir) if on_complete else None)

    @property
    def roles(self) -> dict[str, str]:
        return {"orchestrator": agent_name(self.name, self.orchestrator.name), "worker": agent_name(self.name, self.worker.name)}


def parse(entry: Entry) -> OrchestratorWorker | None:
    orchestrator = entry.member("orchestrator", "planner")
    worker = entry.member("workers", "researcher")
    parallelism, deadline_s = entry.count("parallelism", 4), entry.optional_seconds("deadline_s")
    if orchestrator is None or worker is None:
        return None
    requests, tasks, results, completed = (entry.topic(p) for p in ("requests", "tasks", "results", "completed"))
    line = entry.node.line
    agents = (
        entry.agent_spec(orchestrator.name, orchestrator.handler, (requests,), (tasks, results),
                         concurrency=orchestrator.concurrency or parallelism, line=orchestrator.line),
        entry.agent_spec(worker.name, worker.handler, (tasks,), (results,), concurrency=worker.concurrency or parallelism, line=worker.line),
        entry.agent_spec("gather", f"{__name__}:gather (runtime)", (results,), (results, completed), concurrency=parallelism,
                         tables=(TABLE,), tick_s=TICK_S),
    )
    return OrchestratorWorker(
        name=entry.name,
        kind=KIND,
        line=line,
        members=entry.members,
        topics=tuple(runtime_topic(t, parallelism, line) for t in (requests, tasks, results, completed)),
        agents=agents,
        orchestrator=orchestrator,
        worker=worker,
        parallelism=parallelism,
        deadline_s=deadline_s,
    )


def _split(pattern: OrchestratorWorker, user: Callable[..., Awaitable[Any]]) -> Handler:
    """The orchestrator: the user's handler returns subtasks; the runtime keys and publishes them."""

    async def split(event: Event, ctx: Context) -> list[Emit]:
        subtasks = [item if isinstance(item, Subtask) else Subtask(item) for item in (await user(event, ctx) or [])]
        ids = [f"{event.task_id}/{i}" for i in range(len(subtasks))]
        plan = {"subtasks": ids, "request": event.payload, "deadline_ms": deadline_ms(pattern.deadline_s)}
        return [
            Emit(pattern.topic("results"), PLANNED, plan, key=event.task_id),
            *(
                Emit(pattern.topic("tasks"), SUBTASK, {"task_id": event.task_id, "subtask_id": sub_id, "input": result_object(sub.payload)}, key=sub.key or sub_id)
                for sub_id, sub in zip(ids, subtasks, strict=True)
            ),
        ]

    return split


def _work(pattern: OrchestratorWorker, user: Callable[..., Awaitable[Any]]) -> Handler:
    """A worker: the user's handler sees the subtask's own payload and returns its result."""

    async def work(event: Event, ctx: Context) -> Emit:
        command = event.payload
        result = await user(replace(event, payload=command["input"]), ctx)
        done = {"subtask_id": command["subtask_id"], "result": result_object(result)}
        return Emit(pattern.topic("results"), SUBTASK_DONE, done, key=command["task_id"])

    return work


def _gather(pattern: OrchestratorWorker, on_complete: Callable[..., Awaitable[Any]] | None) -> Handler:
    """The runtime agent: results per task in a table, completion once all are in or the deadline passed."""

    async def gather(event: Event, ctx: AgentContext) -> list[Emit]:
        table = ctx.tables[TABLE]
        if event.type == TICK:
            overdue = [Emit(pattern.topic("results"), DEADLINE, {}, key=key) for key, state in table.items() if _overdue(state)]
            return overdue + forgettable(table, pattern.topic("results"))
        if event.type == FORGET:
            return forget(table, ctx.key)
        task_id = ctx.key or event.task_id
        state = table.get(task_id) or {"subtasks": None, "results": {}}
        if state.get("done"):
            return []  # a late or redelivered result of a finished task
        if event.type == PLANNED:
            state = {**state, **event.payload}
        elif event.type == SUBTASK_DONE:
            state = {**state, "results": {**state["results"], event.payload["subtask_id"]: event.payload["result"]}}
        elif event.type == DEADLINE and not _overdue(state):
            return []
        planned = state["subtasks"] is not None
        if planned and (event.type == DEADLINE or set(state["subtasks"]) <= set(state["results"])):
            table[task_id] = finished()
            return [await _completed(pattern, on_complete, event, ctx, task_id, state)]
        table[task_id] = state
        return []

    return gather  # type: ignore[return-value]  # the runtime passes an AgentContext


async def _completed(
    pattern: OrchestratorWorker,
    on_complete: Callable[..., Awaitable[Any]] | None,
    event: Event,
    ctx: AgentContext,
    task_id: str,
    state: JsonObject,
) -> Emit:
    results = [{"subtask_id": sid, "result": state["results"][sid]} for sid in state["subtasks"] if sid in state["results"]]
    missing = [sid for sid in state["subtasks"] if sid not in state["results"]]
    summary = {"task_id": task_id, "request": state["request"], "results": results, "missing": missing, "complete": not missing}
    result = None if on_complete is None else await on_complete(replace(event, type=COMPLETED, task_id=task_id, payload=summary), ctx)
    if result is not None:
        summary["result"] = result_object(result)
    return Emit(pattern.topic("completed"), COMPLETED, summary, key=task_id)


def _overdue(state: JsonObject) -> bool:
    deadline = state.get("deadline_ms")
    return not state.get("done") and deadline is not None and now_ms() >= deadline
