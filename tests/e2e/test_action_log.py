"""The action log: a task's whole story, from agents.actions alone."""

from __future__ import annotations

import pytest

from streams.actions import ActionLog
from streams.timetravel import read_log, task_story
from tests.e2e.harness import Cluster, payloads_of

pytestmark = pytest.mark.e2e


def test_multi_agent_task_story_is_reconstructed_from_the_action_log_in_causal_order(tasks_cluster: Cluster) -> None:
    cluster = tasks_cluster
    cluster.start("triage")
    cluster.start("resolver")
    cluster.send("tickets.in", [{"id": "T1", "customer": "c7", "amount": 12_000}], key=lambda p: p["customer"], event_type="ticket.opened")
    assert payloads_of(cluster.read("tickets.resolved", 1))[0]["ticket"] == "T1"

    logged = read_log(cluster.profile, ActionLog.of(cluster.topology))
    (task_id,) = {entry.action.task_id for entry in logged}
    story = [entry.action for entry in task_story(logged, task_id)]

    assert [(a.agent, a.kind) for a in story] == [
        ("triage", "TaskCreated"),
        ("triage", "TaskStateChanged"),
        ("triage", "AgentDecision"),
        ("triage", "ToolCalled"),
        ("triage", "ToolResult"),
        ("triage", "ResultEmitted"),
        ("resolver", "AgentDecision"),
        ("resolver", "ResultEmitted"),
        ("resolver", "TaskStateChanged"),
    ]
    assert [a.detail["state"] for a in story if a.kind == "TaskStateChanged"] == ["working", "completed"]
    decision = story[2].detail
    assert decision["summary"].startswith("risk: high") and decision["input_tokens"] > 0 and decision["output_tokens"] > 0
    assert story[4].detail["outcome"] == "ok" and story[4].detail["call_id"] == f"{task_id}/lookup"
    # Causal order: each action was caused by the entry event or by an event an earlier action says was emitted.
    known = {story[0].detail["event_id"]}
    for action in story:
        assert action.causation_id in known, f"{action.kind} of {action.agent} logged before its cause"
        if action.kind == "ResultEmitted":
            known |= {output["event_id"] for output in action.detail["outputs"]}
    assert story[-1].detail["reason"] == "resolver left nothing for another agent"
    tailed = cluster.read("agents.actions", len(story), timeout=5)  # what `kappa-agents tail agents.actions` prints
    assert [line["action"]["action_id"] for line in tailed] == [a.action_id for a in story]
