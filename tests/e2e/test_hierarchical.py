"""Hierarchical through the real broker: a 3-level tree rolls up to its root and leaves no child state."""

from __future__ import annotations

import orjson
import pytest

from streams.edge import read_to_end
from tests.e2e.harness import Cluster, payloads_of

pytestmark = pytest.mark.e2e


def test_three_level_tree_rolls_every_result_up_and_tombstones_its_children(patterns_cluster: Cluster) -> None:
    for agent in ("tree-root", "tree-branch", "tree-leaf", "tree-supervisor"):
        patterns_cluster.start(agent)
    patterns_cluster.send("tree.requests", [{"levels": ["branch", "leaf"], "fan_out": 3}], key=lambda p: "incident-1", event_type="tree.requested")

    (done,) = payloads_of(patterns_cluster.read("tree.completed", 1, timeout=90))

    assert done["result"] == {"leaves": sorted(f"r.{b}.{leaf}" for b in range(3) for leaf in range(3))}
    spawned = payloads_of(patterns_cluster.read("tree.events", 4))
    assert sorted(len(p["children"]) for p in spawned if "children" in p) == [3, 3, 3, 3]  # root -> 3 -> 9
    changelog = read_to_end(patterns_cluster.profile, f"{patterns_cluster.topology.group_id('tree-supervisor')}-nodes-changelog")
    last = {orjson.loads(record.key or b""): record.value for record in changelog}
    root = next(key for key in last if "/" not in key)
    assert len(last) == 13  # root, 3 branches, 9 leaves: each had an entry while it ran...
    assert {value for key, value in last.items() if key != root} == {None}  # ...each child's is a tombstone now...
    assert orjson.loads(last[root] or b"null")["done"]  # ...and the root keeps a marker until it is forgotten
