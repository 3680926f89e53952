"""The command line, for what needs no broker: topology check and its error output."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli import main

BROKEN = """\
app: demo
topics:
  orders: {partitions: 2}
  orders: {partitions: 3}
  payments: {partitions: "four"}
agents:
  billing:
    handler: agents.nothing_here:handle
    subscribe: [order]
    emits: [invoices]
    concurrency: 0
    colour: blue
"""


def test_topology_check_lists_every_problem_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(BROKEN)

    code = main(["topology", "check", str(path)])

    err = capsys.readouterr().err
    assert code == 1
    assert f"{path}:4:" in err and "declared twice" in err
    assert f"{path}:5:" in err and "partitions" in err
    assert f"{path}:8:" in err and "agents.nothing_here" in err
    assert f"{path}:9:" in err and "did you mean 'orders'" in err
    assert f"{path}:10:" in err and "invoices" in err
    assert f"{path}:11:" in err and "concurrency" in err
    assert f"{path}:12:" in err and "colour" in err
    assert "7 problem(s)" in err


def test_topology_check_summarises_a_valid_file(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["topology", "check", "topology.yaml"])

    out = capsys.readouterr().out
    assert code == 0
    assert "fraud: transactions.card, transactions.wire -> transactions.flagged" in out


def test_worker_for_an_unknown_agent_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAPPA_BROKER_KIND", "kafka")

    code = main(["worker", "--agent", "nobody"])

    assert code == 1
    assert "no agent 'nobody'" in capsys.readouterr().err
