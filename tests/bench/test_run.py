"""`make bench`'s choice of targets: BENCH_ONLY and BENCH_SCENARIOS."""

from __future__ import annotations

import pytest

from bench.run import ROW_TARGETS, selected_targets
from bench.scenarios import SCENARIOS


def test_every_target_is_measured_by_default() -> None:
    assert selected_targets({}) == {*ROW_TARGETS, *SCENARIOS}


def test_bench_only_names_the_targets_to_measure() -> None:
    assert selected_targets({"BENCH_ONLY": "fan_out, cold_start"}) == {"fan_out", "cold_start"}


def test_bench_scenarios_0_drops_the_scenarios_even_when_named() -> None:
    assert selected_targets({"BENCH_SCENARIOS": "0"}) == set(ROW_TARGETS)
    assert selected_targets({"BENCH_SCENARIOS": "0", "BENCH_ONLY": "fan_out,speed"}) == {"speed"}


def test_an_unknown_target_is_refused_with_the_known_ones() -> None:
    with pytest.raises(SystemExit, match="fan_in.*known: speed, cold_start, fan_out"):
        selected_targets({"BENCH_ONLY": "fan_in"})
