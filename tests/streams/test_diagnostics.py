"""Where a stuck worker's tasks wait (``kill -USR1``)."""

from __future__ import annotations

import asyncio

from streams.diagnostics import task_stacks


async def _waits_for_an_acknowledgement(acked: asyncio.Event) -> None:
    await acked.wait()


async def test_the_dump_names_each_waiting_task_and_the_await_it_waits_in() -> None:
    acked = asyncio.Event()
    stuck = asyncio.create_task(_waits_for_an_acknowledgement(acked), name="stuck-publish")
    await asyncio.sleep(0)

    dump = task_stacks()

    acked.set()
    await stuck
    [waiting] = [line for line in dump.splitlines() if "_waits_for_an_acknowledgement" in line]
    assert "task stuck-publish:" in dump and "test_diagnostics.py:11)" in waiting
