"""A real HTTP server speaking the OpenAI chat API, for the model tests and the flow-control tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from streams.model import OpenAIModel, OpenAISettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Connect = Callable[..., Awaitable[OpenAIModel]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Serves one handler on 127.0.0.1 (random port) and gives an OpenAIModel pointed at it."""
    runners: list[web.AppRunner] = []
    models: list[OpenAIModel] = []

    async def serve(handler: Handler, timeout_s: float = 5.0) -> OpenAIModel:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        settings = OpenAISettings(base_url=f"http://{host}:{port}/v1", api_key="sk-test", model="m-1", timeout_s=timeout_s)
        models.append(OpenAIModel(settings))
        return models[-1]

    yield serve
    for model in models:
        await model.aclose()
    for runner in runners:
        await runner.cleanup()


def chat_completion(text: str, prompt_tokens: int = 11, completion_tokens: int = 3) -> dict[str, object]:
    return {
        "model": "m-1-2025",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }


