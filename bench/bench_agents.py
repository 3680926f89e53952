"""The benchmark's Kappa Agents handler: a per-key running total, one output per input."""

from __future__ import annotations

from bench.workload import OUTPUT_TOPIC, OUTPUT_TYPE, answer
from streams.envelope import Event
from streams.types import Context, Emit


async def total(event: Event, ctx: Context) -> Emit:
    totals = ctx.tables["totals"]
    key = event.payload["key"]
    running = (totals.get(key) or 0) + event.payload["amount"]
    totals[key] = running
    return Emit(OUTPUT_TOPIC, OUTPUT_TYPE, answer(event.payload, running))
