"""``topology show`` and ``topology graph``: what patterns expand into, as text and as a picture."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from streams.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "market.yaml"


def test_topology_show_lists_each_patterns_topics_groups_and_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "show", str(EXAMPLE)]) == 0

    out = capsys.readouterr().out
    assert "pattern jobs (market)" in out
    assert "jobs.asks  (4 partitions)" in out and "jobs.awards  (4 partitions)" in out
    assert "example-jobs.jobs-budget  jobs.asks, jobs.awards -> jobs.bids" in out
    assert "jobs-maker.asks  (changelog example-jobs.jobs-maker-asks-changelog)" in out


def test_topology_graph_writes_dot_and_an_svg_with_every_agent_and_topic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "market.svg"

    assert main(["topology", "graph", str(EXAMPLE), "--out", str(out)]) == 0

    dot = out.with_suffix(".dot").read_text()
    assert 'subgraph cluster_0 {\n    label="jobs (market)";' in dot
    assert '"t:jobs.asks" -> "a:jobs-budget";' in dot and '"a:jobs-maker" -> "t:jobs.awards";' in dot
    svg = ET.fromstring(out.read_text())  # well-formed: any browser shows it
    labels = {text.text for text in svg.iter("{http://www.w3.org/2000/svg}text")}
    names = {"jobs.asks", "jobs.bids", "jobs.awards", "jobs.results", "jobs-maker", *(f"jobs-{s}" for s in ("budget", "standard", "premium", "flaky"))}
    assert names <= labels
    assert len(list(svg.iter("{http://www.w3.org/2000/svg}path"))) == 4 * 3 + 5 + 1  # one arrow per edge, plus the arrowhead
