"""Handlers the end-to-end tests run: each makes one guarantee observable in its outputs."""

from __future__ import annotations

import asyncio
import hashlib
import os

from streams.envelope import Event
from streams.errors import RateLimited, ValidationFailed
from streams.types import Context, Emit


async def count(event: Event, ctx: Context) -> Emit:
    """Counts events per key in a table; the count in each output shows the table's state."""
    key = event.payload["key"]
    n = (ctx.tables["counts"].get(key) or 0) + 1
    ctx.tables["counts"][key] = n
    return Emit("counter.out", "counted", {"key": key, "n": n, "seq": event.payload["seq"]})


async def ordered(event: Event, ctx: Context) -> Emit:
    """Sleeps a pseudo-random 0-20 ms, so unordered handling would reorder its outputs."""
    digest = hashlib.sha256(event.event_id.encode()).digest()
    await asyncio.sleep(digest[0] / 255 * 0.02)
    return Emit("ordered.out", "seen", {"key": event.payload["key"], "seq": event.payload["seq"]})


async def slow(event: Event, ctx: Context) -> Emit:
    """Takes as long as the event says: lets a test crash a worker with work in flight."""
    cap = float(os.environ.get("E2E_SLOW_MAX_SLEEP", "inf"))
    await asyncio.sleep(min(event.payload.get("sleep", 0), cap))
    return Emit("slow.out", "done", {"seq": event.payload["seq"]})


async def flaky(event: Event, ctx: Context) -> Emit:
    """Fails as ``payload.mode`` says, so each failure category can be watched end to end."""
    mode = event.payload["mode"]
    if mode == "raise":
        raise RuntimeError("the handler broke")
    if mode == "sleep":
        await asyncio.sleep(30)
    if mode == "rate_limit_once" and event.attempt == 0:
        raise RateLimited("slow down", retry_after=None)
    if mode == "invalid_until_fixed" and os.environ.get("E2E_FIXED") != "1":
        raise ValidationFailed("the model's answer did not parse")
    return Emit("work.out", "done", {"seq": event.payload["seq"], "attempt": event.attempt})


async def bounce(event: Event, ctx: Context) -> Emit:
    """Passes every event on to the other side: ping -> pong -> ping ... a delegation loop."""
    target = "pong" if ctx.agent == "ping" else "ping"
    return Emit(target, "bounce", {"hop": event.payload["hop"] + 1})


async def pay(event: Event, ctx: Context) -> Emit:
    """Charges a card (irreversible) and sends a receipt (reversible), recording both in a file: the world."""
    world = os.environ["E2E_WORLD_FILE"]
    seq = event.payload["seq"]

    async def act(kind: str) -> str:
        with open(world, "a") as out:
            out.write(f"{kind} {seq}\n")
        await asyncio.sleep(0.002)  # a real call takes a while: crashes land inside some actions
        return f"{kind}-{seq}"

    charge = await ctx.side_effect("charge", lambda: act("charge"), irreversible=True)
    receipt = await ctx.side_effect("receipt", lambda: act("receipt"))
    return Emit("paid.out", "paid", {"seq": seq, "charge": charge, "receipt": receipt})


async def ask(event: Event, ctx: Context) -> Emit:
    """One model call per event: what the flow-control tests throttle."""
    answer = await ctx.model.complete([{"role": "user", "content": event.payload["text"]}])
    return Emit("asks.out", "answered", {"seq": event.payload["seq"], "tokens": answer.input_tokens})
