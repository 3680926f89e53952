"""Fraud screening: score each transaction, keep a per-account risk projection, flag the risky ones."""

from __future__ import annotations

from streams.envelope import Event
from streams.types import Context, Emit

FLAG_AT = 0.6
HOME_COUNTRIES = frozenset({"US", "CA", "GB", "DE", "FR"})
RISKY_MERCHANTS = frozenset({"crypto-exchange", "gift-cards", "wire-service"})


def score(txn: dict[str, object], history: dict[str, float]) -> tuple[float, list[str]]:
    """A transparent rule score in [0, 1] with the reasons behind it."""
    amount = float(txn["amount"])  # type: ignore[arg-type]
    reasons: list[str] = []
    if amount >= 5_000:
        reasons.append("large amount")
    if txn["country"] not in HOME_COUNTRIES:
        reasons.append(f"foreign country {txn['country']}")
    if txn["merchant"] in RISKY_MERCHANTS:
        reasons.append(f"risky merchant {txn['merchant']}")
    average = history["total"] / history["count"] if history["count"] else 0.0
    if average and amount > 5 * average:
        reasons.append("far above the account's average")
    return min(1.0, 0.3 * len(reasons) + min(amount, 20_000) / 100_000), reasons


async def handle(event: Event, ctx: Context) -> list[Emit]:
    txn = event.payload
    risk = ctx.tables["risk"]
    history = risk.get(txn["account"]) or {"count": 0, "total": 0.0, "flagged": 0, "max_score": 0.0}
    value, reasons = score(txn, history)
    flagged = value >= FLAG_AT
    updated = {
        "count": history["count"] + 1,
        "total": history["total"] + float(txn["amount"]),
        "flagged": history["flagged"] + int(flagged),
        "max_score": max(history["max_score"], value),
    }
    if not flagged:
        risk[txn["account"]] = updated
        return []
    answer = await ctx.model.complete(
        [
            {"role": "system", "content": "You are a fraud analyst. Assess the risk in one sentence."},
            {"role": "user", "content": f"Assess fraud risk: amount {txn['amount']} score {value:.2f}: {', '.join(reasons)}"},
        ]
    )
    risk[txn["account"]] = updated  # only once the model answered: a failed call changes nothing
    flag = {"account": txn["account"], "amount": float(txn["amount"]), "score": round(value, 4), "reasons": reasons, "assessment": answer.text}
    return [Emit("transactions.flagged", "transaction.flagged", flag)]
