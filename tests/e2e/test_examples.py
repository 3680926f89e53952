"""``make run EXAMPLE=<pattern>``: each example runs end to end and shows who did what, then the result."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from tests.e2e.harness import REPO

pytestmark = pytest.mark.e2e

FINALS = {
    "orchestrator-worker": ("research.completed", 1, "research-researcher", lambda f: f["complete"] and len(f["sections"]) == 5),
    "hierarchical": ("outage.completed", 1, "outage-host", lambda f: f["hosts inspected"] == 9 and f["high risk"] == ["ap-2", "eu-2", "us-2"]),
    "market": ("jobs.results", 20, "jobs-maker", lambda f: "solver" in f),
    "blackboard": ("incident.sessions", 1, "incident-coordinator", lambda f: f["reason"] == "solution"),
}


@pytest.mark.parametrize("name", list(FINALS))
def test_example_runs_and_shows_each_step_and_the_final_result(name: str, kappa_env: dict[str, str]) -> None:
    topic, count, actor, check = FINALS[name]

    run = subprocess.run(
        [sys.executable, "-m", "streams.cli", "example", name],
        env={**os.environ, **kappa_env}, cwd=REPO, capture_output=True, text=True, timeout=150,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    steps, final = run.stdout.split(f"Final result ({count} on {topic}):")
    assert f"{actor} -> " in steps  # who did what, line by line
    finals = [orjson.loads(line) for line in final.split("\n") if line.strip()]
    assert len(finals) == count and all(check(f) for f in finals)
