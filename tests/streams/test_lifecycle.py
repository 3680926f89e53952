"""The read side's folds: the A2A task lifecycle as a state machine, per-agent activity."""

from __future__ import annotations

from typing import Any

from streams.actions import Action
from streams.lifecycle import fold_agent, fold_task, fold_tasks, merge_agents


def _action(n: int, kind: str, detail: dict[str, Any], agent: str = "triage") -> Action:
    return Action(f"a{n}", "task-1", "c", "e", agent, 1000 + n, kind, detail)


def _state(n: int, state: str, agent: str = "triage") -> Action:
    return _action(n, "TaskStateChanged", {"state": state, "reason": f"to {state}"}, agent)


def test_a_task_moves_through_the_a2a_states_and_keeps_its_history() -> None:
    tasks = fold_tasks([_state(1, "working"), _state(2, "input-required"), _state(3, "working"), _state(4, "completed")])

    task = tasks["task-1"]
    assert task["state"] == "completed"
    assert [(h["from"], h["to"]) for h in task["history"]] == [
        ("submitted", "working"), ("working", "input-required"), ("input-required", "working"), ("working", "completed"),
    ]


def test_an_illegal_transition_is_rejected_with_an_error_event_and_not_applied() -> None:
    done = fold_tasks([_state(1, "working"), _state(2, "completed")])["task-1"]

    folded = fold_task(done, _state(3, "working", agent="resolver"))

    assert folded.view["state"] == "completed"
    assert folded.rejection is not None and folded.rejection.kind == "TransitionRejected"
    assert folded.rejection.detail == {"from_state": "completed", "to_state": "working", "rejected_action_id": "a3"}
    assert folded.view["rejected_transitions"][0]["agent"] == "resolver"
    assert fold_task(done, _state(3, "working")).rejection == folded.rejection  # deterministic: a rebuild rejects alike


def test_redelivered_actions_and_repeated_states_change_nothing() -> None:
    once = fold_tasks([_state(1, "working"), _action(2, "TaskFailed", {"category": "unknown", "error": "x", "attempt": 0, "final": False})])
    twice = fold_tasks([_state(1, "working"), _state(1, "working"), _state(5, "working"),
                        _action(2, "TaskFailed", {"category": "unknown", "error": "x", "attempt": 0, "final": False})])

    assert once["task-1"]["failures"] == twice["task-1"]["failures"] == 1
    assert len(twice["task-1"]["history"]) == 1
    assert fold_task(twice["task-1"], _state(1, "working")).duplicate


def test_agent_activity_counts_events_failures_tokens_and_sums_across_partitions() -> None:
    decision = {"model": "m", "prompt_digest": "d", "summary": "s", "input_tokens": 10, "output_tokens": 5, "duration_ms": 1}
    left = fold_agent(fold_agent(None, _action(1, "AgentDecision", decision)), _action(2, "ResultEmitted", {"input_topic": "t", "outputs": []}))
    right = fold_agent(None, _action(7, "TaskFailed", {"category": "poison", "error": "x", "attempt": 0, "final": True}))

    assert merge_agents([left, right]) == {
        "triage": {"agent": "triage", "events_handled": 1, "failures": {"poison": 1}, "tokens": 15, "last_seen": 1007},
    }
