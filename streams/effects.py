"""Side effects outside Kafka: idempotent by (task_id, action_type), at most once when irreversible.

Kafka delivers at least once, so a handler may run twice for one event (a
crash before its offset was committed, a retry, a replay). Whatever it does to
the world goes through ``ctx.side_effect``, which keys the action by
``(task_id, action_type)`` in the agent's ``_effects`` RocksDB table:

* the key's *intent* is written and acknowledged by the broker (its changelog
  is the log of intents) before the action runs, its *result* after;
* a second run finds the result and returns it without acting again;
* an intent without a result means a crash in between: a reversible action
  runs again, an irreversible one never does, it fails as
  ``side_effect_unknown`` for a person to resolve;
* during a replay (events below the offsets a ``kappa-agents replay`` moved
  back from) no action runs; the recorded result, if any, is returned.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from streams.errors import AgentFailure
from streams.failures import Delivery
from streams.records import Incoming, Record

TABLE = "_effects"
"""The runtime's own table in every agent app; never dropped by ``replay --reset-tables``."""

Horizon = Mapping[tuple[str, int], int]
"""(physical topic, partition) → first offset a replay has not re-read yet."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EffectScope:
    """One handler call's access to side effects: which task, which delivery."""

    effects: SideEffects
    delivery: Delivery
    task_id: str

    async def run(self, action_type: str, act: Callable[[], Awaitable[Any]], *, irreversible: bool) -> Any:
        return await self.effects.run(self.delivery, self.task_id, action_type, act, irreversible=irreversible)


class SideEffectUnknown(AgentFailure):
    """An irreversible action was started and may or may not have happened."""

    category = "side_effect_unknown"


def horizon_of(records: Iterable[Incoming]) -> dict[tuple[str, int], int]:
    """Fold ``<agent>.replays``: per partition, the furthest offset any replay moved back from."""
    horizon: dict[tuple[str, int], int] = {}
    for record in records:
        if record.key is None or record.value is None:
            continue
        topic, _, partition = record.key.decode().rpartition(":")
        tp = (topic, int(partition))
        horizon[tp] = max(horizon.get(tp, -1), int(record.value))
    return horizon


def horizon_record(topic: str, move_topic: str, partition: int, moved_back_from: int) -> Record:
    """What ``kappa-agents replay`` writes for each partition it moves back."""
    return Record(topic, f"{move_topic}:{partition}".encode(), str(moved_back_from).encode(), [])


class SideEffects:
    """The agent's record of actions it took, and the rules for taking them."""

    def __init__(
        self,
        table: MutableMapping[str, Any],
        record: Callable[[str, Any], Awaitable[None]],
        horizon: Horizon,
    ) -> None:
        self._table = table
        self._record = record
        """Writes one entry and returns once the broker acknowledged it."""
        self._horizon = horizon

    def replaying(self, delivery: Delivery) -> bool:
        """Whether this event was already handled before a replay moved the offsets back."""
        return delivery.offset < self._horizon.get((delivery.topic, delivery.partition), -1)

    async def run(
        self, delivery: Delivery, task_id: str, action_type: str, act: Callable[[], Awaitable[Any]], *, irreversible: bool
    ) -> Any:
        """Run ``act`` once per (task_id, action_type); its result is returned, now or later."""
        key = f"{task_id}/{action_type}"
        entry = self._table.get(key)
        if entry is not None and entry["state"] == "done":
            return entry["result"]
        if self.replaying(delivery):
            log.info("replay: side effect %s would have run; skipped", key)
            return None
        if entry is not None and irreversible:
            raise SideEffectUnknown(f"irreversible action {key} started before a crash and may have happened; resolve it by hand")
        await self._record(key, {"state": "intent", "irreversible": irreversible})
        result = await act()
        await self._record(key, {"state": "done", "result": result})
        return result
