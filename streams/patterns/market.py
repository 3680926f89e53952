"""Market: solvers bid on posted asks; a market-maker awards each ask to the best bid by a declared rule.

```yaml
patterns:
  jobs:
    kind: market
    solvers: [fast, cheap]
    award: lowest_cost               # or highest_confidence, or weighted (see weights)
    weights: {confidence: 10, price: 1, tokens: 0.001}   # weighted: score = Σ weight × value, costs negative
    bid_window_s: 5                  # award when this passes...
    max_bids: 2                      # ...or this many bids are in (default: one per solver)
    execution_timeout_s: 30          # a winner silent this long loses the ask to the next-best bid
    agents:
      fast:  {bid: agents.jobs:bid, handler: agents.jobs:solve}
      cheap: {bid: agents.jobs:bid, handler: agents.jobs:solve}
```

Asks are posted to ``jobs.asks``. A solver's ``bid`` handler answers an ask
with ``{"price", "confidence", "tokens"}`` (or None: no bid); its ``handler``
executes an ask it won and returns the result. The runtime agent
``jobs-maker`` keeps one ``asks`` table entry per ask on ``jobs.bids`` (the
ledger: opened, bids, outcomes, deadlines, all keyed by ask id), publishes
awards to ``jobs.awards``, re-awards to the next-best bid when the winner
fails or times out, and reports every ask on ``jobs.results``: filled, or
unfilled with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from streams.context import AgentContext
from streams.envelope import Event
from streams.patterns.clock import TICK, TICK_S
from streams.patterns.common import (
    FORGET,
    Entry,
    History,
    Member,
    Pattern,
    deadline_ms,
    finished,
    forget,
    forgettable,
    now_ms,
    runtime_topic,
)
from streams.topology import import_handler
from streams.types import Context, Emit, Handler, JsonObject
from streams.yaml_nodes import as_choice, as_mapping

KIND = "market"
KEYS = ("solvers", "award", "weights", "bid_window_s", "max_bids", "execution_timeout_s", "parallelism")
MEMBER_KEYS = ("bid",)
RULES = ("lowest_cost", "highest_confidence", "weighted")
WEIGHTS = ("confidence", "price", "tokens")
TABLE = "asks"
MAKER = "maker"

OPENED = "ask.opened"
BID = "bid"
AWARD = "award"
DONE = "result.completed"
FAILED = "result.failed"
DEADLINE = "market.deadline"
FILLED = "ask.filled"
UNFILLED = "ask.unfilled"


@dataclass(frozen=True, kw_only=True)
class Market(Pattern):
    solvers: tuple[Member, ...]
    award: str
    weights: Mapping[str, float]
    bid_window_s: float
    max_bids: int
    execution_timeout_s: float

    def handler(self, agent: str, base_dir: Path, history: History) -> Handler:
        solver = self.member_for(agent)
        if solver is None:
            return _maker(self)
        assert solver.bid is not None, "parse refuses a solver without bid"
        return _solver(self, solver.name, import_handler(solver.bid, base_dir), import_handler(solver.handler, base_dir))

    def rank(self, bids: list[JsonObject]) -> list[JsonObject]:
        """Best first, by the declared rule; ties go to the earlier solver name, so ranking is deterministic."""
        def cost(bid: JsonObject) -> tuple[float, ...]:
            if self.award == "lowest_cost":
                return (bid["price"], -bid["confidence"])
            if self.award == "highest_confidence":
                return (-bid["confidence"], bid["price"])
            w = self.weights
            return (-(w["confidence"] * bid["confidence"] - w["price"] * bid["price"] - w["tokens"] * bid["tokens"]),)

        return sorted(bids, key=lambda bid: (*cost(bid), bid["solver"]))


def parse(entry: Entry) -> Market | None:
    node = entry.fields.get("solvers")
    solvers = entry.refs("solvers")
    if node is None or not solvers:
        at = node or entry.node
        entry.report.add(at, f"market '{entry.name}' has no solvers", "list the agents that bid, e.g. `solvers: [fast, cheap]`")
    for solver in solvers:
        if solver.bid is None:
            fix = f"add `bid: module:function` to patterns.{entry.name}.agents.{solver.name}"
            entry.report.add(node or entry.node, f"solver '{solver.name}' has no bid handler", fix)
    award = as_choice(entry.fields.get("award"), RULES, entry.report)
    weights = _weights(entry)
    bid_window_s, execution_timeout_s = entry.seconds("bid_window_s", 5.0), entry.seconds("execution_timeout_s", 60.0)
    max_bids, parallelism = entry.count("max_bids", max(len(solvers), 1)), entry.count("parallelism", 4)
    if not solvers:
        return None
    line = entry.node.line
    asks, bids, awards, results = (entry.topic(p) for p in ("asks", "bids", "awards", "results"))
    agents = [
        entry.agent_spec(s.name, s.handler, (asks, awards), (bids,), concurrency=s.concurrency or 8, line=s.line) for s in solvers
    ]
    agents.append(entry.agent_spec(MAKER, f"{__name__}:make (runtime)", (bids, asks), (bids, awards, results), concurrency=parallelism,
                                   tables=(TABLE,), tick_s=TICK_S))
    return Market(
        name=entry.name, kind=KIND, line=line, members=entry.members,
        topics=tuple(runtime_topic(t, parallelism, line) for t in (asks, bids, awards, results)), agents=tuple(agents),
        solvers=tuple(solvers), award=award, weights=weights, max_bids=max_bids,
        bid_window_s=bid_window_s, execution_timeout_s=execution_timeout_s,
    )


def _weights(entry: Entry) -> Mapping[str, float]:
    given = as_mapping(entry.fields.get("weights"), entry.report)
    for key, node in given.items():
        if key not in WEIGHTS:
            entry.report.add(node, f"unknown weight '{key}'", f"use one of: {', '.join(WEIGHTS)}")
        elif not isinstance(node.value, int | float) or isinstance(node.value, bool):
            entry.report.add(node, f"expected a number, got {node.value!r}", "write e.g. 1 or 0.5")
    numbers = {k: float(n.value) for k, n in given.items() if k in WEIGHTS and isinstance(n.value, int | float)}
    return MappingProxyType({"confidence": 1.0, "price": 1.0, "tokens": 0.0, **numbers})


def _solver(market: Market, name: str, bid: Callable[..., Awaitable[Any]], execute: Callable[..., Awaitable[Any]]) -> Handler:
    """A solver: bids on every ask; executes the awards made to it, reporting success or failure."""

    async def solve(event: Event, ctx: Context) -> list[Emit]:
        if event.type != AWARD:
            offer = await bid(event, ctx)
            if offer is None:
                return []
            terms = {key: float(offer[key]) for key in ("price", "confidence")} | {"tokens": int(offer.get("tokens", 0))}
            return [Emit(market.topic("bids"), BID, {"ask_id": event.task_id, "solver": name, **terms}, key=event.task_id)]
        award = event.payload
        if award["solver"] != name:
            return []
        outcome: JsonObject = {"ask_id": award["ask_id"], "solver": name, "award": award["award"]}
        try:
            result = await execute(replace(event, payload=award["ask"]), ctx)
        except Exception as exc:  # the user's solver failed: the market re-awards, the runtime does not retry
            return [Emit(market.topic("bids"), FAILED, {**outcome, "error": f"{type(exc).__name__}: {exc}"}, key=award["ask_id"])]
        return [Emit(market.topic("bids"), DONE, {**outcome, "result": result}, key=award["ask_id"])]

    return solve


def _maker(market: Market) -> Handler:
    """The market-maker: collects bids per ask, awards, re-awards, reports filled or unfilled."""

    async def make(event: Event, ctx: AgentContext) -> list[Emit]:
        table = ctx.tables[TABLE]
        if event.type == TICK:
            due = [Emit(market.topic("bids"), DEADLINE, {"ask_id": k}, key=k) for k, s in table.items() if _due(s)]
            return due + forgettable(table, market.topic("bids"))
        if event.type == FORGET:
            return forget(table, ctx.key)
        if event.type not in (OPENED, BID, DONE, FAILED, DEADLINE):  # a new ask: open it on the ledger, keyed by its id
            opened = {"ask_id": event.task_id, "ask": event.payload, "close_ms": deadline_ms(market.bid_window_s)}
            return [Emit(market.topic("bids"), OPENED, opened, key=event.task_id)]
        ask_id = event.payload["ask_id"]
        state = table.get(ask_id) or {"status": "open", "bids": [], "tried": []}
        state, out = _step(market, state, event)
        table[ask_id] = state
        return out

    return make  # type: ignore[return-value]  # the runtime passes an AgentContext


def _step(market: Market, state: JsonObject, event: Event) -> tuple[JsonObject, list[Emit]]:
    p, status = event.payload, state["status"]
    if event.type == OPENED and "ask" not in state:
        state = {**state, "ask": p["ask"], "close_ms": p["close_ms"]}
    elif event.type == BID and status == "open" and all(b["solver"] != p["solver"] for b in state["bids"]):
        state = {**state, "bids": [*state["bids"], p]}
    elif event.type in (DONE, FAILED) and status == "awarded" and (p["solver"], p["award"]) == (state["solver"], len(state["tried"])):
        if event.type == DONE:
            filled = {"ask_id": p["ask_id"], "solver": p["solver"], "result": p["result"], "awards": len(state["tried"]), "bid": _bid_of(state, p["solver"])}
            return {**state, "status": "filled", **finished()}, [Emit(market.topic("results"), FILLED, filled, key=p["ask_id"])]
        return _award(market, {**state, "failures": [*state.get("failures", []), {"solver": p["solver"], "error": p["error"]}]}, p["ask_id"])
    elif event.type == DEADLINE and _due(state):
        return _award(market, state, p["ask_id"])
    else:
        return state, []
    if state["status"] == "open" and "ask" in state and len(state["bids"]) >= market.max_bids:
        return _award(market, state, p["ask_id"])
    return state, []


def _award(market: Market, state: JsonObject, ask_id: str) -> tuple[JsonObject, list[Emit]]:
    """Award to the best bid not yet tried, or report the ask unfilled."""
    left = [bid for bid in market.rank(state["bids"]) if bid["solver"] not in state["tried"]]
    if not left:
        reason = "no bids" if not state["bids"] else f"every winner failed or timed out ({', '.join(state['tried'])})"
        unfilled = {"ask_id": ask_id, "reason": reason, "failures": state.get("failures", [])}
        return {**state, "status": "unfilled", **finished()}, [Emit(market.topic("results"), UNFILLED, unfilled, key=ask_id)]
    best = left[0]
    tried = [*state["tried"], best["solver"]]
    award = {"ask_id": ask_id, "solver": best["solver"], "award": len(tried), "bid": best, "ask": state["ask"], "rule": market.award}
    timeout_ms = deadline_ms(market.execution_timeout_s)
    return {**state, "status": "awarded", "solver": best["solver"], "tried": tried, "timeout_ms": timeout_ms}, [
        Emit(market.topic("awards"), AWARD, award, key=ask_id)
    ]


def _bid_of(state: JsonObject, solver: str) -> JsonObject:
    return next(bid for bid in state["bids"] if bid["solver"] == solver)


def _due(state: JsonObject) -> bool:
    """Bidding closed with the ask still open, or the winner ran out of time."""
    now = now_ms()
    if state.get("status") == "open":
        return "close_ms" in state and now >= state["close_ms"]
    return state.get("status") == "awarded" and now >= state["timeout_ms"]
