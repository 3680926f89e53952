"""Blackboard through the real broker: three agents converge; a late participant rebuilds the board."""

from __future__ import annotations

import time

import orjson
import pytest

from streams.edge import read_to_end
from streams.errors import BrokerError
from tests.e2e.harness import Cluster, payloads_of

pytestmark = pytest.mark.e2e


def board_of(cluster: Cluster, agent: str) -> dict:
    """The agent's board table as its changelog has it: the latest value per session (none before it starts)."""
    try:
        changelog = read_to_end(cluster.profile, f"{cluster.topology.group_id(agent)}-board-changelog")
    except BrokerError:  # the worker has not created its changelog yet
        return {}
    return {orjson.loads(record.key or b""): orjson.loads(record.value or b"null") for record in changelog}


def test_three_agents_converge_and_a_late_participant_rebuilds_the_board(patterns_cluster: Cluster) -> None:
    for agent in ("incident-logs", "incident-metrics", "incident-coordinator", "incident-keeper"):
        patterns_cluster.start(agent)
    incident = {"kind": "incident", "content": {"service": "checkout", "symptom": "p99 latency 4 s"}}
    patterns_cluster.send("incident.board", [incident], key=lambda p: "inc-1", event_type="board.entry")

    (outcome,) = payloads_of(patterns_cluster.read("incident.sessions", 1, timeout=90))

    assert outcome["reason"] == "solution" and outcome["session"] == "inc-1"
    assert outcome["solution"]["evidence"] == ["checkout: 'connection pool exhausted' x412 since 10:02", "checkout: db connections flat at 100/100"]
    assert [(e["kind"], e["author"], e["round"]) for e in outcome["entries"]][-1] == ("solution", "coordinator", 2)
    assert sorted(e["author"] for e in outcome["entries"] if e["kind"] == "finding") == ["logs", "metrics"]

    patterns_cluster.start("incident-auditor")  # joins after the session closed
    board = payloads_of(patterns_cluster.read("incident.board", len(outcome["entries"]) + 1))  # and the closing entry
    expected = board_of(patterns_cluster, "incident-keeper")
    deadline = time.monotonic() + 60
    while board_of(patterns_cluster, "incident-auditor") != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert board_of(patterns_cluster, "incident-auditor") == expected == board_of(patterns_cluster, "incident-coordinator")
    assert len(expected["inc-1"]["entries"]) == len(board) and expected["inc-1"]["closed"]
    assert all(entry.get("author") != "auditor" for entry in payloads_of(patterns_cluster.read("incident.board", 0, timeout=0)))
