"""The ``pay`` agent's world (E2E_WORLD_FILE) and the checks every crash test makes on it.

``pay`` charges a card (irreversible) and sends a receipt (reversible) per event,
appending ``<kind> <seq>`` to the world file as each action runs. Whatever
crashed (a worker, the broker), afterwards every event has a result or a
``side_effect_unknown`` dead letter, no charge ran twice, and the side-effect
log holds each completed key once.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson

from streams.edge import read_to_end
from streams.effects import TABLE
from streams.types import JsonObject
from tests.e2e.harness import Cluster, payloads_of


def actions(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(kind, int(seq)) for kind, seq in (line.split() for line in path.read_text().splitlines() if line)]


def wait_for_actions(path: Path, at_least: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(actions(path)) < at_least and time.monotonic() < deadline:
        time.sleep(0.02)


def assert_each_paid_once(cluster: Cluster, world: Path, events: int, timeout: float = 120.0) -> None:
    """0 lost, no irreversible action twice, redeliveries answered from the side-effect log."""
    out, unknown = _settled(cluster, events, timeout)

    done = {p["seq"] for p in out}
    lost = set(range(events)) - done - unknown
    assert not lost, f"{len(lost)} event(s) have neither a result nor a dead letter: {sorted(lost)[:20]}"  # a person is told
    assert not done & unknown
    ran = Counter(actions(world))
    assert max(count for (kind, _), count in ran.items() if kind == "charge") == 1  # irreversible: at most once
    assert all(ran[("charge", seq)] == 1 and ran[("receipt", seq)] >= 1 for seq in done)
    assert all(p["charge"] == f"charge-{p['seq']}" for p in out)  # a redelivery returns the recorded result
    changelog = read_to_end(cluster.profile, f"{cluster.topology.group_id('pay')}-{TABLE}-changelog")
    # A changelog write the broker stored but could not acknowledge before it died is sent again
    # (faust's producer is at-least-once on Tansu): the same record twice, not a second action.
    written = {(r.key, r.value) for r in changelog if orjson.loads(r.value or b"null")["state"] == "done"}
    completed = Counter(orjson.loads(key or b"") for key, _ in written)
    assert set(completed.values()) == {1}  # the side-effect log holds each key exactly once, with one result
    assert len(completed) == 2 * len(done)  # charge and receipt of every event with a result, nothing else


def _settled(cluster: Cluster, events: int, timeout: float) -> tuple[list[JsonObject], set[int]]:
    """Outputs and side-effect-unknown dead letters once every event has one or the other.

    Redeliveries after a crash publish some outputs twice, so counting records is not enough.
    """
    deadline = time.monotonic() + timeout
    while True:
        out = payloads_of(cluster.read("paid.out", 0, timeout=0))
        dead = cluster.read("pay.dlq", 0, timeout=0)
        unknown = {d["event"]["payload"]["seq"] for d in dead if d["dead_letter"]["category"] == "side_effect_unknown"}
        if len({p["seq"] for p in out} | unknown) >= events or time.monotonic() > deadline:
            return out, unknown
        time.sleep(1)
