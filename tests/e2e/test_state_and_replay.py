"""Tables are projections of the log: they survive restarts, rebuild from changelogs, and replays rebuild them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.harness import Cluster, payloads_of

pytestmark = pytest.mark.e2e


def _counts(cluster: Cluster, expect: int) -> list[tuple[str, int]]:
    return sorted((p["key"], p["n"]) for p in payloads_of(cluster.read("counter.out", expect)))


def test_restarted_worker_keeps_its_table_and_does_not_reprocess(cluster: Cluster) -> None:
    worker = cluster.start("counter")
    cluster.send("counter.in", [{"key": k, "seq": i} for i, k in enumerate("aabab")], key=lambda p: p["key"])
    assert len(_counts(cluster, 5)) == 5
    assert worker.stop() == 0

    cluster.start("counter")
    cluster.send("counter.in", [{"key": "a", "seq": 5}], key=lambda p: p["key"])

    counts = _counts(cluster, 6)
    assert len(counts) == 6  # nothing handled twice
    assert ("a", 4) in counts  # the table remembered a's three events


def test_table_rebuilds_from_its_changelog_when_local_state_is_deleted(cluster: Cluster) -> None:
    worker = cluster.start("counter")
    cluster.send("counter.in", [{"key": "a", "seq": i} for i in range(30)], key=lambda p: p["key"])
    assert len(_counts(cluster, 30)) == 30
    assert worker.stop() == 0
    shutil.rmtree(Path(cluster.env["KAPPA_STATE_DIR"]) / "tables")

    cluster.start("counter")
    cluster.send("counter.in", [{"key": "a", "seq": 30}], key=lambda p: p["key"])

    assert _counts(cluster, 31)[-1] == ("a", 31)


def test_replay_to_earliest_rereads_the_log_and_rebuilds_the_table(cluster: Cluster) -> None:
    worker = cluster.start("counter")
    cluster.send("counter.in", [{"key": k, "seq": i} for i, k in enumerate("abaab")], key=lambda p: p["key"])
    first = _counts(cluster, 5)
    assert worker.stop() == 0

    replay = cluster.cli("replay", "--agent", "counter", "--to-earliest", "--reset-tables")
    assert replay.returncode == 0, replay.stderr
    cluster.start("counter")

    again = _counts(cluster, 10)
    assert again == sorted(first + first)  # every event re-read, counts rebuilt from zero


def test_replay_refuses_while_the_agent_runs(cluster: Cluster) -> None:
    cluster.start("counter")
    cluster.send("counter.in", [{"key": "a", "seq": 0}], key=lambda p: p["key"])
    assert len(_counts(cluster, 1)) == 1

    replay = cluster.cli("replay", "--agent", "counter", "--to-earliest")

    assert replay.returncode == 1
    assert "stop the workers" in replay.stderr
