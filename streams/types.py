"""The contracts between agents and the runtime, kept small on purpose.

An agent is ``async def handle(event, ctx)``; it returns or yields ``Emit``
values, or calls ``ctx.emit``. Nothing here imports faust or confluent_kafka:
agents depend on these names only, so the engine can change under them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from streams.envelope import Event

JsonObject = dict[str, Any]
ChatMessage = Mapping[str, str]
"""``{"role": "system" | "user" | "assistant", "content": "..."}`` as in the OpenAI API."""


@dataclass(frozen=True)
class Emit:
    """An event an agent wants published: a logical topic, a type and its payload.

    ``key`` chooses the partition (and per-key order downstream); it defaults to
    the incoming event's key so a task stays on one partition end to end.
    """

    topic: str
    type: str
    payload: JsonObject
    key: str | None = None


@dataclass(frozen=True)
class Completion:
    """What a model call returns: the text and the tokens it cost."""

    text: str
    input_tokens: int
    output_tokens: int
    model: str
    raw: JsonObject = field(default_factory=dict)


class Model(Protocol):
    """The one interface every LLM call goes through."""

    name: str

    async def complete(self, messages: Sequence[ChatMessage], **opts: Any) -> Completion: ...

    async def aclose(self) -> None:
        """Release connections; the model is not used afterwards."""


class Context(Protocol):
    """What a handler may touch while it handles one event."""

    agent: str
    model: Model
    tables: Mapping[str, MutableMapping[str, Any]]

    async def emit(self, topic: str, type: str, payload: JsonObject, *, key: str | None = None) -> None: ...

    async def side_effect(self, action_type: str, act: Callable[[], Awaitable[Any]], *, irreversible: bool = False) -> Any: ...

    async def ask_human(
        self, question: str, *, schema: JsonObject, timeout_s: float | None = None, on_timeout: str = "fail"
    ) -> JsonObject: ...


HandlerResult = Awaitable[Iterable[Emit] | Emit | None] | AsyncIterator[Emit]
Handler = Callable[["Event", Context], HandlerResult]
