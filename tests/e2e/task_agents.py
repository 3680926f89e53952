"""Handlers of the task tests (tasks.yaml): a two-agent ticket flow with model calls and a tool."""

from __future__ import annotations

from streams.envelope import Event
from streams.types import Context, Emit


async def triage(event: Event, ctx: Context) -> Emit:
    """Asks the model, looks the customer up (a side effect: a tool call), hands the ticket on."""
    ticket = event.payload
    answer = await ctx.model.complete([{"role": "user", "content": f"Assess fraud risk of refund {ticket['amount']}"}])

    async def lookup() -> str:
        return f"customer-{ticket['customer']}"

    customer = await ctx.side_effect("lookup", lookup)
    return Emit("tickets.triaged", "ticket.triaged", {**ticket, "customer": customer, "risk": answer.text})


async def resolve(event: Event, ctx: Context) -> Emit:
    """Summarises the triaged ticket into a resolution; nobody reads resolutions, so the task completes."""
    ticket = event.payload
    answer = await ctx.model.complete([{"role": "user", "content": f"Summarize: refund of {ticket['amount']}. {ticket['risk']}"}])
    return Emit("tickets.resolved", "ticket.resolved", {"ticket": ticket["id"], "resolution": answer.text})


APPROVAL = {
    "type": "record",
    "name": "Approval",
    "fields": [{"name": "approve", "type": "boolean"}, {"name": "note", "type": "string"}],
}


async def approve(event: Event, ctx: Context) -> Emit:
    """Refunds need a person's approval (after the model's advice): the task waits for it without holding the worker."""
    refund = event.payload
    advice = await ctx.model.complete([{"role": "user", "content": f"Should we refund {refund['amount']}?"}])
    question = f"Approve a refund of {refund['amount']} to {refund['customer']}?"
    decision = await ctx.ask_human(question, schema=APPROVAL, timeout_s=refund.get("timeout_s"), on_timeout=refund.get("on_timeout", "fail"))
    approval = {"id": refund["id"], "approved": decision["approve"], "note": decision["note"], "advice": advice.text}
    return Emit("refunds.decided", "refund.decided", approval)


async def triage_v2(event: Event, ctx: Context) -> Emit | None:
    """The next version of ``triage``: tickets under 100 are closed without a model call or a hand-over."""
    if event.payload["amount"] < 100:
        return None
    return await triage(event, ctx)
