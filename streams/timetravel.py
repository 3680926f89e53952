"""Reading the action log, and time travel over one task: its views at any point, never from live tables.

``kappa-agents task show|history|state`` read the task's partition of
``agents.actions`` and fold it with the projections' own functions
(``streams.lifecycle``), so what they print is what the query views answer,
and ``--at``/``--at-offset`` stop the fold at a time or log offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from streams.actions import Action, ActionLog, task_partition
from streams.broker import BrokerProfile
from streams.edge import read_to_end
from streams.errors import KappaError
from streams.lifecycle import View, fold_task, task_view


@dataclass(frozen=True)
class Cutoff:
    """Where to stop folding: at a time (epoch ms, inclusive), at a log offset (inclusive), or never."""

    at_ms: int | None = None
    at_offset: int | None = None

    def includes(self, entry: Logged) -> bool:
        if self.at_ms is not None and entry.action.timestamp > self.at_ms:
            return False
        return self.at_offset is None or entry.offset <= self.at_offset

    @classmethod
    def of(cls, at: datetime | None, at_offset: int | None) -> Cutoff:
        if at is not None and at.utcoffset() is None:
            raise KappaError(f"--at {at.isoformat()} has no timezone; give one, e.g. {at.isoformat()}+00:00")
        return cls(None if at is None else int(at.timestamp() * 1000), at_offset)


@dataclass(frozen=True)
class Logged:
    """An action and where it sits in the log."""

    partition: int
    offset: int
    action: Action


def read_log(profile: BrokerProfile, log: ActionLog, task_id: str | None = None) -> list[Logged]:
    """The action log as it is now, in log order per partition; with ``task_id``, only that task's partition."""
    only = None if task_id is None else task_partition(task_id, log.partitions)
    return [
        Logged(record.origin.partition, record.origin.offset, log.codec.decode(record.value))
        for record in read_to_end(profile, log.topic, only)
    ]


def task_story(logged: Iterable[Logged], task_id: str) -> list[Logged]:
    """One task's actions in log order, duplicates (redeliveries) dropped."""
    seen: set[str] = set()
    story = []
    for entry in logged:
        if entry.action.task_id == task_id and entry.action.action_id not in seen:
            seen.add(entry.action.action_id)
            story.append(entry)
    return story


def load_story(profile: BrokerProfile, log: ActionLog, task_id: str) -> list[Logged]:
    """The task's actions in log order; KappaError when the log never mentions it."""
    story = task_story(read_log(profile, log, task_id), task_id)
    if not story:
        raise KappaError(f"no task {task_id!r} in {log.topic}; `kappa-agents tail {log.topic}` lists what is there")
    return story


def task_at(story: Sequence[Logged], cutoff: Cutoff = Cutoff()) -> View:
    """The task view after folding the actions up to ``cutoff``, with the decisions made so far and their inputs."""
    view: View | None = None
    for entry in story:
        if cutoff.includes(entry):
            view = fold_task(view, entry.action).view
    if view is None:
        raise KappaError(f"task {story[0].action.task_id!r} did not exist yet at that point (its first action is at offset {story[0].offset})")
    return task_view(view)


def history_lines(story: Sequence[Logged]) -> list[str]:
    """Every state the task passed through and the action that caused it (refused transitions too)."""
    view: View | None = None
    lines = []
    for entry in story:
        folded = fold_task(view, entry.action)
        view = folded.view
        action = entry.action
        if action.kind == "TaskCreated":
            lines.append(_line(entry, f"submitted      by {action.detail['event_type']} on {action.detail['topic']} (event {action.detail['event_id']})"))
        elif folded.rejection is not None:
            lines.append(_line(entry, f"REFUSED {folded.rejection.detail['from_state']} -> {folded.rejection.detail['to_state']} asked by {action.agent}"))
        elif action.kind == "TaskStateChanged" and view["history"] and view["history"][-1]["action_id"] == action.action_id:
            step = view["history"][-1]
            lines.append(_line(entry, f"{step['to']:<14} by {action.agent}: {step['reason']} (caused by event {action.causation_id})"))
    return lines


def show_lines(task: View) -> list[str]:
    """A task view for a person."""
    head = [
        f"task {task['task_id']}: {task['state']}",
        f"  created {_iso(task['created_at'])}, last action {_iso(task['updated_at'])}",
        f"  agents: {', '.join(task['agents']) or '(none yet)'}; tokens: {task['tokens']}; failures: {task['failures']}",
    ]
    steps = [f"  {_iso(h['at'])}  {h['from']} -> {h['to']} ({h['agent']}: {h['reason']})" for h in task["history"]]
    refused = [f"  refused {r['from']} -> {r['to']} asked by {r['agent']}" for r in task["rejected_transitions"]]
    decisions = [
        f"  decision by {d['agent']} ({d['model']}, {d['tokens']} tokens) on event {d['input_event']} from {d['input_topic']}: {d['summary']}"
        for d in task.get("decisions", [])
    ]
    return [*head, *steps, *refused, *decisions]


def _line(entry: Logged, text: str) -> str:
    return f"{_iso(entry.action.timestamp)}  offset {entry.offset:>6}  {text}"


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")

