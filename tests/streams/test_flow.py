"""Flow control: model calls wait for their bucket and caps, a 429 holds the bucket, topology declares it all."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from streams.errors import RateLimited, TopologyError
from streams.flow import FlowControl, FlowSpec, ModelBudget, ModelLimits, ThrottledModel, TokenBucket
from streams.model import OfflineModel, OfflineSettings
from streams.topology import load_topology
from streams.types import ChatMessage, Completion
from tests.streams.conftest import Connect, chat_completion


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def timed(*calls: Any) -> float:
    started = time.monotonic()
    await asyncio.gather(*calls)
    return time.monotonic() - started


async def test_bucket_serves_its_burst_at_once_then_waits_at_its_rate() -> None:
    bucket = TokenBucket(rate=100, burst=50)
    assert await timed(bucket.take(50)) < 0.05
    assert 0.25 <= await timed(bucket.take(30)) < 0.45  # 30 tokens at 100/s


async def test_a_call_larger_than_the_burst_runs_and_later_callers_pay_its_debt() -> None:
    bucket = TokenBucket(rate=100, burst=10)
    assert await timed(bucket.take(40)) < 0.05  # waits only for a full burst
    assert 0.28 <= await timed(bucket.take(1)) < 0.45  # 30 owed + 1, at 100/s


async def test_model_calls_wait_for_the_token_bucket_and_are_corrected_by_real_usage() -> None:
    class Verbose:
        """Answers 100 output tokens to every prompt, far beyond the input estimate."""

        name = "verbose"

        async def complete(self, messages: Sequence[ChatMessage], **opts: Any) -> Completion:
            return Completion("...", input_tokens=1, output_tokens=100, model=self.name)

        async def aclose(self) -> None:
            pass

    model = ThrottledModel(Verbose(), ModelBudget.of(ModelLimits(tokens_per_s=500, burst_tokens=101)))
    assert await timed(model.complete(ask("hi"))) < 0.05
    # each call costs 101 tokens, not the 1 estimated: a call waits for the debt of the one before
    # (~0.2 s at 500/s), so 3 more calls take ~0.4 s and the last one's debt is left for the next
    assert 0.38 <= await timed(*(model.complete(ask("hi")) for _ in range(3))) < 0.6


async def test_requests_per_second_spaces_out_calls() -> None:
    model = ThrottledModel(OfflineModel(), ModelBudget.of(ModelLimits(requests_per_s=20, burst_requests=1)))
    assert 0.45 <= await timed(*(model.complete(ask(f"q{i}")) for i in range(11))) < 0.7


async def test_caps_limit_calls_in_flight_per_agent_and_per_worker() -> None:
    flow = FlowControl(FlowSpec(max_model_calls=3))
    slow = OfflineModel(OfflineSettings(latency_ms=100))
    fraud = flow.throttle(slow, "fraud", max_model_calls=2)
    compliance = flow.throttle(slow, "compliance", max_model_calls=None)
    assert 0.3 <= await timed(*(fraud.complete(ask(f"f{i}")) for i in range(6))) < 0.4  # 2 at a time
    assert 0.2 <= await timed(*(compliance.complete(ask(f"c{i}")) for i in range(6))) < 0.3  # the worker's 3
    assert 0.2 <= await timed(*(m.complete(ask(f"b{i}")) for i in range(3) for m in (fraud, compliance))) < 0.3


async def test_http_429_holds_the_bucket_for_retry_after_then_the_call_succeeds(connect: Connect) -> None:
    arrivals: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        if len(arrivals) == 1:
            return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "0.5"})
        return web.json_response(chat_completion("ok"))

    flow = FlowControl(FlowSpec(models={"openai": ModelLimits(requests_per_s=1000)}))
    model = flow.throttle(await connect(handler), "fraud", None)
    first = asyncio.create_task(model.complete(ask("one")))
    await asyncio.sleep(0.1)  # the 429 has arrived: the bucket is held
    others = [model.complete(ask(f"later {i}")) for i in range(3)]
    answers = await asyncio.gather(first, *others)

    assert [answer.text for answer in answers] == ["ok"] * 4
    assert len(arrivals) == 5  # one refusal, then each call once: nobody hammered the API
    assert min(arrivals[1:]) - arrivals[0] >= 0.5


async def test_persistent_429_ends_as_rate_limited_for_the_failure_policy(connect: Connect) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "quota"}}, status=429, headers={"Retry-After": "0.05"})

    flow = FlowControl(FlowSpec(models={"m-1": ModelLimits(tokens_per_s=10_000)}))
    with pytest.raises(RateLimited):
        await flow.throttle(await connect(handler), "fraud", None).complete(ask("hello"))


async def test_a_model_without_declared_limits_is_called_directly() -> None:
    model = FlowControl(FlowSpec(models={"other": ModelLimits(requests_per_s=1)})).throttle(OfflineModel(), "a", None)
    assert await timed(*(model.complete(ask(f"q{i}")) for i in range(20))) < 0.1


def write(tmp_path: Path, flow: str, agent_extra: str = "") -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text(
        "app: demo\ntopics: {a: {}, b: {}}\n"
        f"agents:\n  fraud: {{handler: x:handle, subscribe: a, emits: [b]{agent_extra}}}\n"
        + textwrap.dedent(flow)
    )
    return path


def test_flow_section_declares_buckets_caps_and_lag_limit(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        flow:
          models:
            gpt-4o-mini: {tokens_per_s: 1000, requests_per_s: 5, burst_tokens: 4000}
          max_model_calls: 64
          max_lag: 5000
        """, ", max_model_calls: 8")
    topology = load_topology(path, import_handlers=False)
    assert topology.flow.models["gpt-4o-mini"] == ModelLimits(
        tokens_per_s=1000, requests_per_s=5, burst_tokens=4000, burst_requests=None, line=7
    )
    assert (topology.flow.max_model_calls, topology.flow.max_lag) == (64, 5000)
    assert topology.agents["fraud"].max_model_calls == 8


def test_bad_flow_entries_are_reported_with_their_lines(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        flow:
          models:
            gpt: {burst_tokens: 10}
            slow: {tokens_per_s: -1, request_per_s: 2}
          max_lag: 0
        """)
    with pytest.raises(TopologyError) as caught:
        load_topology(path, import_handlers=False)
    found = {(p.line, p.where, p.message) for p in caught.value.problems}
    assert found == {
        (7, "flow.models.gpt", "a model's limits need a rate"),
        (8, "flow.models.slow.tokens_per_s", "expected a number > 0, got -1"),
        (8, "flow.models.slow.request_per_s", "unknown key 'request_per_s' (did you mean 'requests_per_s'?)"),
        (9, "flow.max_lag", "expected a whole number >= 1, got 0"),
    }
