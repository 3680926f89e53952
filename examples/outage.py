"""Hierarchical example: an outage commander splits by region, each region by host."""

from __future__ import annotations

from streams.envelope import Event
from streams.patterns.hierarchical import Child
from streams.types import Context, JsonObject


async def command(event: Event, ctx: Context) -> list[Child]:
    return [Child("region", {"region": region, "hosts": event.payload["hosts_per_region"]}) for region in event.payload["regions"]]


async def region(event: Event, ctx: Context) -> list[Child]:
    return [Child("host", {"host": f"{event.payload['region']}-{i}", "load": 5000 * i + 500}) for i in range(event.payload["hosts"])]


async def inspect(event: Event, ctx: Context) -> JsonObject:
    answer = await ctx.model.complete([{"role": "user", "content": f"Assess risk: host load {event.payload['load']}"}])
    return {"host": event.payload["host"], "assessment": answer.text}


async def summarize(event: Event, ctx: Context) -> JsonObject:
    """Rolls children up: the hosts at high risk, whatever level this is."""
    hosts = [r for item in event.payload["results"] for r in item["result"].get("hosts", [item["result"]])]
    return {"hosts": hosts, "high_risk": sorted(h["host"] for h in hosts if "high" in h["assessment"]), "missing": event.payload["missing"]}
