"""Dead letters as operational tooling: ``kappa-agents dlq list / show / redrive / purge`` on a real broker."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, datetime

import pytest

from tests.e2e.harness import Cluster, payloads_of

pytestmark = pytest.mark.e2e

POISON = b"\xff not an event"


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def _depth(listed: str, agent: str = "flaky") -> str:
    [line] = [line for line in listed.splitlines() if line.startswith(f"depth {agent}: ")]
    return line.removeprefix(f"depth {agent}: ")


def _letters(listed: str) -> list[str]:
    return [line for line in listed.splitlines() if line.startswith("flaky:")]


def test_redrive_sends_a_fixed_category_back_and_it_completes(failing_cluster: Cluster) -> None:
    c = failing_cluster
    worker = c.start("flaky")
    c.send("work.in", [{"seq": s, "mode": "invalid_until_fixed"} for s in (1, 2, 3)], key=lambda p: f"k{p['seq']}")
    c.send_raw("work.in", b"k0", POISON)
    dead = c.read("flaky.dlq", 4)
    assert sorted((d["dead_letter"]["category"], d["dead_letter"]["attempts"]) for d in dead) == [
        ("poison", "1"), *[("validation_failed", "2")] * 3
    ]

    before = _ok(c.cli("dlq", "list", "--agent", "flaky"))
    dry_run = _ok(c.cli("dlq", "redrive", "--category", "validation_failed", "--dry-run"))

    assert _depth(before) == "poison=1 validation_failed=3 total=4"
    assert len(_letters(before)) == 4 and all("error=ValidationFailed: the model's answer did not parse" in line for line in _letters(before)[1:])
    assert dry_run.count("would redrive flaky:0:") == 3 and "dry run, nothing changed" in dry_run
    assert _ok(c.cli("dlq", "list", "--agent", "flaky")) == before
    assert c.read("flaky.redrive", 0, timeout=0) == []

    worker.stop()
    c.start("flaky", extra_env={"E2E_FIXED": "1"})  # the fix is deployed
    redrove = _ok(c.cli("dlq", "redrive", "--category", "validation_failed"))
    done = payloads_of(c.read("work.out", 3))
    after = _ok(c.cli("dlq", "list"))

    assert redrove.count(f"to {c.topology.topic_name('flaky.redrive')}[0]") == 3 and "redrove 3 dead letter(s)" in redrove
    assert sorted((p["seq"], p["attempt"]) for p in done) == [(1, 0), (2, 0), (3, 0)]  # attempts reset
    assert _depth(after) == "poison=1 validation_failed=0 total=1"
    assert _letters(after) == [line for line in _letters(before) if "  poison  " in line]  # untouched
    assert _depth(after, "ping") == "total=0"
    assert "redrove 0 dead letter(s)" in _ok(c.cli("dlq", "redrive", "--category", "validation_failed"))


def test_show_prints_the_original_bytes_every_header_and_the_decoded_event(failing_cluster: Cluster) -> None:
    c = failing_cluster
    c.start("flaky")
    c.send_raw("work.in", b"k0", POISON)
    c.send("work.in", [{"seq": 1, "mode": "raise"}], key=lambda p: "k1")
    poison, broke = sorted(c.read("flaky.dlq", 2), key=lambda d: d["dead_letter"]["category"] != "poison")

    shown = json.loads(_ok(c.cli("dlq", "show", f"flaky:{poison['partition']}:{poison['offset']}")))
    decoded = json.loads(_ok(c.cli("dlq", "show", f"flaky:{broke['partition']}:{broke['offset']}")))
    missing = c.cli("dlq", "show", "flaky:0:99")

    headers = dict(shown["headers"])
    assert (shown["status"], shown["key"]) == ("live", "k0")
    assert base64.b64decode(shown["undecodable"]["value_base64"]) == POISON
    assert "not an event" in shown["undecodable"]["error"]
    assert {k: headers[k] for k in ("dlq.category", "dlq.attempts", "dlq.agent", "dlq.agent_version", "dlq.topic", "dlq.offset")} == {
        "dlq.category": "poison", "dlq.attempts": "1", "dlq.agent": "flaky", "dlq.agent_version": "1",
        "dlq.topic": c.topology.topic_name("work.in"), "dlq.offset": "0",
    }  # fmt: skip
    assert headers["dlq.first_failure_ms"] == headers["dlq.last_failure_ms"]
    assert decoded["event"]["payload"] == {"seq": 1, "mode": "raise"} and "traceparent" in dict(decoded["headers"])
    assert missing.returncode == 1 and "no dead letter at" in missing.stderr and "offset 99" in missing.stderr


def test_purge_removes_the_dead_letters_that_died_before_a_time(failing_cluster: Cluster) -> None:
    c = failing_cluster
    c.start("flaky")
    c.send_raw("work.in", b"old", POISON)
    c.read("flaky.dlq", 1)
    cutoff = datetime.now(UTC).isoformat()
    c.send_raw("work.in", b"new", POISON)
    [_, new] = c.read("flaky.dlq", 2)

    dry_run = _ok(c.cli("dlq", "purge", "--before", cutoff, "--dry-run"))
    unchanged = _ok(c.cli("dlq", "list", "--agent", "flaky"))
    purged = _ok(c.cli("dlq", "purge", "--agent", "flaky", "--before", cutoff))
    listed = _ok(c.cli("dlq", "list", "--agent", "flaky"))

    assert "would purge 1 dead letter(s) of flaky" in dry_run and _depth(unchanged) == "poison=2 total=2"
    assert purged.startswith("purged 1 dead letter(s) of flaky")
    assert [line.split()[0] for line in _letters(listed)] == [f"flaky:0:{new['offset']}"]
    assert _depth(listed) == "poison=1 total=1"
