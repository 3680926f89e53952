"""Table writes count among an event's consequences: its offset waits for their changelog records.

faust sends a table write's changelog record in the background, and its own
agents ack the event as soon as the handler returns. A worker that dies after
that offset is committed but before the record reached the broker leaves a
table that, rebuilt from its changelog on another worker, lacks the write
while the event counts as handled: a lost update. (faust also drops a changelog
record whose send failed, with a log line.) ``DurableTable`` hands every
changelog send made while an event is handled to that event, and the runtime
(agents and the projections worker) acks the event only once they are
acknowledged, as it does for its outputs.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import faust
from faust.types.tuples import FutureMessage

from streams.errors import BrokerError

_SENDS: ContextVar[list[FutureMessage] | None] = ContextVar("kappa_changelog_sends", default=None)


class DurableTable(faust.Table):  # type: ignore[type-arg]
    """faust's table, whose changelog sends the event being handled can wait for."""

    def send_changelog(
        self, partition: int | None, key: Any, value: Any, key_serializer: Any = None, value_serializer: Any = None
    ) -> FutureMessage:
        sent = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        sends = _SENDS.get()
        if sends is not None:
            sends.append(sent)
        return sent


def changelog_sends() -> list[FutureMessage]:
    """The changelog sends the current task makes from now on (each event's handling starts a new list)."""
    sends: list[FutureMessage] = []
    _SENDS.set(sends)
    return sends


async def acknowledged(sends: list[FutureMessage]) -> None:
    """Return once every changelog send is acknowledged by the broker.

    Raises BrokerError for a record the broker did not take, so the event that
    wrote it stays unacked and is handled again after the restart that follows.
    """
    for sent in sends:
        try:
            await sent
        except Exception as exc:
            raise BrokerError(f"table changelog write to topic '{sent.message.channel.get_topic_name()}' failed: {exc!r}") from exc
