"""AgentContext and run_handler: every output is checked against the topology and kept in order."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from streams.catalog import EventCatalog
from streams.context import AgentContext, run_handler
from streams.envelope import Event, new_event
from streams.errors import EmitError
from streams.model import OfflineModel
from streams.topology import Topology, load_topology
from streams.types import Context, Emit

TOPOLOGY_YAML = """\
app: shop
events:
  order.placed: {schema: Order}
  note.added: {}
topics:
  inbox: {}
  orders: {events: [order.placed]}
  notes: {events: [note.added]}
  audit: {}
agents:
  clerk:
    handler: agents.clerk:handle
    subscribe: [inbox]
    emits: [orders, notes, audit]
    tables: [stock]
  silent:
    handler: agents.silent:handle
    subscribe: [inbox]
"""

ORDER_SCHEMA = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "string"}, {"name": "quantity", "type": "int"}],
}

ORDER = Emit("orders", "order.placed", {"id": "o-1", "quantity": 2})
NOTE = Emit("notes", "note.added", {"anything": ["goes", 1]})
AUDIT = Emit("audit", "whatever.happened", {"by": "clerk"})


@pytest.fixture
def topology(tmp_path: Path) -> Topology:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "Order.avsc").write_text(json.dumps(ORDER_SCHEMA), encoding="utf-8")
    (tmp_path / "topology.yaml").write_text(TOPOLOGY_YAML, encoding="utf-8")
    return load_topology(tmp_path / "topology.yaml", import_handlers=False)


@pytest.fixture
def ctx(topology: Topology) -> AgentContext:
    return context(topology, "clerk")


def context(topology: Topology, agent: str) -> AgentContext:
    return AgentContext(topology.agents[agent], "key-1", OfflineModel(), {"stock": {}}, EventCatalog(topology))


EVENT: Event = new_event("request", {"n": 1}, source="test", timestamp=0)


# --- emit -------------------------------------------------------------------------------------


async def test_emitted_events_are_kept_in_order(ctx: AgentContext) -> None:
    for emit in (ORDER, NOTE, AUDIT):
        await ctx.emit(emit.topic, emit.type, emit.payload, key=emit.key)
    assert ctx.outputs == [ORDER, NOTE, AUDIT]


async def test_emit_keeps_an_explicit_key(ctx: AgentContext) -> None:
    await ctx.emit("audit", "x", {}, key="other-key")
    assert ctx.outputs == [Emit("audit", "x", {}, "other-key")]


@pytest.mark.parametrize("topic", ["inbox", "nowhere"])
async def test_emit_to_a_topic_outside_the_agents_emits_names_the_fix(ctx: AgentContext, topic: str) -> None:
    with pytest.raises(EmitError) as caught:
        await ctx.emit(topic, "note.added", {})
    message = str(caught.value)
    assert f"'{topic}'" in message
    assert "orders, notes, audit" in message
    assert "agents.clerk.emits" in message and "topology.yaml" in message
    assert ctx.outputs == []


async def test_an_agent_without_emits_may_emit_nothing(topology: Topology) -> None:
    silent = context(topology, "silent")
    with pytest.raises(EmitError, match="nothing"):
        await silent.emit("audit", "x", {})


async def test_emit_of_a_type_the_topic_does_not_carry_is_refused(ctx: AgentContext) -> None:
    with pytest.raises(EmitError) as caught:
        await ctx.emit("orders", "note.added", {})
    message = str(caught.value)
    assert "'note.added'" in message and "'orders'" in message and "order.placed" in message
    assert ctx.outputs == []


@pytest.mark.parametrize(
    "payload",
    [{"id": "o-1", "quantity": "two"}, {"id": "o-1"}, {"id": 1, "quantity": 2}, {}],
    ids=["wrong-type", "missing-field", "wrong-id-type", "empty"],
)
async def test_emit_whose_payload_breaks_the_type_schema_is_refused(ctx: AgentContext, payload: dict[str, Any]) -> None:
    with pytest.raises(EmitError) as caught:
        await ctx.emit("orders", "order.placed", payload)
    assert "'order.placed'" in str(caught.value)
    assert ctx.outputs == []


async def test_a_type_without_schema_carries_any_payload(ctx: AgentContext) -> None:
    await ctx.emit(NOTE.topic, NOTE.type, NOTE.payload)
    assert ctx.outputs == [NOTE]


async def test_a_topic_without_declared_types_carries_any_type(ctx: AgentContext) -> None:
    await ctx.emit(AUDIT.topic, AUDIT.type, AUDIT.payload)
    assert ctx.outputs == [AUDIT]


def test_context_shows_the_agent_its_name_key_tables_and_model(topology: Topology) -> None:
    model = OfflineModel()
    tables = {"stock": {"apples": 3}}
    ctx = AgentContext(topology.agents["clerk"], "key-9", model, tables, EventCatalog(topology))
    assert (ctx.agent, ctx.key, ctx.model, ctx.tables) == ("clerk", "key-9", model, tables)


# --- run_handler ------------------------------------------------------------------------------


async def test_handler_returning_none_outputs_what_it_emitted(ctx: AgentContext) -> None:
    async def handler(event: Event, ctx: Context) -> None:
        await ctx.emit(NOTE.topic, NOTE.type, NOTE.payload)

    assert await run_handler(handler, EVENT, ctx) == [NOTE]


async def test_handler_that_does_nothing_outputs_nothing(ctx: AgentContext) -> None:
    async def handler(event: Event, ctx: Context) -> None:
        return None

    assert await run_handler(handler, EVENT, ctx) == []


async def test_handler_returning_one_emit_outputs_it(ctx: AgentContext) -> None:
    async def handler(event: Event, ctx: Context) -> Emit:
        return ORDER

    assert await run_handler(handler, EVENT, ctx) == [ORDER]


async def test_handler_returning_a_list_outputs_emitted_then_returned_in_order(ctx: AgentContext) -> None:
    async def handler(event: Event, ctx: Context) -> list[Emit]:
        await ctx.emit(AUDIT.topic, AUDIT.type, AUDIT.payload)
        return [ORDER, NOTE]

    assert await run_handler(handler, EVENT, ctx) == [AUDIT, ORDER, NOTE]


async def test_handler_yielding_emits_outputs_them_interleaved_with_emit_calls(ctx: AgentContext) -> None:
    async def handler(event: Event, ctx: Context) -> AsyncIterator[Emit]:
        yield ORDER
        await ctx.emit(AUDIT.topic, AUDIT.type, AUDIT.payload)
        yield NOTE

    assert await run_handler(handler, EVENT, ctx) == [ORDER, AUDIT, NOTE]


async def test_handler_sees_the_event_it_handles(ctx: AgentContext) -> None:
    async def handler(event: Event, ctx: Context) -> Emit:
        return Emit("audit", "seen", {"n": event.payload["n"], "id": event.event_id})

    assert await run_handler(handler, EVENT, ctx) == [Emit("audit", "seen", {"n": 1, "id": EVENT.event_id})]


@pytest.mark.parametrize("returned", [{"topic": "audit"}, "audit", 3, b"bytes"], ids=["dict", "str", "int", "bytes"])
async def test_handler_returning_something_else_is_refused(ctx: AgentContext, returned: object) -> None:
    async def handler(event: Event, ctx: Context) -> object:
        return returned

    with pytest.raises(EmitError) as caught:
        await run_handler(handler, EVENT, ctx)  # type: ignore[arg-type]
    assert type(returned).__name__ in str(caught.value)
    assert "Emit" in str(caught.value)


async def test_handler_returning_a_list_with_something_else_is_refused(ctx: AgentContext) -> None:
    async def handler(event: Event, ctx: Context) -> list[object]:
        return [ORDER, {"topic": "audit"}]

    with pytest.raises(EmitError, match="dict"):
        await run_handler(handler, EVENT, ctx)  # type: ignore[arg-type]


async def test_handler_yielding_something_else_is_refused(ctx: AgentContext) -> None:
    async def handler(event: Event, ctx: Context) -> AsyncIterator[object]:
        yield ORDER
        yield "audit"

    with pytest.raises(EmitError, match="str"):
        await run_handler(handler, EVENT, ctx)  # type: ignore[arg-type]


async def test_returned_emits_are_checked_like_emit_calls(ctx: AgentContext) -> None:
    async def handler(event: Event, ctx: Context) -> list[Emit]:
        return [ORDER, Emit("orders", "order.placed", {"id": "o-2", "quantity": "many"})]

    with pytest.raises(EmitError, match="order.placed"):
        await run_handler(handler, EVENT, ctx)


async def test_yielded_emits_are_checked_like_emit_calls(ctx: AgentContext) -> None:
    async def handler(event: Event, ctx: Context) -> AsyncIterator[Emit]:
        yield Emit("inbox", "note.added", {})

    with pytest.raises(EmitError, match="agents.clerk.emits"):
        await run_handler(handler, EVENT, ctx)
