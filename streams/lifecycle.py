"""The read side's folds: a task's A2A lifecycle and each agent's activity, from actions alone.

Pure functions from (view so far, action) to the next view, so the live
projections (``streams.projections``), a rebuild from scratch and time travel
(``kappa-agents task state --at``) all compute the same thing. Views are plain
JSON-able dicts: they are what the tables store and what the queries return.

The task lifecycle follows A2A: ``submitted → working → input-required →
completed | failed | canceled`` plus ``rejected``. A ``TaskStateChanged`` that
would break it is not applied: the fold answers with a ``TransitionRejected``.
Asking for the state a task is already in is a redelivery, not a transition.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streams.actions import Action
from streams.topology import PROJECTIONS

TERMINAL = frozenset({"completed", "failed", "canceled", "rejected"})
TRANSITIONS: Mapping[str, frozenset[str]] = {
    "submitted": frozenset({"working", "rejected", "failed", "canceled"}),
    "working": frozenset({"input-required", "completed", "failed", "canceled"}),
    "input-required": frozenset({"working", "failed", "canceled"}),
    **{state: frozenset() for state in TERMINAL},
}
STATES = tuple(TRANSITIONS)
_REJECTION_IDS = uuid.UUID("5d0f2b8e-9c41-4e7a-a3b6-2f8e1c0d4a57")

View = dict[str, Any]


@dataclass(frozen=True)
class Folded:
    """A task view after one action, and the rejection to publish if the action broke the lifecycle."""

    view: View
    rejection: Action | None = None
    duplicate: bool = False
    """The action was folded before (a redelivery): nothing changed, nothing else may count it."""


def new_task(action: Action) -> View:
    return {
        "task_id": action.task_id,
        "state": "submitted",
        "created_at": action.timestamp,
        "updated_at": action.timestamp,
        "agents": [],
        "tokens": 0,
        "failures": 0,
        "history": [],
        "rejected_transitions": [],
        "events": [],
    }


def fold_task(view: View | None, action: Action) -> Folded:
    """The task after ``action``; an action already folded (a redelivery) changes nothing."""
    task = new_task(action) if view is None else view
    if any(seen["action_id"] == action.action_id for seen in task["events"]):
        return Folded(task, duplicate=True)
    task = {**task, "events": [*task["events"], action.as_json()], "updated_at": max(task["updated_at"], action.timestamp)}
    if action.agent != PROJECTIONS and action.agent not in task["agents"]:
        task["agents"] = [*task["agents"], action.agent]
    if action.kind == "AgentDecision":
        task["tokens"] += action.detail["input_tokens"] + action.detail["output_tokens"]
    elif action.kind == "TaskFailed":
        task["failures"] += 1
    elif action.kind == "TaskStateChanged":
        return _transition(task, action)
    return Folded(task)


def fold_tasks(actions: Iterable[Action]) -> dict[str, View]:
    """Every task the actions mention, folded in order (time travel and rebuild checks)."""
    tasks: dict[str, View] = {}
    for action in actions:
        tasks[action.task_id] = fold_task(tasks.get(action.task_id), action).view
    return tasks


def summary(task: View) -> View:
    """A task without its event list: what listings show."""
    return {k: v for k, v in task.items() if k != "events"}


def task_view(task: View) -> View:
    """What ``GET /tasks/ID`` and ``kappa-agents task show`` answer: the summary and the decisions made."""
    return {**summary(task), "decisions": decisions(task["events"])}


def decisions(events: Sequence[View]) -> list[View]:
    """Each model decision with the event the agent was handling and the topic that event came from."""
    topic_of: dict[str, str] = {}
    made = []
    for event in events:
        detail = event["detail"]
        if event["kind"] == "TaskCreated":
            topic_of[detail["event_id"]] = detail["topic"]
        elif event["kind"] == "ResultEmitted":
            topic_of |= {output["event_id"]: output["topic"] for output in detail["outputs"]}
        elif event["kind"] == "AgentDecision":
            made.append({
                "agent": event["agent"],
                "at": event["timestamp"],
                "model": detail["model"],
                "prompt_digest": detail["prompt_digest"],
                "summary": detail["summary"],
                "tokens": detail["input_tokens"] + detail["output_tokens"],
                "input_event": event["causation_id"],
                "input_topic": topic_of.get(event["causation_id"] or "", "?"),
            })
    return made


def fold_agent(stats: View | None, action: Action) -> View:
    """One agent's activity after ``action`` (which that agent took)."""
    now = dict(stats or {"agent": action.agent, "events_handled": 0, "failures": {}, "tokens": 0, "last_seen": 0})
    now["last_seen"] = max(now["last_seen"], action.timestamp)
    if action.kind == "ResultEmitted":
        now["events_handled"] += 1
    elif action.kind == "AgentDecision":
        now["tokens"] += action.detail["input_tokens"] + action.detail["output_tokens"]
    elif action.kind == "TaskFailed":
        category = action.detail["category"]
        now["failures"] = {**now["failures"], category: now["failures"].get(category, 0) + 1}
    return now


def merge_agents(shards: Iterable[View]) -> dict[str, View]:
    """Per-agent views kept per partition, summed into one view per agent."""
    merged: dict[str, View] = {}
    for shard in shards:
        into = merged.setdefault(shard["agent"], {"agent": shard["agent"], "events_handled": 0, "failures": {}, "tokens": 0, "last_seen": 0})
        into["events_handled"] += shard["events_handled"]
        into["tokens"] += shard["tokens"]
        into["last_seen"] = max(into["last_seen"], shard["last_seen"])
        for category, n in shard["failures"].items():
            into["failures"][category] = into["failures"].get(category, 0) + n
    return dict(sorted(merged.items()))


def _transition(task: View, action: Action) -> Folded:
    current, wanted = task["state"], action.detail["state"]
    if wanted == current:
        return Folded(task)
    step = {"from": current, "to": wanted, "at": action.timestamp, "action_id": action.action_id, "agent": action.agent, "reason": action.detail["reason"]}
    if wanted in TRANSITIONS.get(current, frozenset()):
        return Folded({**task, "state": wanted, "history": [*task["history"], step]})
    rejection = Action(
        str(uuid.uuid5(_REJECTION_IDS, action.action_id)), action.task_id, action.correlation_id, action.action_id,
        PROJECTIONS, action.timestamp, "TransitionRejected",
        {"from_state": current, "to_state": wanted, "rejected_action_id": action.action_id},
    )
    return Folded({**task, "rejected_transitions": [*task["rejected_transitions"], step]}, rejection)
