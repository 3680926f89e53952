"""Handlers the pattern end-to-end tests run: plain async functions, no orchestration code."""

from __future__ import annotations

import os

from streams.envelope import Event
from streams.patterns.hierarchical import Child
from streams.types import Context, JsonObject


async def split(event: Event, ctx: Context) -> list[JsonObject]:
    """One subtask per part the request asks for."""
    return [{"part": i} for i in range(event.payload["parts"])]


async def work(event: Event, ctx: Context) -> JsonObject:
    """Asks the model about its part (the offline model's latency makes it slow) and says who did it."""
    answer = await ctx.model.complete([{"role": "user", "content": f"part {event.payload['part']}"}])
    return {"part": event.payload["part"], "answer": answer.text, "pid": os.getpid()}


async def join(event: Event, ctx: Context) -> JsonObject:
    return {"parts": sorted(item["result"]["part"] for item in event.payload["results"])}


async def fan_out(event: Event, ctx: Context) -> list[Child]:
    """Spawns ``fan_out`` children of the type the request names at this level."""
    levels, fan_out, path = event.payload["levels"], event.payload["fan_out"], event.payload.get("path", "r")
    return [Child(levels[0], {"levels": levels[1:], "fan_out": fan_out, "path": f"{path}.{i}"}) for i in range(fan_out)]


async def leaf(event: Event, ctx: Context) -> JsonObject:
    return {"leaves": [event.payload["path"]]}


async def gather_leaves(event: Event, ctx: Context) -> JsonObject:
    return {"leaves": sorted(leaf for item in event.payload["results"] for leaf in item["result"]["leaves"])}


PRICING = {"fast": (3, 1), "cheap": (1, 3), "careful": (4, 2), "flaky": (2, 4)}
"""Each solver's (base price, step): which one is cheapest changes from ask to ask."""


def solver_of(ctx: Context) -> str:
    return ctx.agent.split("-", 1)[1]


async def bid(event: Event, ctx: Context) -> JsonObject:
    solver, n = solver_of(ctx), event.payload["n"]
    base, step = PRICING[solver]
    price = 0.1 if event.payload.get("bait") == solver else base + (n * step) % 5
    return {"price": price, "confidence": 0.5 + (n + base) % 5 / 10, "tokens": 100 * base}


async def solve(event: Event, ctx: Context) -> JsonObject:
    solver = solver_of(ctx)
    if event.payload.get("fail") == solver:
        raise RuntimeError(f"{solver} cannot solve ask {event.payload['n']}")
    return {"answer": f"{solver} solved {event.payload['n']}"}

