"""What reaches an agent's dispatcher from faust: each partition's records once, in order, none skipped.

The dispatcher acks in the order it was handed records, so faust commits only
what was handled, provided the records it was handed have no holes. faust's
fetch path around a rebalance breaks that (faust issues #216 and #606, seen on
every restart after a crash here): it resumes the input partitions before
seeking them to the committed offsets, so records from wherever the client
started arrive first, and after the seek it can skip a record while its own
gap bookkeeping marks the skipped offsets as done. ``Intake`` therefore starts
each partition at its committed offset after every rebalance, drops what is
below the next expected offset (already handed over) and, when a record jumps
past it, seeks back and waits for the missing one.

A jump that persists after ``SEEK_ATTEMPTS`` seeks is a real hole in the log
(compaction, retention): it is logged and accepted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from faust.types import TP, AppT, EventT

SEEK_ATTEMPTS = 3
SEEK_PATIENCE_S = 5.0
"""How long records past a missing offset are dropped before seeking for it again."""
REBALANCE_POLL_S = 0.05

log = logging.getLogger(__name__)


class Intake:
    """Per partition, the next offset an agent's dispatcher must see, and the seeks to get it."""

    def __init__(self, app: AppT) -> None:
        self._app = app
        self._generation: int | None = None
        self._next: dict[TP, int] = {}
        self._seeks: dict[TP, tuple[int, int, float]] = {}
        """tp → (offset sought, attempts, when)."""

    async def watch(self) -> None:
        """Seek again for missing records that have not come within ``SEEK_PATIENCE_S``.

        A seek can go unanswered (nothing more is fetched for the partition),
        and ``admit`` only runs when some record arrives; this runs until cancelled.
        """
        while True:
            await asyncio.sleep(SEEK_PATIENCE_S / 2)
            now = time.monotonic()
            for tp, (sought, attempts, when) in list(self._seeks.items()):
                if now - when >= SEEK_PATIENCE_S and not self._app.rebalancing:
                    await self._seek(tp, sought, attempts + 1)

    async def admit(self, batch: Iterable[EventT]) -> list[EventT]:
        """The records of ``batch`` that continue their partitions without a hole."""
        await self._rebalanced()
        admitted = []
        for event in batch:
            tp, offset = event.message.tp, event.message.offset
            expected = self._next.get(tp, self._committed(tp))
            if expected is None or offset == expected:
                self._next[tp] = offset + 1
                self._seeks.pop(tp, None)
                admitted.append(event)
            elif offset > expected and await self._missing(tp, expected, offset):
                self._next[tp] = offset + 1
                admitted.append(event)
            else:
                self._let_go(event)
        return admitted

    def _let_go(self, event: EventT) -> None:
        """Take a dropped record off faust's list of records in progress, without acking its offset.

        faust's shutdown and rebalances wait until every record it delivered is
        acked, so a dropped copy held a stopping worker forever. Acking it would
        record its offset as handled, which only the copy that counts (handled
        already, in flight, or coming again after the seek) may do.
        """
        message = event.message
        message.acked = True
        self._app.consumer._unacked_messages.discard(message)  # type: ignore[attr-defined]

    async def _rebalanced(self) -> None:
        """Wait out a rebalance; after one, start every partition again from its committed offset."""
        while self._app.rebalancing:
            await asyncio.sleep(REBALANCE_POLL_S)
        generation = self._app.consumer_generation_id
        if generation != self._generation:
            self._generation = generation
            self._next.clear()
            self._seeks.clear()

    def _committed(self, tp: TP) -> int | None:
        # faust keeps no public view of the offsets it sought to after the rebalance.
        committed: dict[TP, int | None] = self._app.consumer._committed_offset  # type: ignore[attr-defined]
        return committed.get(tp)

    async def _missing(self, tp: TP, expected: int, offset: int) -> bool:
        """Seek back for ``expected``; True once the hole is accepted as part of the log."""
        sought, attempts, when = self._seeks.get(tp, (expected, 0, 0.0))
        if sought == expected and attempts and time.monotonic() - when < SEEK_PATIENCE_S:
            return False  # records fetched before the seek; the missing one is coming
        if sought == expected and attempts >= SEEK_ATTEMPTS:
            log.warning("offsets %d..%d of %s[%d] are not in the log (compaction or retention); going on", expected, offset - 1, tp.topic, tp.partition)
            self._seeks.pop(tp, None)
            return True
        log.info("%s[%d]: record %d arrived before %d; seeking back to it", tp.topic, tp.partition, offset, expected)
        await self._seek(tp, expected, attempts + 1 if sought == expected else 1)
        return False

    async def _seek(self, tp: TP, offset: int, attempt: int) -> None:
        self._seeks[tp] = (offset, attempt, time.monotonic())
        consumer: Any = self._app.consumer
        consumer._gap[tp].clear()  # faust's gaps would let it commit past the offsets we seek back to
        await consumer.seek(tp, offset)
