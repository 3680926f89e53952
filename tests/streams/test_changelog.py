"""An event's table writes hold its ack until their changelog records are acknowledged (real, unstarted faust app)."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import faust
import pytest
from faust.streams import _current_event
from faust.types.tuples import FutureMessage, Message

from streams.changelog import DurableTable, acknowledged, changelog_sends
from streams.errors import BrokerError


def _table() -> Any:
    app = faust.App("changelog-test", broker="kafka://127.0.0.1:1", store="memory://", Table=DurableTable)
    return app.Table("totals", default=int, partitions=1)


def _handle(table: Any, offset: int, **values: int) -> tuple[faust.Event, list[FutureMessage]]:
    """As the runtime handles an event (its partition is the tables'): the event, weakly held (keep it), and its writes."""
    event = faust.Event(table.app, b"k", b"v", None, Message("in", 0, offset, 0.0, 0, None, b"k", b"v", None))
    _current_event.set(weakref.ref(event))
    writes = changelog_sends()
    for key, value in values.items():
        table[key] = value
    return event, writes


def test_an_event_waits_until_each_of_its_table_writes_is_acknowledged() -> None:
    async def scenario() -> None:
        event, writes = _handle(_table(), 0, a=1, b=2)
        durable = asyncio.ensure_future(acknowledged(writes))
        await asyncio.sleep(0.01)
        assert [(w.message.key, w.message.value) for w in writes] == [(b'"a"', b"1"), (b'"b"', b"2")]
        assert not durable.done()
        writes[0].set_result(None)
        await asyncio.sleep(0.01)
        assert not durable.done()
        writes[1].set_result(None)
        await asyncio.wait_for(durable, 1)

    asyncio.run(scenario())


def test_a_changelog_write_the_broker_refused_fails_the_event() -> None:
    async def scenario() -> None:
        event, writes = _handle(_table(), 0, a=1)
        writes[0].set_exception(TimeoutError("no acknowledgement within 60 s"))
        with pytest.raises(BrokerError, match="changelog-test-totals-changelog"):
            await acknowledged(writes)

    asyncio.run(scenario())


def test_each_event_waits_for_its_own_writes_only() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        table = _table()
        first_event, first = _handle(table, 0, a=1)
        second_event, second = _handle(table, 1, a=2)
        return [w.message.value for w in first], [w.message.value for w in second]

    assert asyncio.run(scenario()) == ([b"1"], [b"2"])
