"""Crash safety: SIGKILLed workers lose nothing and repeat no side effect that must not repeat."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.e2e.harness import Cluster
from tests.e2e.world import actions, assert_each_paid_once, wait_for_actions

pytestmark = pytest.mark.e2e

EVENTS = 2000


def test_two_sigkills_lose_no_event_and_repeat_no_irreversible_action(cluster: Cluster, tmp_path: Path) -> None:
    world = tmp_path / "world.log"
    env = {"E2E_WORLD_FILE": str(world)}
    rng = random.Random(20261125)
    worker = cluster.start("pay", extra_env=env)
    cluster.send("paid.in", [{"seq": i} for i in range(EVENTS)], key=lambda p: f"acct-{p['seq'] % 64}")
    for _ in range(2):
        wait_for_actions(world, len(actions(world)) + rng.randrange(200, 1200))
        worker.kill()
        worker = cluster.start("pay", extra_env=env)

    assert_each_paid_once(cluster, world, EVENTS)
