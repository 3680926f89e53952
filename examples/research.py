"""Orchestrator-worker example: a question split into aspects, researched in parallel, reported."""

from __future__ import annotations

from streams.envelope import Event
from streams.types import Context, JsonObject

ASPECTS = ("market size", "competitors", "regulation", "costs", "risks")


async def plan(event: Event, ctx: Context) -> list[JsonObject]:
    return [{"question": event.payload["question"], "aspect": aspect} for aspect in ASPECTS]


async def research(event: Event, ctx: Context) -> JsonObject:
    prompt = f"Summarize: {event.payload['aspect']} of {event.payload['question']}. Details follow."
    answer = await ctx.model.complete([{"role": "user", "content": prompt}])
    return {"aspect": event.payload["aspect"], "finding": answer.text, "tokens": answer.output_tokens}


async def report(event: Event, ctx: Context) -> JsonObject:
    findings = [item["result"] for item in event.payload["results"]]
    return {"question": event.payload["request"]["question"], "sections": [f["aspect"] for f in findings],
            "tokens": sum(f["tokens"] for f in findings), "missing": event.payload["missing"]}
