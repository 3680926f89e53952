"""Concurrent handling that keeps per-key order and never commits past a gap.

LLM calls take seconds, so an agent handles up to ``concurrency`` events at
once. A handler may return what finishes its item (publishing it, say): that
runs without holding one of the ``concurrency`` slots, since waiting for the
broker to acknowledge is not handling, and still before the key's next item
starts. Two guarantees hold regardless:

* events with the same key run one after another, in offset order;
* an offset is released (acked, hence committable) only once it and every
  earlier offset of its partition finished, so a crash redelivers everything
  unfinished instead of skipping it (faust's own ``concurrency=`` commits past
  gaps: faust issues #312, #606).

``capacity`` bounds what is held in memory: ``submit`` waits when it is full,
which stops the caller from fetching, so a slow agent backs up into Kafka
rather than into RAM. This module knows nothing of faust or Kafka clients.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
Finish = Awaitable[None]
"""What completes a handled item outside its slot; the item counts as done once it returns."""


@dataclass(eq=False)
class _Entry(Generic[T]):
    partition: Hashable
    offset: int
    item: T
    done: bool = False


@dataclass
class _Partition(Generic[T]):
    """Entries of one partition in offset order; the head is the lowest unfinished.

    The lock keeps releases in offset order when two keys finish together.
    """

    entries: deque[_Entry[T]] = field(default_factory=deque)
    releasing: asyncio.Lock = field(default_factory=asyncio.Lock)


class KeyedDispatcher(Generic[T]):
    """Runs ``handle`` per item, ordered per key, releasing items in offset order per partition."""

    def __init__(
        self,
        handle: Callable[[T], Awaitable[Finish | None]],
        release: Callable[[T], Awaitable[None]],
        *,
        concurrency: int,
        capacity: int | None = None,
    ) -> None:
        self._handle = handle
        self._release = release
        self._slots = asyncio.Semaphore(concurrency)
        self._space = asyncio.Semaphore(capacity or concurrency * 4)
        self._chains: dict[Hashable, deque[_Entry[T]]] = {}
        self._partitions: dict[Hashable, _Partition[T]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._failed = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Items submitted and not yet released."""
        return self._pending

    async def submit(self, partition: Hashable, offset: int, key: Hashable | None, item: T) -> None:
        """Queue one item; waits while ``capacity`` items are pending.

        A ``None`` key has no order to keep: such items run independently.
        Raises the first unexpected error a handler raised, so a bug stops the
        agent instead of silently stalling its partition.
        """
        self._raise_failure()
        await self._space.acquire()
        if self._failure is not None:
            self._space.release()  # wake the next waiting submit, so it fails too
            self._raise_failure()
        entry = _Entry(partition, offset, item)
        self._partitions.setdefault(partition, _Partition()).entries.append(entry)
        self._pending += 1
        self._idle.clear()
        chain_key: Hashable = (partition, key) if key is not None else entry
        chain = self._chains.get(chain_key)
        if chain is not None:
            chain.append(entry)
            return
        self._chains[chain_key] = deque([entry])
        task = asyncio.create_task(self._run_chain(chain_key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every submitted item is handled and released."""
        await self._idle.wait()
        self._raise_failure()

    async def failed(self) -> None:
        """Wait for the first unexpected handler error, then raise it (never returns otherwise).

        ``submit`` raises it too, but only once more input arrives; a caller
        waiting for input that never comes (a broker that stopped answering
        fails the pending sends, and fetches nothing) learns of it here.
        """
        await self._failed.wait()
        self._raise_failure()

    async def close(self) -> None:
        """Cancel unfinished work; its offsets stay unreleased, so it is redelivered."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run_chain(self, chain_key: Hashable) -> None:
        chain = self._chains[chain_key]
        try:
            while chain:
                entry = chain[0]
                async with self._slots:
                    finish = await self._handle(entry.item)
                if finish is not None:
                    await finish
                entry.done = True
                chain.popleft()
                await self._release_done(entry.partition)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._failure = exc
            self._failed.set()
            self._space.release()  # a submit waiting for capacity must wake to see the failure
            self._idle.set()
        finally:
            self._chains.pop(chain_key, None)

    async def _release_done(self, partition: Hashable) -> None:
        state = self._partitions[partition]
        async with state.releasing:
            while state.entries and state.entries[0].done:
                entry = state.entries.popleft()
                await self._release(entry.item)
                self._pending -= 1
                self._space.release()
        if not self._pending:
            self._idle.set()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError("an agent handler failed outside the runtime's error handling") from self._failure
