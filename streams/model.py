"""The one interface every LLM call goes through, and the two models behind it.

``OfflineModel`` (the default) answers by deterministic rules with no network, so
tests, demos and benchmarks replay exactly; ``OpenAIModel`` speaks any
OpenAI-compatible chat API. Both raise the typed ``ModelError`` subclasses below,
which the dead-letter handling maps to categories, and both are traced alike.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from opentelemetry import trace

from streams.errors import ConfigError, ContextWindowExceeded, KappaError, ModelError, RateLimited
from streams.types import ChatMessage, Completion, JsonObject, Model

CHARS_PER_TOKEN = 4
_tracer = trace.get_tracer("kappa_agents")


class ModelUnavailable(ModelError):
    """The model could not be reached (or simulated an outage); a later retry may succeed."""


class ModelTimeout(ModelError):
    """The model did not answer within the request timeout."""


def estimate_tokens(text: str) -> int:
    """About four characters per token, at least one: provider-independent, so budgets agree everywhere."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


async def _traced(system: str, model: str, call: Awaitable[Completion]) -> Completion:
    """Await one model call inside a GenAI client span; every model goes through here so spans look alike."""
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": system,
        "gen_ai.provider.name": system,
        "gen_ai.request.model": model,
    }
    with _tracer.start_as_current_span(f"chat {model}", kind=trace.SpanKind.CLIENT, attributes=attributes) as span:
        try:
            completion = await call
        except KappaError as exc:
            span.set_attribute("error.type", type(exc).__name__)
            raise
        span.set_attributes(
            {
                "gen_ai.response.model": completion.model,
                "gen_ai.usage.input_tokens": completion.input_tokens,
                "gen_ai.usage.output_tokens": completion.output_tokens,
            }
        )
        return completion


@dataclass(frozen=True)
class OfflineSettings:
    """How the offline model misbehaves: all of it deterministic, so a run can be replayed exactly."""

    latency_ms: float = 0
    """Awaited with ``asyncio.sleep``, so concurrent calls overlap like real network calls."""
    failure_rate: float = 0.0
    """Share of distinct prompts that raise ``ModelUnavailable``; the same prompt always fares the same."""
    seed: int = 0
    """Chooses which prompts fail; change it to fail a different subset."""
    context_window: int = 8192


@dataclass
class OfflineModel:
    """Answers by a few rules on the last user message; the same messages always give the same completion."""

    settings: OfflineSettings = field(default_factory=OfflineSettings)
    name: str = "offline"
    system = "offline"

    async def complete(self, messages: Sequence[ChatMessage], **opts: Any) -> Completion:
        """``opts`` (temperature, max_tokens...) are accepted and ignored: the answer depends on the messages only."""
        return await _traced(self.system, self.name, self._answer(messages))

    async def aclose(self) -> None:
        """Nothing to release: the offline model holds no connections."""

    async def _answer(self, messages: Sequence[ChatMessage]) -> Completion:
        input_tokens = sum(estimate_tokens(message["content"]) for message in messages)
        if input_tokens > self.settings.context_window:
            raise ContextWindowExceeded(
                f"prompt is ~{input_tokens} tokens; model {self.name!r} accepts {self.settings.context_window}"
            )
        await asyncio.sleep(self.settings.latency_ms / 1000)
        if _fate(self.settings.seed, messages) < self.settings.failure_rate:
            raise ModelUnavailable(f"model {self.name!r} simulated an outage (failure_rate={self.settings.failure_rate})")
        text = _reply(_last_user_content(messages))
        return Completion(text=text, input_tokens=input_tokens, output_tokens=estimate_tokens(text), model=self.name)


def _fate(seed: int, messages: Sequence[ChatMessage]) -> float:
    """A number in [0, 1) fixed by the seed and the messages, unlike ``random``, so failures replay."""
    digest = hashlib.sha256(orjson.dumps([seed, [dict(message) for message in messages]])).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _last_user_content(messages: Sequence[ChatMessage]) -> str:
    return next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")


def _reply(request: str) -> str:
    lowered = request.lower()
    if "risk" in lowered or "fraud" in lowered:
        return _risk_assessment(request)
    if "summar" in lowered:
        return _summary(request)
    return f"ack: {request[:80]}"


def _risk_assessment(request: str) -> str:
    """Rates the largest figure in the prompt, so prompts about bigger amounts read as riskier."""
    figures = [float(number) for number in re.findall(r"\d+(?:\.\d+)?", request.replace(",", ""))]
    if not figures:
        return "risk: low (no figures to assess)"
    largest = max(figures)
    level = "high" if largest >= 10_000 else "medium" if largest >= 1_000 else "low"
    return f"risk: {level} (largest figure {largest:g} of {len(figures)})"


def _summary(request: str) -> str:
    """The first sentence of the material after the instruction ("Summarize: <material>")."""
    material = request.partition(":")[2].strip() or request.strip()
    first_sentence = re.split(r"(?<=[.!?])\s+", material, maxsplit=1)[0]
    return f"summary: {first_sentence[:200]}"


@dataclass(frozen=True)
class OpenAISettings:
    """Where an OpenAI-compatible chat API lives and how long to wait for it."""

    base_url: str = "https://api.openai.com/v1"
    api_key: str = field(default="", repr=False)
    model: str = "gpt-4o-mini"
    timeout_s: float = 60.0


class OpenAIModel:
    """An OpenAI-compatible client; one HTTP session is reused, so call ``aclose()`` when done."""

    system = "openai"

    def __init__(self, settings: OpenAISettings) -> None:
        self.settings = settings
        self.name = settings.model
        self._url = f"{settings.base_url.rstrip('/')}/chat/completions"
        self._session: aiohttp.ClientSession | None = None

    async def complete(self, messages: Sequence[ChatMessage], **opts: Any) -> Completion:
        """``opts`` go into the request body as they are (temperature, max_tokens, response_format...)."""
        payload = {"model": self.name, "messages": [dict(message) for message in messages], **opts}
        return await _traced(self.system, self.name, self._answer(payload))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _answer(self, payload: JsonObject) -> Completion:
        status, retry_after, body = await self._post(payload)
        if not 200 <= status < 300:
            raise _http_error(self._url, status, retry_after, body)
        return _completion_from(body, self.name)

    async def _post(self, payload: JsonObject) -> tuple[int, str | None, bytes]:
        """Sends the request; the library's errors become ours here and nowhere else."""
        try:
            async with self._session_now().post(self._url, data=orjson.dumps(payload)) as response:
                return response.status, response.headers.get("Retry-After"), await response.read()
        except TimeoutError as exc:
            raise ModelTimeout(f"{self._url} did not answer within {self.settings.timeout_s}s") from exc
        except aiohttp.ClientConnectionError as exc:
            raise ModelUnavailable(f"cannot reach {self._url}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise ModelError(f"request to {self._url} failed: {exc!r}") from exc

    def _session_now(self) -> aiohttp.ClientSession:
        """Created on first use, inside the running event loop that will own it."""
        if self._session is None:
            headers = {"Content-Type": "application/json"}
            if self.settings.api_key:
                headers["Authorization"] = f"Bearer {self.settings.api_key}"
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            self._session = aiohttp.ClientSession(headers=headers, timeout=timeout)
        return self._session


def _http_error(url: str, status: int, retry_after: str | None, body: bytes) -> KappaError:
    snippet = body[:300].decode(errors="replace")
    if status == 429:
        return RateLimited(f"{url} rate limited the call: {snippet}", retry_after=_seconds(retry_after))
    if status == 400 and _error_code(body) == "context_length_exceeded":
        return ContextWindowExceeded(f"{url} refused the prompt as too long: {snippet}")
    return ModelError(f"{url} answered HTTP {status}: {snippet}")


def _seconds(retry_after: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form gives None and the caller's own backoff decides."""
    try:
        return float(retry_after) if retry_after is not None else None
    except ValueError:
        return None


def _error_code(body: bytes) -> str | None:
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return error.get("code") if isinstance(error, dict) else None


def _completion_from(body: bytes, model: str) -> Completion:
    try:
        data = orjson.loads(body)
        usage = data["usage"]
        return Completion(
            text=data["choices"][0]["message"]["content"] or "",
            input_tokens=int(usage["prompt_tokens"]),
            output_tokens=int(usage["completion_tokens"]),
            model=data.get("model") or model,
            raw=data,
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ModelError(f"model {model!r} sent a body that is not a chat completion ({exc!r}): {body[:300]!r}") from exc


def model_from_env(environ: Mapping[str, str] | None = None) -> Model:
    """``KAPPA_MODEL`` picks the model (``offline`` unless set); its own ``KAPPA_*`` variables configure it."""
    env = os.environ if environ is None else environ
    kind = env.get("KAPPA_MODEL", "").strip().lower() or "offline"
    if kind == "offline":
        return OfflineModel(_offline_settings(env))
    if kind == "openai":
        return OpenAIModel(_openai_settings(env))
    raise ConfigError(f"KAPPA_MODEL={kind!r} is not a model; set it to 'offline' or 'openai'")


def _offline_settings(env: Mapping[str, str]) -> OfflineSettings:
    default = OfflineSettings()
    return OfflineSettings(
        latency_ms=_number(env, "KAPPA_OFFLINE_LATENCY_MS", default.latency_ms, "milliseconds, 0 or more", lambda v: v >= 0),
        failure_rate=_number(
            env, "KAPPA_OFFLINE_FAILURE_RATE", default.failure_rate, "a share from 0 to 1", lambda v: 0 <= v <= 1
        ),
        seed=int(_number(env, "KAPPA_OFFLINE_SEED", default.seed, "a whole number", float.is_integer)),
    )


def _openai_settings(env: Mapping[str, str]) -> OpenAISettings:
    default = OpenAISettings()
    base_url = env.get("KAPPA_OPENAI_BASE_URL") or default.base_url
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"KAPPA_OPENAI_BASE_URL={base_url!r} is not a URL; set it to e.g. {default.base_url}")
    api_key = env.get("KAPPA_OPENAI_API_KEY", "")
    if not api_key and base_url == default.base_url:
        raise ConfigError(f"KAPPA_OPENAI_API_KEY is not set; {default.base_url} needs it (or set KAPPA_MODEL=offline)")
    return OpenAISettings(
        base_url=base_url,
        api_key=api_key,
        model=env.get("KAPPA_OPENAI_MODEL") or default.model,
        timeout_s=_number(env, "KAPPA_OPENAI_TIMEOUT_S", default.timeout_s, "seconds above 0", lambda v: v > 0),
    )


def _number(env: Mapping[str, str], name: str, default: float, expected: str, valid: Callable[[float], bool]) -> float:
    """Reads one numeric variable; a bad value names the variable, what it should be and an example."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and valid(value)):
        raise ConfigError(f"{name}={raw!r} is not valid: expected {expected}; set it to e.g. {default:g}")
    return value
