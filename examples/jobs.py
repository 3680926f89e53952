"""Market example: four translation solvers with different costs; one of them breaks on the longest job."""

from __future__ import annotations

from streams.envelope import Event
from streams.types import Context, JsonObject

PRICING = {
    "budget": (0.0, 0.6, 0.6),
    "flaky": (0.0, 0.9, 0.7),
    "standard": (4.0, 0.5, 0.8),
    "premium": (9.0, 0.0, 0.95),
}
"""Per solver: flat fee, price per 100 words, confidence. Which one is cheapest depends on the job's length."""


def _solver(ctx: Context) -> str:
    return ctx.agent.split("-", 1)[1]


async def bid(event: Event, ctx: Context) -> JsonObject | None:
    solver, words = _solver(ctx), event.payload["words"]
    if solver == "budget" and words > 600:
        return None  # budget takes short jobs only
    fee, rate, confidence = PRICING[solver]
    return {"price": round(fee + rate * words / 100, 2), "confidence": confidence, "tokens": words * 2}


async def translate(event: Event, ctx: Context) -> JsonObject:
    if _solver(ctx) == "flaky" and event.payload["words"] >= 900:
        raise RuntimeError("flaky ran out of context on a long document")
    answer = await ctx.model.complete([{"role": "user", "content": f"Summarize: {event.payload['title']}. Translate it."}])
    return {"title": event.payload["title"], "translation": answer.text}
