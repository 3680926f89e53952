"""Crash safety: SIGKILLed workers lose nothing and repeat no side effect that must not repeat."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from streams.edge import read_to_end
from streams.effects import TABLE
from streams.types import JsonObject
from tests.e2e.harness import Cluster, payloads_of

pytestmark = pytest.mark.e2e

EVENTS = 2000


def _world(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(kind, int(seq)) for kind, seq in (line.split() for line in path.read_text().splitlines() if line)]


def _wait_for_actions(path: Path, at_least: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(_world(path)) < at_least and time.monotonic() < deadline:
        time.sleep(0.02)


def test_two_sigkills_lose_no_event_and_repeat_no_irreversible_action(cluster: Cluster, tmp_path: Path) -> None:
    world = tmp_path / "world.log"
    env = {"E2E_WORLD_FILE": str(world)}
    rng = random.Random(20261125)
    worker = cluster.start("pay", extra_env=env)
    cluster.send("paid.in", [{"seq": i} for i in range(EVENTS)], key=lambda p: f"acct-{p['seq'] % 64}")
    for _ in range(2):
        _wait_for_actions(world, len(_world(world)) + rng.randrange(200, 1200))
        worker.kill()
        worker = cluster.start("pay", extra_env=env)

    out, unknown = _settled(cluster)

    done = {p["seq"] for p in out}
    assert done | unknown == set(range(EVENTS))  # 0 lost: a result, or a person is told
    assert not done & unknown
    actions = Counter(_world(world))
    assert max(count for (kind, _), count in actions.items() if kind == "charge") == 1  # irreversible: at most once
    assert all(actions[("charge", seq)] == 1 and actions[("receipt", seq)] >= 1 for seq in done)
    assert all(p["charge"] == f"charge-{p['seq']}" for p in out)  # a redelivery returns the recorded result
    changelog = read_to_end(cluster.profile, f"{cluster.topology.group_id('pay')}-{TABLE}-changelog")
    completed = Counter(orjson.loads(r.key or b"") for r in changelog if orjson.loads(r.value or b"null")["state"] == "done")
    assert set(completed.values()) == {1}  # the side-effect log holds each key exactly once
    assert len(completed) == 2 * len(done)  # charge and receipt of every event with a result, nothing else


def _settled(cluster: Cluster, timeout: float = 120.0) -> tuple[list[JsonObject], set[int]]:
    """Outputs and side-effect-unknown dead letters once every event has one or the other.

    Redeliveries after a crash publish some outputs twice, so counting records is not enough.
    """
    deadline = time.monotonic() + timeout
    while True:
        out = payloads_of(cluster.read("paid.out", 0, timeout=0))
        dead = cluster.read("pay.dlq", 0, timeout=0)
        unknown = {d["event"]["payload"]["seq"] for d in dead if d["dead_letter"]["category"] == "side_effect_unknown"}
        if len({p["seq"] for p in out} | unknown) >= EVENTS or time.monotonic() > deadline:
            return out, unknown
        time.sleep(1)
