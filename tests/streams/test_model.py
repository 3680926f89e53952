"""The model interface: the offline model replays exactly; the OpenAI client meets a real HTTP server."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiohttp import web

from streams.errors import ConfigError, ModelError
from streams.model import (
    ContextWindowExceeded,
    ModelTimeout,
    ModelUnavailable,
    OfflineModel,
    OfflineSettings,
    OpenAIModel,
    OpenAISettings,
    RateLimited,
    estimate_tokens,
    model_from_env,
)

from tests.streams.conftest import Connect, chat_completion


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are an analyst."}, {"role": "user", "content": text}]


async def test_same_messages_give_the_same_completion() -> None:
    first = await OfflineModel().complete(ask("Is this transfer fraud? 12,500 EUR to a new payee"))
    second = await OfflineModel().complete(ask("Is this transfer fraud? 12,500 EUR to a new payee"))
    assert first == second


async def test_different_messages_give_different_text() -> None:
    model = OfflineModel()
    assert (await model.complete(ask("hello"))).text != (await model.complete(ask("goodbye"))).text


async def test_risk_prompt_is_assessed_from_its_largest_figure() -> None:
    model = OfflineModel()
    assert (await model.complete(ask("Fraud check: 3 transfers, 12,500 EUR"))).text == "risk: high (largest figure 12500 of 2)"
    assert (await model.complete(ask("Risk of a 40 EUR refund?"))).text == "risk: low (largest figure 40 of 1)"


async def test_summary_prompt_is_answered_with_the_first_sentence_of_the_material() -> None:
    completion = await OfflineModel().complete(ask("Summarize: The payee is new. It was added today."))
    assert completion.text == "summary: The payee is new."


async def test_other_prompts_are_acknowledged_with_their_first_80_characters() -> None:
    completion = await OfflineModel().complete(ask("x" * 100))
    assert completion.text == "ack: " + "x" * 80


async def test_offline_completion_counts_prompt_and_answer_tokens() -> None:
    completion = await OfflineModel(name="offline-test").complete(ask("hello"))
    assert completion.input_tokens == estimate_tokens("You are an analyst.") + estimate_tokens("hello")
    assert completion.output_tokens == estimate_tokens(completion.text)
    assert completion.model == "offline-test"


def test_tokens_are_estimated_at_four_characters_each_and_at_least_one() -> None:
    assert [estimate_tokens(text) for text in ("", "abc", "abcd", "abcde", "x" * 400)] == [1, 1, 1, 2, 100]


async def test_simulated_latency_overlaps_across_concurrent_calls() -> None:
    model = OfflineModel(OfflineSettings(latency_ms=200))
    started = time.monotonic()
    completions = await asyncio.gather(*(model.complete(ask(f"call {n}")) for n in range(20)))
    assert len(completions) == 20
    assert time.monotonic() - started < 1.5


async def outcomes(model: OfflineModel, count: int = 100) -> list[bool]:
    """Which of ``count`` distinct prompts fail (True) on this model."""
    failed = []
    for n in range(count):
        try:
            await model.complete(ask(f"prompt {n}"))
            failed.append(False)
        except ModelUnavailable:
            failed.append(True)
    return failed


async def test_zero_failure_rate_never_fails() -> None:
    assert not any(await outcomes(OfflineModel(OfflineSettings(failure_rate=0.0))))


async def test_full_failure_rate_always_fails() -> None:
    assert all(await outcomes(OfflineModel(OfflineSettings(failure_rate=1.0))))


async def test_partial_failure_rate_fails_the_same_subset_every_time() -> None:
    settings = OfflineSettings(failure_rate=0.3, seed=7)
    first = await outcomes(OfflineModel(settings))
    assert first == await outcomes(OfflineModel(settings))
    assert 15 <= sum(first) <= 45
    assert first != await outcomes(OfflineModel(OfflineSettings(failure_rate=0.3, seed=8)))


async def test_prompt_larger_than_the_context_window_is_refused() -> None:
    model = OfflineModel(OfflineSettings(context_window=100))
    assert (await model.complete(ask("x" * 300))).text.startswith("ack: ")
    with pytest.raises(ContextWindowExceeded, match="accepts 100"):
        await model.complete(ask("x" * 401))


async def test_openai_completion_parses_text_and_usage_from_the_server(connect: Connect) -> None:
    received: list[tuple[dict[str, object], str]] = []

    async def handler(request: web.Request) -> web.Response:
        received.append((await request.json(), request.headers["Authorization"]))
        return web.json_response(chat_completion("hi there"))

    completion = await (await connect(handler)).complete(ask("hello"), temperature=0)
    assert (completion.text, completion.input_tokens, completion.output_tokens) == ("hi there", 11, 3)
    assert completion.model == "m-1-2025"
    assert received == [({"model": "m-1", "messages": ask("hello"), "temperature": 0}, "Bearer sk-test")]


async def test_openai_calls_reuse_one_connection(connect: Connect) -> None:
    peers: list[object] = []

    async def handler(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response(chat_completion("ok"))

    model = await connect(handler)
    await model.complete(ask("one"))
    await model.complete(ask("two"))
    assert peers[0] is not None and peers[0] == peers[1]


async def test_http_429_raises_rate_limited_with_retry_after(connect: Connect) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "2.5"})

    with pytest.raises(RateLimited) as raised:
        await (await connect(handler)).complete(ask("hello"))
    assert raised.value.retry_after == 2.5


async def test_http_500_raises_model_error_with_status_and_body(connect: Connect) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=500, text="upstream exploded")

    with pytest.raises(ModelError, match="HTTP 500: upstream exploded"):
        await (await connect(handler)).complete(ask("hello"))


async def test_context_length_exceeded_raises_context_window_exceeded(connect: Connect) -> None:
    async def handler(request: web.Request) -> web.Response:
        error = {"message": "maximum context length is 8192 tokens", "code": "context_length_exceeded"}
        return web.json_response({"error": error}, status=400)

    with pytest.raises(ContextWindowExceeded):
        await (await connect(handler)).complete(ask("hello"))


async def test_body_that_is_not_a_chat_completion_raises_model_error(connect: Connect) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="<html>gateway</html>")

    with pytest.raises(ModelError, match="not a chat completion"):
        await (await connect(handler)).complete(ask("hello"))


async def test_slow_server_raises_model_timeout(connect: Connect) -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.json_response(chat_completion("too late"))

    with pytest.raises(ModelTimeout):
        await (await connect(handler, timeout_s=0.1)).complete(ask("hello"))


async def test_unreachable_server_raises_model_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = OpenAIModel(OpenAISettings(base_url=f"http://127.0.0.1:{port}/v1", timeout_s=5))
    try:
        with pytest.raises(ModelUnavailable, match=f"127.0.0.1:{port}"):
            await model.complete(ask("hello"))
    finally:
        await model.aclose()


def test_model_from_env_defaults_to_offline() -> None:
    assert model_from_env({}) == OfflineModel(OfflineSettings())


def test_model_from_env_reads_offline_settings() -> None:
    env = {"KAPPA_MODEL": "offline", "KAPPA_OFFLINE_LATENCY_MS": "250", "KAPPA_OFFLINE_FAILURE_RATE": "0.2"}
    model = model_from_env({**env, "KAPPA_OFFLINE_SEED": "42"})
    assert model == OfflineModel(OfflineSettings(latency_ms=250, failure_rate=0.2, seed=42))


def test_model_from_env_reads_openai_settings() -> None:
    env = {"KAPPA_MODEL": "openai", "KAPPA_OPENAI_API_KEY": "sk-1", "KAPPA_OPENAI_TIMEOUT_S": "7.5"}
    model = model_from_env(env)
    assert isinstance(model, OpenAIModel)
    assert model.settings == OpenAISettings(api_key="sk-1", timeout_s=7.5)
    assert model.name == "gpt-4o-mini"


def test_openai_settings_never_show_the_api_key() -> None:
    assert "sk-secret" not in repr(OpenAISettings(api_key="sk-secret"))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KAPPA_MODEL", "claude"),
        ("KAPPA_OFFLINE_LATENCY_MS", "-5"),
        ("KAPPA_OFFLINE_LATENCY_MS", "fast"),
        ("KAPPA_OFFLINE_FAILURE_RATE", "1.5"),
        ("KAPPA_OFFLINE_FAILURE_RATE", "nan"),
        ("KAPPA_OFFLINE_SEED", "0.5"),
    ],
)
def test_model_from_env_rejects_bad_offline_values_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"{name}=.*set it to"):
        model_from_env({name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [("KAPPA_OPENAI_TIMEOUT_S", "0"), ("KAPPA_OPENAI_BASE_URL", "localhost:8000"), ("KAPPA_OPENAI_API_KEY", "")],
)
def test_model_from_env_rejects_bad_openai_values_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        model_from_env({"KAPPA_MODEL": "openai", "KAPPA_OPENAI_API_KEY": "sk-1", name: value})
