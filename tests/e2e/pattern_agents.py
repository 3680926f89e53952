"""Handlers the pattern end-to-end tests run: plain async functions, no orchestration code."""

from __future__ import annotations

import os

from streams.envelope import Event
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
