"""bench/measure.py: a row that cannot run here is reported as skipped, not as a failure."""

from __future__ import annotations

import math
from pathlib import Path

from bench.measure import Plan, Row, run_row
from streams.broker import BrokerProfile


def test_unavailable_row_is_skipped_with_its_reason_before_touching_the_broker(tmp_path: Path) -> None:
    nowhere = BrokerProfile("127.0.0.1:1", embedded=True)  # any broker call would fail or hang
    plan = Plan(nowhere, "run", tmp_path, events=10, latency_events=10, backlog=[])
    row = Row("quix", "(d) quixstreams app", ("missing-python",), "note", unavailable="no bench/.venv-quix")
    said: list[str] = []

    result = run_row(plan, row, said.append)

    assert (result.skipped, result.ok, result.outputs) == ("no bench/.venv-quix", True, 0)
    assert math.isnan(result.events_per_s)
    assert said == ["(d) quixstreams app: skipped, no bench/.venv-quix"]
