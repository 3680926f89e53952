"""The read side: projections folded from agents.actions, rebuilt from scratch, queried from any worker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.harness import Cluster
from tests.e2e.read_side import completed, get, send_tickets, start_projections, table_bytes, until

pytestmark = pytest.mark.e2e


def test_projections_rebuilt_from_scratch_equal_the_live_ones(tasks_cluster: Cluster) -> None:
    cluster, port = tasks_cluster, free_port()
    cluster.start("triage")
    cluster.start("resolver")
    projections = start_projections(cluster, port)
    send_tickets(cluster, [{"id": f"T{i}", "customer": f"c{i}", "amount": 500 * i} for i in range(1, 5)])
    tasks = until("4 completed tasks", lambda: completed(port, 4))
    # The same task entering again after it completed: an illegal completed -> working, rejected.
    send_tickets(cluster, [{"id": "T1-again", "customer": "c1", "amount": 1}], task_id=tasks[0]["task_id"])
    events = until("the rejection", lambda: [e for e in get(port, f"/tasks/{tasks[0]['task_id']}/events")[1]["events"] if e["kind"] == "TransitionRejected"])
    assert events[0]["detail"] == {"from_state": "completed", "to_state": "working", "rejected_action_id": events[0]["causation_id"]}
    time.sleep(2)  # let the re-sent ticket's remaining actions land
    live = {path: get(port, path)[1] for path in ("/tasks", "/agents")}
    assert live["/agents"]["triage"]["events_handled"] == 5 and live["/agents"]["resolver"]["tokens"] > 0
    assert projections.stop() == 0
    tables = Path(cluster.env["KAPPA_STATE_DIR"]) / "tables" / cluster.topology.group_id("projections")
    live_tables = table_bytes(tables)
    assert sum(len(entries) for entries in live_tables.values()) >= 4 + 2  # four tasks, two agents' shards

    rebuild = cluster.cli("projections", "rebuild")
    assert rebuild.returncode == 0, rebuild.stderr
    assert not tables.exists()
    rebuilt = start_projections(cluster, port)
    until("the rebuilt views", lambda: all(get(port, path)[1] == live[path] for path in live))
    assert rebuilt.stop() == 0

    assert table_bytes(tables) == live_tables
    assert get(port, f"/tasks/{tasks[0]['task_id']}")[0] == 0  # nothing answers: the views came from the stopped worker
