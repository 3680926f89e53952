"""The compliance agent: every flagged transaction becomes a report with a decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents import compliance, fraud
from streams.catalog import EventCatalog
from streams.context import AgentContext, run_handler
from streams.envelope import Event, new_event
from streams.model import OfflineModel
from streams.topology import Topology, load_topology
from streams.types import Emit, Handler

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology(REPO / "topology.yaml")


async def run(topology: Topology, agent: str, handler: Handler, event: Event, tables: dict[str, Any] | None = None) -> list[Emit]:
    """One event through a handler with a real context; outputs are checked against the topology."""
    ctx = AgentContext(topology.agents[agent], "acct-1", OfflineModel(), tables or {}, EventCatalog(topology))
    return await run_handler(handler, event, ctx)


def flagged(score: float) -> Event:
    payload = {
        "account": "acct-1",
        "amount": 12_000.0,
        "score": score,
        "reasons": ["large amount", "foreign country RU"],
        "assessment": "risk: high (largest figure 12000 of 2)",
    }
    return new_event("transaction.flagged", payload, source="fraud", timestamp=0)


@pytest.mark.parametrize(
    ("score", "decision"),
    [(1.0, "FILE_SAR"), (0.9, "FILE_SAR"), (0.89, "REVIEW"), (0.65, "REVIEW"), (0.64, "CLEAR"), (0.6, "CLEAR")],
)
async def test_score_decides_what_compliance_does(topology: Topology, score: float, decision: str) -> None:
    outputs = await run(topology, "compliance", compliance.handle, flagged(score))
    assert [emit.payload["decision"] for emit in outputs] == [decision]


async def test_report_is_a_schema_valid_compliance_report(topology: Topology) -> None:
    outputs = await run(topology, "compliance", compliance.handle, flagged(0.95))

    assert [(emit.topic, emit.type) for emit in outputs] == [("compliance.reports", "compliance.report")]
    report = outputs[0].payload
    assert EventCatalog(topology).problem("compliance.reports", "compliance.report", report) is None
    assert (report["account"], report["score"], report["decision"]) == ("acct-1", 0.95, "FILE_SAR")
    assert isinstance(report["summary"], str) and report["summary"]


async def test_what_fraud_flags_compliance_reports_on(topology: Topology) -> None:
    txn = {"account": "acct-1", "amount": 12_000.0, "currency": "USDT", "country": "RU", "merchant": "crypto-exchange"}
    transaction = new_event("transaction.created", txn, source="test", timestamp=0)
    [flag] = await run(topology, "fraud", fraud.handle, transaction, {"risk": {}})

    flag_event = transaction.caused(flag.type, flag.payload, source="fraud", index=0, timestamp=1)
    [report] = await run(topology, "compliance", compliance.handle, flag_event)

    assert report.payload["account"] == "acct-1"
    assert report.payload["score"] == flag.payload["score"] == 1.0
    assert report.payload["decision"] == "FILE_SAR"
