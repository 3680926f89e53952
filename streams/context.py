"""The context a handler receives: emit, its tables, the model.

Whatever a handler emits (through ``ctx.emit`` or by returning/yielding
``Emit`` values) is checked against the topology and collected; the runtime
publishes it only after the handler returned, so a handler that fails halfway
publishes nothing and its retry cannot duplicate half an output.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from streams.catalog import EventCatalog
from streams.envelope import Event
from streams.effects import EffectScope
from streams.errors import EmitError, KappaError
from streams.human import Conversation
from streams.topology import AgentSpec
from streams.types import Emit, Handler, JsonObject, Model


class AgentContext:
    """One handler call's view of the runtime; implements ``streams.types.Context``."""

    def __init__(
        self,
        spec: AgentSpec,
        key: str | None,
        model: Model,
        tables: Mapping[str, MutableMapping[str, Any]],
        catalog: EventCatalog,
        effects: EffectScope | None = None,
        conversation: Conversation | None = None,
    ) -> None:
        self.agent = spec.name
        self.key = key
        """The incoming record's key: the default key of everything emitted."""
        self.model = model
        self.tables = tables
        self.outputs: list[Emit] = []
        self._spec = spec
        self._catalog = catalog
        self._effects = effects
        self._conversation = conversation

    async def emit(self, topic: str, type: str, payload: JsonObject, *, key: str | None = None) -> None:
        self.add(Emit(topic, type, payload, key))

    async def side_effect(self, action_type: str, act: Callable[[], Awaitable[Any]], *, irreversible: bool = False) -> Any:
        """Run ``act`` at most once per (task_id, action_type) and return its (recorded) result.

        ``irreversible=True``: never run twice, even after a crash mid-action
        (the event is dead-lettered as ``side_effect_unknown`` instead).
        """
        if self._effects is None:
            raise KappaError(f"agent '{self.agent}' has no side-effect table here; side effects run inside a worker")
        return await self._effects.run(action_type, act, irreversible=irreversible)

    async def ask_human(
        self, question: str, *, schema: JsonObject, timeout_s: float | None = None, on_timeout: str = "fail"
    ) -> JsonObject:
        """A person's answer matching the Avro ``schema``; the handler is parked until it exists (``streams.human``).

        The handler runs again from the start once the answer arrives, so what
        it did before asking must be repeatable: outputs are only published at
        the end, and side effects run once per task anyway.
        """
        if self._conversation is None:
            raise KappaError(f"agent '{self.agent}' cannot ask a person here; ask_human runs inside a worker")
        return await self._conversation.ask(question, schema, timeout_s, on_timeout)

    def add(self, emit: Emit) -> None:
        """Check one output against the topology and keep it for publishing."""
        if emit.topic not in self._spec.emits:
            allowed = ", ".join(self._spec.emits) or "nothing"
            raise EmitError(
                f"agent '{self.agent}' emitted to '{emit.topic}', which is not in its emits ({allowed}); "
                f"add it to agents.{self.agent}.emits in topology.yaml"
            )
        problem = self._catalog.problem(emit.topic, emit.type, emit.payload)
        if problem is not None:
            raise EmitError(f"agent '{self.agent}' emitted an invalid event to '{emit.topic}': {problem}")
        self.outputs.append(emit)


async def run_handler(handler: Handler, event: Event, ctx: AgentContext) -> list[Emit]:
    """Call a handler that returns or yields ``Emit`` values; all outputs, checked, in order."""
    result = handler(event, ctx)
    if inspect.isasyncgen(result):
        async for item in result:
            ctx.add(_as_emit(item))
        return ctx.outputs
    for item in _as_emits(await result):  # type: ignore[misc]
        ctx.add(item)
    return ctx.outputs


def _as_emits(result: object) -> Iterable[Emit]:
    if result is None:
        return ()
    if isinstance(result, Emit):
        return (result,)
    if isinstance(result, Iterable) and not isinstance(result, (str, bytes, dict)):
        return [_as_emit(item) for item in result]
    raise EmitError(f"handler returned {type(result).__name__}; return None, an Emit or a list of Emit")


def _as_emit(item: object) -> Emit:
    if not isinstance(item, Emit):
        raise EmitError(f"handler produced {type(item).__name__}; yield or return streams.types.Emit values")
    return item
