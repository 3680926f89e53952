"""Orchestrator-worker through the real broker: parallel fan-out, and no subtask lost to a crash."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.harness import Cluster, payloads_of

pytestmark = pytest.mark.e2e

SLOW_MODEL = {"KAPPA_OFFLINE_LATENCY_MS": "3000"}
AGENTS = ("fanout-splitter", "fanout-gather")


def request(cluster: Cluster, parts: int, tag: str) -> None:
    cluster.send("fanout.requests", [{"parts": parts, "tag": tag}], key=lambda p: p["tag"], event_type="research.requested")


def completions(cluster: Cluster, expect: int) -> list[dict]:
    return payloads_of(cluster.read("fanout.completed", expect, timeout=90))


def completed(cluster: Cluster, expect: int, tag: str) -> dict:
    return next(c for c in completions(cluster, expect) if c["request"]["tag"] == tag)


def pids(completion: dict) -> set[int]:
    return {item["result"]["pid"] for item in completion["results"]}


def test_five_way_fan_out_of_3s_workers_completes_in_about_3s(patterns_cluster: Cluster) -> None:
    for agent in AGENTS:
        patterns_cluster.start(agent)
    patterns_cluster.start("fanout-worker", extra_env=SLOW_MODEL)
    request(patterns_cluster, 5, "warm-up")  # waits out the workers' start and group joins
    assert len(completions(patterns_cluster, 1)) == 1

    started = time.monotonic()
    request(patterns_cluster, 5, "timed")
    timed = completed(patterns_cluster, 2, "timed")
    elapsed = time.monotonic() - started

    assert timed["complete"] and timed["missing"] == []
    assert timed["result"] == {"parts": [0, 1, 2, 3, 4]}
    assert elapsed < 6.0, f"5 subtasks of 3 s each took {elapsed:.1f} s: they did not run in parallel"


def test_worker_killed_mid_task_loses_no_subtask(patterns_cluster: Cluster, tmp_path: Path) -> None:
    for agent in AGENTS:
        patterns_cluster.start(agent)
    # Two workers of one agent on one host: each needs its own state directory (RocksDB locks it).
    doomed = patterns_cluster.start("fanout-worker", extra_env={**SLOW_MODEL, "KAPPA_STATE_DIR": str(tmp_path / "a")})
    survivor = patterns_cluster.start("fanout-worker", extra_env={**SLOW_MODEL, "KAPPA_STATE_DIR": str(tmp_path / "b")})
    both = {doomed.process.pid, survivor.process.pid}
    for warm_ups in range(1, 6):  # until both workers share the subtasks: the group is stable
        request(patterns_cluster, 10, f"warm-up-{warm_ups}")
        if pids(completed(patterns_cluster, warm_ups, f"warm-up-{warm_ups}")) == both:
            break
    else:
        pytest.fail("the second worker never got a share of the subtasks")

    request(patterns_cluster, 10, "crash")
    time.sleep(1.5)  # every subtask is now inside its 3 s model call
    doomed.kill()
    crashed = completed(patterns_cluster, warm_ups + 1, "crash")

    assert crashed["complete"] and crashed["missing"] == []
    assert crashed["result"] == {"parts": list(range(10))}
    assert pids(crashed) == {survivor.process.pid}  # the doomed one's subtasks were redone


def test_deadline_survives_a_restart_and_completes_with_the_missing_ids(patterns_cluster: Cluster) -> None:
    patterns_cluster.start("partial-splitter")
    gather = patterns_cluster.start("partial-gather")
    patterns_cluster.send("partial.requests", [{"parts": 3, "tag": "no-workers"}], key=lambda p: p["tag"], event_type="research.requested")
    plan = next(p for p in payloads_of(patterns_cluster.read("partial.results", 1)) if "subtasks" in p)  # ticks pass there too
    gather.kill()  # the deadline lives in the table, not in this process
    patterns_cluster.start("partial-gather")

    (done,) = payloads_of(patterns_cluster.read("partial.completed", 1, timeout=60))

    assert (done["complete"], done["results"], done["missing"]) == (False, [], plan["subtasks"])
    assert done["result"] == {"parts": []}
