"""Failures as events: triage, retry levels that never block the partition, circular delegation."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Cluster, payloads_of

pytestmark = pytest.mark.e2e


def _by_seq(lines: list[dict]) -> dict[int, dict]:  # type: ignore[type-arg]
    return {line["event"]["payload"]["seq"]: line for line in lines if "event" in line}


def test_each_failure_lands_in_its_place_while_later_events_flow(failing_cluster: Cluster) -> None:
    c = failing_cluster
    worker = c.start("flaky")
    c.send_raw("work.in", b"k0", b"\xff not an event")
    c.send("work.in", [{"seq": 1, "mode": "raise"}, {"seq": 2, "mode": "sleep"}], key=lambda p: f"k{p['seq']}")
    c.send("work.in", [{"seq": s, "mode": "ok"} for s in range(3, 8)], key=lambda p: f"k{p['seq']}")

    dead = c.read("flaky.dlq", 3, timeout=90)
    out = c.read("work.out", 5)

    assert sorted(p["seq"] for p in payloads_of(out)) == [3, 4, 5, 6, 7]
    poison = [line for line in dead if "undecodable" in line]
    assert [line["dead_letter"]["category"] for line in poison] == ["poison"]
    assert poison[0]["dead_letter"]["attempts"] == "1"  # permanent: straight to the DLQ
    by_seq = _by_seq(dead)
    assert by_seq[1]["dead_letter"]["category"] == "unknown" and by_seq[1]["dead_letter"]["attempts"] == "2"
    assert "the handler broke" in by_seq[1]["dead_letter"]["error"]
    assert by_seq[2]["dead_letter"]["category"] == "tool_timeout" and by_seq[2]["dead_letter"]["attempts"] == "3"
    assert by_seq[2]["dead_letter"]["topic"] == c.topology.topic_name("work.in")
    assert max(line["timestamp"] for line in out) < by_seq[2]["timestamp"]  # nobody waited for the retries
    assert worker.alive()


def test_rate_limited_event_succeeds_on_its_second_attempt_via_the_retry_topic(failing_cluster: Cluster) -> None:
    c = failing_cluster
    c.start("flaky")
    c.send("work.in", [{"seq": 1, "mode": "rate_limit_once"}], key=lambda p: "k")

    [out] = c.read("work.out", 1)
    [retried] = c.read("flaky.retry.1", 1)

    assert payloads_of([out]) == [{"seq": 1, "attempt": 1}]
    retry = retried["retry"]
    assert retry["category"] == "rate_limited" and retry["attempt"] == "1"
    assert int(retry["due_ms"]) - int(retry["first_failure_ms"]) == 500  # level 1's delay
    assert out["timestamp"] >= int(retry["due_ms"])  # the second attempt waited for it
    assert c.read("flaky.dlq", 0, timeout=0) == []


def test_circular_delegation_is_stopped_and_dead_lettered(failing_cluster: Cluster) -> None:
    c = failing_cluster
    c.start("ping")
    c.start("pong")
    c.send("ping", [{"hop": 0}], key=lambda p: "loop", event_type="bounce")

    [dead] = c.read("ping.dlq", 1)

    assert dead["dead_letter"]["category"] == "circular_delegation"
    assert "ping -> pong -> ping" in dead["dead_letter"]["error"]
    assert [p["hop"] for p in payloads_of(c.read("pong", 1))] == [1]
