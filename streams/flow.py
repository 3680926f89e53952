"""Flow control of model calls: token buckets per model, caps on calls in flight.

Every ``ctx.model.complete()`` of a worker goes through ``ThrottledModel``: it
takes a slot of the agent's and the worker's caps, then waits for its model's
buckets (requests and tokens) before calling. Input tokens are estimated before
the call and the bucket is corrected with the real usage after, so the budget
holds over time however wrong the estimate. A ``RateLimited`` answer (HTTP 429)
empties the buckets and holds them for its ``Retry-After``, so every caller of
that model waits instead of hammering the API, and the call is tried again.

Waiting here holds the handler, hence its dispatcher slot: once the slots are
full the dispatcher stops taking records and the agent stops fetching (see
``streams.wiring``), so a throttled agent falls behind in Kafka, not in memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from streams.errors import RateLimited
from streams.model import estimate_tokens
from streams.types import ChatMessage, Completion, Model

RATE_LIMIT_ATTEMPTS = 4
"""Calls of one ``complete()`` answered 429 before the ``RateLimited`` goes to the failure policy."""
RATE_LIMIT_BACKOFF_S = 1.0
"""How long a 429 without ``Retry-After`` holds the buckets, doubled on each further 429."""


@dataclass(frozen=True)
class ModelLimits:
    """One model's (or provider's) budget, from ``flow.models.<name>`` in topology.yaml."""

    tokens_per_s: float | None = None
    requests_per_s: float | None = None
    burst_tokens: float | None = None
    """Tokens that may be spent at once after a quiet spell; default one second's worth."""
    burst_requests: float | None = None
    line: int = 0


@dataclass(frozen=True)
class FlowSpec:
    """The ``flow:`` section: model budgets, the worker's cap on model calls, producer lag limit."""

    models: Mapping[str, ModelLimits] = field(default_factory=lambda: MappingProxyType({}))
    """Keyed by model name (``gpt-4o-mini``) or provider (``openai``, ``offline``); the name wins."""
    max_model_calls: int | None = None
    """Model calls in flight at once in one worker process, all agents together."""
    max_lag: int | None = None
    """Agent outputs and ``kappa-agents send`` wait while a consumer of the topic lags more than this."""


class TokenBucket:
    """``rate`` units per second, up to ``burst`` saved; waiters are served first come, first served.

    ``take`` may drive the level below zero (a call larger than the burst, or a
    correction after the fact): later callers then wait until it is paid off,
    so the long-run rate is exact.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._level = burst
        self._stamp = clock()
        self._held_until = 0.0
        self._turn = asyncio.Lock()

    @property
    def level(self) -> float:
        self._refill()
        return self._level

    async def take(self, amount: float) -> None:
        """Wait until ``amount`` (at most the burst) is available, then spend ``amount``."""
        need = min(amount, self.burst)
        async with self._turn:
            while (short := need - self.level) > 0:
                await asyncio.sleep(max(self._held_until - self._clock(), 0) + short / self.rate)
            self._level -= amount

    def settle(self, amount: float) -> None:
        """Spend ``amount`` more (or give back, when negative) without waiting: a correction."""
        self._level = min(self.level - amount, self.burst)

    def hold(self, seconds: float) -> None:
        """Nothing is available for ``seconds``: what was saved is gone and nothing refills."""
        self._refill()
        self._level = min(self._level, 0.0)
        self._held_until = max(self._held_until, self._clock() + seconds)

    def _refill(self) -> None:
        now = self._clock()
        since = max(self._stamp, self._held_until)
        if now > since:
            self._level = min(self.burst, self._level + (now - since) * self.rate)
        self._stamp = now


@dataclass(frozen=True)
class ModelBudget:
    """A model's buckets; either may be absent (no limit on that measure)."""

    tokens: TokenBucket | None
    requests: TokenBucket | None

    @classmethod
    def of(cls, limits: ModelLimits) -> ModelBudget:
        return cls(_bucket(limits.tokens_per_s, limits.burst_tokens), _bucket(limits.requests_per_s, limits.burst_requests))

    async def take(self, tokens: int) -> None:
        if self.requests is not None:
            await self.requests.take(1)
        if self.tokens is not None:
            await self.tokens.take(tokens)

    def settle(self, tokens: int) -> None:
        if self.tokens is not None:
            self.tokens.settle(tokens)

    def hold(self, seconds: float) -> None:
        for bucket in (self.tokens, self.requests):
            if bucket is not None:
                bucket.hold(seconds)


def _bucket(rate: float | None, burst: float | None) -> TokenBucket | None:
    return None if rate is None else TokenBucket(rate, burst if burst is not None else rate)


class ThrottledModel:
    """A model whose calls wait for their caps and budget; implements ``streams.types.Model``."""

    def __init__(self, model: Model, budget: ModelBudget | None, caps: Sequence[asyncio.Semaphore] = ()) -> None:
        self.name = model.name
        self._model = model
        self._budget = budget
        self._caps = caps

    async def complete(self, messages: Sequence[ChatMessage], **opts: Any) -> Completion:
        async with AsyncExitStack() as stack:
            for cap in self._caps:
                await stack.enter_async_context(cap)
            return await self._call(messages, opts)

    async def aclose(self) -> None:
        await self._model.aclose()

    async def _call(self, messages: Sequence[ChatMessage], opts: dict[str, Any]) -> Completion:
        budget = self._budget
        if budget is None:
            return await self._model.complete(messages, **opts)
        estimate = sum(estimate_tokens(message["content"]) for message in messages)
        refusals = 0
        while True:
            await budget.take(estimate)
            try:
                completion = await self._model.complete(messages, **opts)
            except RateLimited as exc:
                budget.settle(-estimate)  # refused: nothing was spent
                budget.hold(exc.retry_after if exc.retry_after is not None else RATE_LIMIT_BACKOFF_S * 2**refusals)
                refusals += 1
                if refusals == RATE_LIMIT_ATTEMPTS:
                    raise
                continue
            budget.settle(completion.input_tokens + completion.output_tokens - estimate)
            return completion


class FlowControl:
    """One worker's budgets and caps, built once from the topology and shared by its agents' streams."""

    def __init__(self, spec: FlowSpec) -> None:
        self._spec = spec
        self._budgets: dict[str, ModelBudget] = {}
        self._worker_cap = asyncio.Semaphore(spec.max_model_calls) if spec.max_model_calls else None
        self._agent_caps: dict[str, asyncio.Semaphore] = {}

    def throttle(self, model: Model, agent: str, max_model_calls: int | None) -> Model:
        """``model`` as ``agent``'s handlers get it: capped per agent and worker, within its budget."""
        caps = [self._agent_cap(agent, max_model_calls), self._worker_cap]
        return ThrottledModel(model, self._budget(model), [cap for cap in caps if cap is not None])

    def _budget(self, model: Model) -> ModelBudget | None:
        for name in (model.name, getattr(model, "system", "")):
            if isinstance(name, str) and name in self._spec.models:
                if name not in self._budgets:
                    self._budgets[name] = ModelBudget.of(self._spec.models[name])
                return self._budgets[name]
        return None

    def _agent_cap(self, agent: str, limit: int | None) -> asyncio.Semaphore | None:
        if limit is None:
            return None
        return self._agent_caps.setdefault(agent, asyncio.Semaphore(limit))
