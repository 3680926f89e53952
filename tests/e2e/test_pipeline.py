"""Events in, results out, bad input to the dead-letter topic: through the real broker."""

from __future__ import annotations

import base64

import pytest

from tests.e2e.harness import Cluster, payloads_of

pytestmark = pytest.mark.e2e


def test_events_in_results_out_with_table_state(cluster: Cluster) -> None:
    cluster.start("counter")
    cluster.send("counter.in", [{"key": k, "seq": i} for i, k in enumerate("abab")], key=lambda p: p["key"])

    out = payloads_of(cluster.read("counter.out", 4))

    assert sorted((p["key"], p["n"]) for p in out) == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]


def test_poison_message_lands_on_dlq_with_reason_while_next_event_is_processed(cluster: Cluster) -> None:
    worker = cluster.start("counter")
    cluster.send_raw("counter.in", b"a", b"\x00\x01not an event")
    cluster.send("counter.in", [{"key": "a", "seq": 1}], key=lambda p: p["key"])

    dead = cluster.read("counter.dlq", 1)
    out = payloads_of(cluster.read("counter.out", 1))

    assert [p["seq"] for p in out] == [1]
    assert len(dead) == 1
    assert dead[0]["dead_letter"]["category"] == "poison"
    assert dead[0]["dead_letter"]["topic"] == cluster.topology.topic_name("counter.in")
    assert "not an event" in dead[0]["dead_letter"]["error"]
    assert base64.b64decode(dead[0]["undecodable"]["value_base64"]) == b"\x00\x01not an event"
    assert worker.alive()


def test_json_edge_event_missing_a_field_is_dead_lettered_not_dropped(cluster: Cluster) -> None:
    cluster.start("counter")
    cluster.send_raw("counter.in", b"k", b'{"payload": {"key": "k", "seq": 0}}')
    cluster.send_raw("counter.in", b"k", b'{"type": "test", "payload": {"key": "k", "seq": 1}}')

    dead = cluster.read("counter.dlq", 1)
    out = payloads_of(cluster.read("counter.out", 1))

    assert "missing field 'type'" in dead[0]["dead_letter"]["error"]
    assert [(p["key"], p["seq"]) for p in out] == [("k", 1)]
