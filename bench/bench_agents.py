"""The benchmark's Kappa Agents handler: a per-key running total, one output per input."""

from __future__ import annotations

from bench.work import OUTPUT_TYPE, answer
from bench.workload import OUTPUT_TOPIC
from streams.envelope import Event
from streams.types import Context, Emit


async def total(event: Event, ctx: Context) -> Emit:
    totals = ctx.tables["totals"]
    key = event.payload["key"]
    running = (totals.get(key) or 0) + event.payload["amount"]
    totals[key] = running
    return Emit(OUTPUT_TOPIC, OUTPUT_TYPE, answer(event.payload, running))


async def fan(event: Event, ctx: Context) -> Emit:
    """One of the fan-out's five agents: one model call (its latency simulated), one answer."""
    return await _ask(event, ctx, "fan.out")


async def wait(event: Event, ctx: Context) -> Emit:
    """A model call that takes long: holds one of many calls in flight."""
    return await _ask(event, ctx, "calls.out")


async def metered(event: Event, ctx: Context) -> Emit:
    """A model call paid from the model's token bucket (``flow:`` in bench/bucket.yaml)."""
    return await _ask(event, ctx, "metered.out")


async def _ask(event: Event, ctx: Context, topic: str) -> Emit:
    answer = await ctx.model.complete([{"role": "user", "content": event.payload["prompt"]}])
    tokens = answer.input_tokens + answer.output_tokens
    return Emit(topic, "bench.answer", {"seq": event.payload["seq"], "agent": ctx.agent, "tokens": tokens})
