"""Queries (CQRS): HTTP views answer from any worker; the task CLI folds the log for time travel."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from streams.actions import ActionLog
from streams.timetravel import read_log
from tests.conftest import free_port
from tests.e2e.harness import Cluster
from tests.e2e.read_side import completed, get, send_tickets, start_projections, until

pytestmark = pytest.mark.e2e


def test_query_views_answer_from_any_worker_when_two_workers_split_the_partitions(tasks_cluster: Cluster, tmp_path: Path) -> None:
    cluster, ports = tasks_cluster, (free_port(), free_port())
    cluster.start("triage")
    cluster.start("resolver")
    for n, port in enumerate(ports):  # two workers on one host: a port and a state directory each
        start_projections(cluster, port, KAPPA_STATE_DIR=str(tmp_path / f"worker-{n}"))
    send_tickets(cluster, [{"id": f"T{i}", "customer": f"c{i}", "amount": 100 * i} for i in range(8)])

    tasks = until("8 completed tasks", lambda: completed(ports[0], 8))
    local = until("the partitions split", lambda: all(get(p, "/tasks?local=1")[1] for p in ports) and [get(p, "/tasks?local=1")[1] for p in ports])
    assert sorted(t["task_id"] for part in local for t in part) == sorted(t["task_id"] for t in tasks)  # each task on one worker
    for task in tasks:
        answers = [get(port, f"/tasks/{task['task_id']}") for port in ports]
        assert answers[0] == answers[1] and answers[0][0] == 200
        assert answers[0][1]["state"] == "completed" and [d["agent"] for d in answers[0][1]["decisions"]] == ["triage", "resolver"]
        events = [get(port, f"/tasks/{task['task_id']}/events")[1]["events"] for port in ports]
        assert events[0] == events[1] and events[0][0]["kind"] == "TaskCreated"
    assert get(ports[0], "/tasks?state=completed") == get(ports[1], "/tasks?state=completed")
    agents = [get(port, "/agents") for port in ports]
    assert agents[0] == agents[1] and agents[0][1]["triage"]["events_handled"] == 8
    assert get(ports[1], "/tasks/no-such-task")[0] == 404
    assert get(ports[0], "/tasks?state=done")[0] == 400

    shown = cluster.cli("task", "show", tasks[0]["task_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert orjson.loads(shown.stdout) == get(ports[1], f"/tasks/{tasks[0]['task_id']}")[1]


def test_task_history_and_state_at_a_point_are_folded_from_the_log(tasks_cluster: Cluster) -> None:
    cluster = tasks_cluster
    cluster.start("triage")
    cluster.start("resolver")
    send_tickets(cluster, [{"id": "T1", "customer": "c1", "amount": 20_000}])
    until("the resolution", lambda: cluster.read("tickets.resolved", 1, timeout=1))
    (task_id,) = {entry.action.task_id for entry in read_log(cluster.profile, ActionLog.of(cluster.topology))}

    history = cluster.cli("task", "history", task_id)
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert [line.split()[3] for line in lines] == ["submitted", "working", "completed"]
    working_offset = int(re.search(r"offset\s+(\d+)", lines[1]).group(1))  # type: ignore[union-attr]

    then = orjson.loads(cluster.cli("task", "state", task_id, "--at-offset", str(working_offset), "--json").stdout)
    assert then["state"] == "working" and then["decisions"] == []
    completed_at = datetime.fromisoformat(lines[2].split()[0])
    done = orjson.loads(cluster.cli("task", "state", task_id, "--at", completed_at.isoformat(), "--json").stdout)
    assert done["state"] == "completed" and [d["input_topic"] for d in done["decisions"]] == ["tickets.in", "tickets.triaged"]
    before = cluster.cli("task", "state", task_id, "--at", (datetime.fromisoformat(lines[0].split()[0]) - timedelta(seconds=1)).isoformat())
    assert before.returncode == 1 and "did not exist yet" in before.stderr
    shown = cluster.cli("task", "show", task_id)
    assert f"task {task_id}: completed" in shown.stdout and "working -> completed" in shown.stdout

    missing = cluster.cli("task", "show", "no-such-task")
    assert missing.returncode == 1 and "no task 'no-such-task'" in missing.stderr
