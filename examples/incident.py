"""Blackboard example: a log analyst and a metrics analyst post findings; a coordinator proposes the fix."""

from __future__ import annotations

from streams.envelope import Event
from streams.types import Context, JsonObject


async def read_logs(event: Event, ctx: Context) -> JsonObject:
    service = event.payload["entry"]["content"]["service"]
    return {"kind": "finding", "content": {"source": "logs", "text": f"{service}: 'connection pool exhausted' x412 since 10:02"}}


async def read_metrics(event: Event, ctx: Context) -> JsonObject:
    service = event.payload["entry"]["content"]["service"]
    return {"kind": "finding", "content": {"source": "metrics", "text": f"{service}: db connections flat at 100/100"}}


async def coordinate(event: Event, ctx: Context) -> JsonObject | None:
    findings = [e["content"] for e in event.payload["board"] if e["kind"] == "finding"]
    if {f["source"] for f in findings} != {"logs", "metrics"}:
        return {"kind": "question", "content": {"text": "waiting for the other analyst"}} if len(findings) == 1 else None
    return {"kind": "solution", "content": {"action": "raise the pool to 200 and page the db owner", "evidence": sorted(f["text"] for f in findings)}}
