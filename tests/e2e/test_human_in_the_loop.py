"""Human in the loop: a task parked for a person's answer, durably, across a restart of every worker."""

from __future__ import annotations

import time

import pytest

from streams.actions import Action, ActionLog
from streams.timetravel import read_log, task_story
from streams.producer import publish
from streams.envelope import encode
from streams.human import answer_event
from streams.lifecycle import fold_tasks
from streams.records import Record
from tests.e2e.harness import Cluster, payloads_of
from tests.e2e.read_side import until

pytestmark = pytest.mark.e2e


def story(cluster: Cluster, task_id: str) -> list[Action]:
    return [entry.action for entry in task_story(read_log(cluster.profile, ActionLog.of(cluster.topology), task_id), task_id)]


def questions(cluster: Cluster) -> list[Action]:
    return [e.action for e in read_log(cluster.profile, ActionLog.of(cluster.topology)) if e.action.kind == "HumanInputRequested"]


def test_a_task_paused_for_human_input_survives_a_restart_of_all_workers_and_resumes_when_answered(tasks_cluster: Cluster) -> None:
    cluster = tasks_cluster
    worker = cluster.start("approver")
    refunds = [{"id": "R1", "customer": "c1", "amount": 900}, {"id": "R2", "customer": "c1", "amount": 50}]
    cluster.send("refunds.in", refunds, key=lambda p: p["customer"], event_type="refund.requested")
    # Both refunds wait at once, though they share a key: nothing blocks while a task waits.
    asked = until("both questions", lambda: len(q := questions(cluster)) == 2 and q)
    first = next(q for q in asked if "900" in q.detail["question"])
    assert fold_tasks(story(cluster, first.task_id))[first.task_id]["state"] == "input-required"

    wrong = cluster.cli("task", "respond", first.task_id, '{"approve": "yes"}')
    assert wrong.returncode == 1 and "does not match the question's schema" in wrong.stderr and "keeps waiting" in wrong.stderr
    # Any producer may answer; a wrong answer that gets past the CLI is refused by the runtime.
    bad = answer_event(first.task_id, {"approve": 1}, requested_by=first.action_id, timestamp=int(time.time() * 1000))
    reply = cluster.topology.topic_name(first.detail["reply_topic"])
    publish(cluster.profile, [Record(reply, b"c1", encode(bad), [], first.detail["reply_partition"])])
    refused = until("the refusal", lambda: [a for a in story(cluster, first.task_id) if a.kind == "HumanInputRejected"])
    assert "does not match" in refused[0].detail["reason"]
    assert fold_tasks(story(cluster, first.task_id))[first.task_id]["state"] == "input-required"

    assert worker.stop() == 0  # every worker of the agent goes away; the continuation stays in its table
    cluster.start("approver")
    answered = cluster.cli("task", "respond", first.task_id, '{"approve": true, "note": "known customer"}')
    assert answered.returncode == 0, answered.stderr

    [decided] = payloads_of(cluster.read("refunds.decided", 1))
    after = story(cluster, first.task_id)
    [advice] = [a for a in after if a.kind == "AgentDecision"]  # the resumed call replayed it, unpaid
    assert decided == {"id": "R1", "approved": True, "note": "known customer", "advice": advice.detail["summary"]}
    assert [a.detail["state"] for a in after if a.kind == "TaskStateChanged"] == ["working", "input-required", "working", "completed"]
    assert fold_tasks(story(cluster, asked[1 - asked.index(first)].task_id)).popitem()[1]["state"] == "input-required"
    again = cluster.cli("task", "respond", first.task_id, '{"approve": false, "note": "too late"}')
    assert again.returncode == 1 and "not waiting for an answer" in again.stderr


def test_an_unanswered_question_fails_or_escalates_the_task_by_its_timeout_policy(tasks_cluster: Cluster) -> None:
    cluster = tasks_cluster
    cluster.start("approver")
    refunds = [
        {"id": "R3", "customer": "c3", "amount": 10, "timeout_s": 1.0, "on_timeout": "fail"},
        {"id": "R4", "customer": "c4", "amount": 20, "timeout_s": 1.0, "on_timeout": "escalate"},
    ]
    cluster.send("refunds.in", refunds, key=lambda p: p["customer"], event_type="refund.requested")
    asked_first = until("both questions", lambda: len(q := questions(cluster)) == 2 and q)
    first = {q.detail["question"].split()[-1].rstrip("?"): q for q in asked_first}

    def finished(task_id: str) -> list[Action]:
        actions = story(cluster, task_id)
        return actions if fold_tasks(actions)[task_id]["state"] == "failed" else []

    failed = until("the failed task", lambda: finished(first["c3"].task_id), timeout=30)
    escalated = until("the escalated task to fail", lambda: finished(first["c4"].task_id), timeout=30)

    assert [a.detail["category"] for a in failed if a.kind == "TaskFailed"] == ["human_timeout"]
    asked = [a.detail["question"] for a in escalated if a.kind == "HumanInputRequested"]
    assert asked == ["Approve a refund of 20 to c4?", "[escalated] Approve a refund of 20 to c4?"]
    assert [a.detail["state"] for a in escalated if a.kind == "TaskStateChanged"] == ["working", "input-required", "input-required", "failed"]
    assert cluster.read("refunds.decided", 0, timeout=0) == []
