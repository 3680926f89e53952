"""The fraud agent: a per-account risk projection, and a flag for the risky transactions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.fraud import handle
from streams.catalog import EventCatalog
from streams.context import AgentContext, run_handler
from streams.envelope import new_event
from streams.errors import ModelError
from streams.model import OfflineModel, OfflineSettings
from streams.topology import Topology, load_topology
from streams.types import Emit, Model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology(REPO / "topology.yaml")


@pytest.fixture
def risk() -> dict[str, Any]:
    return {}


async def screen(
    topology: Topology, risk: dict[str, Any], model: Model | None = None, **txn: Any
) -> list[Emit]:
    """One transaction through the fraud handler with a real context; outputs are checked against the topology."""
    payload = {"account": "acct-1", "amount": 25.0, "currency": "USD", "country": "US", "merchant": "grocery", **txn}
    catalog = EventCatalog(topology)
    assert catalog.problem("transactions.card", "transaction.created", payload) is None
    ctx = AgentContext(topology.agents["fraud"], payload["account"], model or OfflineModel(), {"risk": risk}, catalog)
    event = new_event("transaction.created", payload, source="test", timestamp=0)
    return await run_handler(handle, event, ctx)


RISKY = {"amount": 12_000.0, "currency": "USDT", "country": "RU", "merchant": "crypto-exchange"}


async def test_small_domestic_transaction_is_not_flagged_but_is_projected(topology: Topology, risk: dict[str, Any]) -> None:
    outputs = await screen(topology, risk, amount=25.0)

    assert outputs == []
    assert risk["acct-1"]["count"] == 1
    assert risk["acct-1"]["total"] == 25.0
    assert risk["acct-1"]["flagged"] == 0
    assert risk["acct-1"]["max_score"] < 0.6


async def test_large_foreign_crypto_transaction_is_flagged_with_its_reasons(topology: Topology, risk: dict[str, Any]) -> None:
    outputs = await screen(topology, risk, **RISKY)

    assert [(emit.topic, emit.type) for emit in outputs] == [("transactions.flagged", "transaction.flagged")]
    flag = outputs[0].payload
    assert EventCatalog(topology).problem("transactions.flagged", "transaction.flagged", flag) is None
    assert flag["account"] == "acct-1"
    assert flag["amount"] == 12_000.0
    assert flag["score"] == 1.0
    assert flag["reasons"] == ["large amount", "foreign country RU", "risky merchant crypto-exchange"]
    assert flag["assessment"].startswith("risk: ")
    assert risk["acct-1"]["flagged"] == 1


async def test_projection_accumulates_per_account(topology: Topology, risk: dict[str, Any]) -> None:
    await screen(topology, risk, amount=25.0)
    await screen(topology, risk, amount=40.0)
    await screen(topology, risk, **RISKY)
    await screen(topology, risk, account="acct-2", amount=7.5)

    assert risk["acct-1"] == {"count": 3, "total": 12_065.0, "flagged": 1, "max_score": 1.0}
    assert risk["acct-2"]["count"] == 1
    assert risk["acct-2"]["total"] == 7.5
    assert risk["acct-2"]["flagged"] == 0


async def test_spending_far_above_the_accounts_average_counts_against_it(topology: Topology, risk: dict[str, Any]) -> None:
    await screen(topology, risk, amount=20.0)
    await screen(topology, risk, amount=20.0)

    outputs = await screen(topology, risk, amount=500.0, country="BR", merchant="gift-cards")

    assert len(outputs) == 1
    assert "far above the account's average" in outputs[0].payload["reasons"]


async def test_the_same_transaction_is_not_above_average_on_a_fresh_account(topology: Topology, risk: dict[str, Any]) -> None:
    outputs = await screen(topology, risk, amount=500.0, country="BR", merchant="gift-cards")

    assert len(outputs) == 1
    assert "far above the account's average" not in outputs[0].payload["reasons"]


async def test_two_warning_signs_are_enough_to_flag(topology: Topology, risk: dict[str, Any]) -> None:
    outputs = await screen(topology, risk, amount=10.0, country="NG", merchant="wire-service")
    assert len(outputs) == 1
    assert outputs[0].payload["reasons"] == ["foreign country NG", "risky merchant wire-service"]


async def test_one_warning_sign_is_not_enough_even_at_the_largest_amount(topology: Topology, risk: dict[str, Any]) -> None:
    outputs = await screen(topology, risk, amount=50_000.0)
    assert outputs == []
    assert risk["acct-1"]["max_score"] == pytest.approx(0.5)


async def test_a_failed_model_call_leaves_the_projection_untouched(topology: Topology, risk: dict[str, Any]) -> None:
    """The runner dead-letters the event; replaying it must not count the transaction twice."""
    broken = OfflineModel(OfflineSettings(failure_rate=1.0))
    await screen(topology, risk, amount=25.0)

    with pytest.raises(ModelError):
        await screen(topology, risk, broken, **RISKY)

    assert risk["acct-1"] == {"count": 1, "total": 25.0, "flagged": 0, "max_score": pytest.approx(0.00025)}
