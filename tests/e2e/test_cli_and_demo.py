"""What users do from a shell: send, tail, the demo, with trace context carried across hops."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from tests.e2e.harness import REPO, Cluster, payloads_of

pytestmark = pytest.mark.e2e


def test_send_and_tail_from_the_command_line(cluster: Cluster) -> None:
    cluster.start("counter")

    sent = cluster.cli("send", "counter.in", '{"key": "cli", "seq": 7}', "--type", "test", "--key-field", "key")
    tailed = cluster.read("counter.out", 1)
    shown = cluster.cli("tail", "counter.out", "--idle", "0.5")

    assert sent.returncode == 0, sent.stderr
    assert payloads_of(tailed) == [{"key": "cli", "n": 1, "seq": 7}]
    [line] = [orjson.loads(text) for text in shown.stdout.splitlines()]
    assert line["key"] == "cli" and line["event"]["source"] == "counter"


def test_send_to_an_undeclared_topic_is_refused_with_the_topics_it_knows(cluster: Cluster) -> None:
    sent = cluster.cli("send", "counter.inn", '{"key": "x", "seq": 0}')

    assert sent.returncode == 1
    assert "topic 'counter.inn' is not declared" in sent.stderr and "counter.in" in sent.stderr


def test_trace_context_travels_from_input_to_output(cluster: Cluster) -> None:
    cluster.start("counter")
    cluster.send("counter.in", [{"key": "t", "seq": 0}], key=lambda p: p["key"])

    [incoming] = cluster.read("counter.in", 1)
    [outgoing] = cluster.read("counter.out", 1)

    trace_id = incoming["traceparent"].split("-")[1]
    assert outgoing["traceparent"].split("-")[1] == trace_id
    assert outgoing["event"]["causation_id"] == incoming["event"]["event_id"]


def test_demo_runs_to_completion_and_shows_its_results(cluster: Cluster) -> None:
    env = {**os.environ, **cluster.env, "KAPPA_OFFLINE_LATENCY_MS": "10"}

    demo = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo", "--events", "200"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=150,
    )

    assert demo.returncode == 0, demo.stdout + demo.stderr
    result = demo.stdout.split("Result")[1]
    flagged = int(result.split("flagged by fraud")[1].split()[0])
    reports = int(result.split("compliance reports")[1].split()[0])
    assert "transactions in         200" in result
    assert flagged > 0 and reports == flagged
