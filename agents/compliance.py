"""Compliance: turn each flagged transaction into a decision a person can act on."""

from __future__ import annotations

from streams.envelope import Event
from streams.types import Context


def decide(score: float) -> str:
    if score >= 0.9:
        return "FILE_SAR"
    if score >= 0.65:
        return "REVIEW"
    return "CLEAR"


async def handle(event: Event, ctx: Context) -> None:
    flag = event.payload
    answer = await ctx.model.complete(
        [
            {"role": "system", "content": "You write compliance case notes."},
            {"role": "user", "content": f"Summarize the case. {flag['assessment']} Reasons: {', '.join(flag['reasons'])}."},
        ]
    )
    report = {"account": flag["account"], "decision": decide(flag["score"]), "score": flag["score"], "summary": answer.text}
    await ctx.emit("compliance.reports", "compliance.report", report)
