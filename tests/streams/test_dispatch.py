"""KeyedDispatcher: concurrent across keys, ordered within a key, never releasing past a gap."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from streams.dispatch import Finish, KeyedDispatcher


@dataclass(frozen=True)
class Item:
    partition: int
    offset: int
    key: str | None
    delay: float = 0.0


@dataclass
class Recorder:
    """What the dispatcher did, as seen from the outside: handler runs and releases."""

    gates: dict[tuple[int, int], asyncio.Event] = field(default_factory=dict)
    started: list[Item] = field(default_factory=list)
    finished: list[Item] = field(default_factory=list)
    cancelled: list[Item] = field(default_factory=list)
    released: list[Item] = field(default_factory=list)
    active: int = 0
    peak: int = 0

    def gate(self, partition: int, offset: int) -> asyncio.Event:
        """Holds that item's handler until set."""
        return self.gates.setdefault((partition, offset), asyncio.Event())

    async def handle(self, item: Item) -> None:
        self.started.append(item)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            gate = self.gates.get((item.partition, item.offset))
            if gate is not None:
                await gate.wait()
            await asyncio.sleep(item.delay)
        except asyncio.CancelledError:
            self.cancelled.append(item)
            raise
        finally:
            self.active -= 1
        self.finished.append(item)

    async def release(self, item: Item) -> None:
        self.released.append(item)

    def released_offsets(self, partition: int) -> list[int]:
        return [item.offset for item in self.released if item.partition == partition]


async def until(condition: Callable[[], bool], timeout: float = 0.5) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


async def submit(dispatcher: KeyedDispatcher[Item], item: Item) -> None:
    await dispatcher.submit(item.partition, item.offset, item.key, item)


async def test_same_key_items_run_one_at_a_time_in_submit_order() -> None:
    rng = random.Random(7)
    recorder = Recorder()
    running: dict[str | None, int] = defaultdict(int)
    overlaps: list[str | None] = []

    async def handle(item: Item) -> None:
        running[item.key] += 1
        if running[item.key] > 1:
            overlaps.append(item.key)
        await recorder.handle(item)
        running[item.key] -= 1

    dispatcher = KeyedDispatcher(handle, recorder.release, concurrency=16, capacity=1_000)
    keys = [f"account-{n}" for n in range(24)]
    offsets: dict[int, int] = defaultdict(int)
    submitted: list[Item] = []
    for _ in range(240):
        key = rng.choice(keys)
        partition = int(key.removeprefix("account-")) % 4
        item = Item(partition, offsets[partition], key, delay=rng.choice([0, 0.0005, 0.001, 0.003]))
        offsets[partition] += 1
        submitted.append(item)
        await submit(dispatcher, item)
    await dispatcher.drain()

    assert overlaps == []
    for key in keys:
        assert [i for i in recorder.started if i.key == key] == [i for i in submitted if i.key == key]
    assert recorder.peak > 1  # the keys did run concurrently
    for partition in range(4):
        assert recorder.released_offsets(partition) == list(range(offsets[partition]))


async def test_different_keys_overlap_up_to_the_concurrency_and_never_beyond() -> None:
    recorder = Recorder()
    dispatcher = KeyedDispatcher(recorder.handle, recorder.release, concurrency=4, capacity=100)
    for offset in range(20):
        await submit(dispatcher, Item(0, offset, f"key-{offset}", delay=0.005))
    await dispatcher.drain()

    assert recorder.peak == 4
    assert len(recorder.finished) == 20


async def test_a_slow_offset_holds_back_later_releases_of_its_partition_only() -> None:
    recorder = Recorder()
    dispatcher = KeyedDispatcher(recorder.handle, recorder.release, concurrency=16)
    slow = recorder.gate(partition=0, offset=0)
    await submit(dispatcher, Item(0, 0, "slow"))
    for offset in range(1, 6):
        await submit(dispatcher, Item(0, offset, f"fast-{offset}"))
    for offset in range(4):
        await submit(dispatcher, Item(1, offset, f"other-{offset}"))

    await until(lambda: len(recorder.finished) == 9)
    await asyncio.sleep(0.01)
    assert recorder.released_offsets(0) == []
    assert recorder.released_offsets(1) == [0, 1, 2, 3]
    assert dispatcher.pending == 6

    slow.set()
    await dispatcher.drain()
    assert recorder.released_offsets(0) == [0, 1, 2, 3, 4, 5]
    assert dispatcher.pending == 0


async def test_releases_follow_offsets_when_items_finish_in_reverse() -> None:
    recorder = Recorder()
    dispatcher = KeyedDispatcher(recorder.handle, recorder.release, concurrency=8)
    for offset in range(6):
        await submit(dispatcher, Item(0, offset, f"key-{offset}", delay=0.002 * (6 - offset)))
    await dispatcher.drain()

    assert [item.offset for item in recorder.finished] == [5, 4, 3, 2, 1, 0]
    assert recorder.released_offsets(0) == [0, 1, 2, 3, 4, 5]


async def test_the_same_key_on_different_partitions_is_not_serialized() -> None:
    recorder = Recorder()
    dispatcher = KeyedDispatcher(recorder.handle, recorder.release, concurrency=4)
    recorder.gate(0, 0)
    recorder.gate(1, 0)
    await submit(dispatcher, Item(0, 0, "same"))
    await submit(dispatcher, Item(1, 0, "same"))

    await until(lambda: recorder.active == 2)
    assert sorted(item.partition for item in recorder.started) == [0, 1]
    await dispatcher.close()


async def test_items_without_a_key_run_independently() -> None:
    recorder = Recorder()
    dispatcher = KeyedDispatcher(recorder.handle, recorder.release, concurrency=4)
    gates = [recorder.gate(0, offset) for offset in range(3)]
    for offset in range(3):
        await submit(dispatcher, Item(0, offset, None))

    await until(lambda: recorder.active == 3)
    for gate in reversed(gates):
        gate.set()
    await dispatcher.drain()
    assert recorder.released_offsets(0) == [0, 1, 2]


async def test_items_with_the_same_key_wait_for_each_other() -> None:
    recorder = Recorder()
    dispatcher = KeyedDispatcher(recorder.handle, recorder.release, concurrency=4)
    first = recorder.gate(0, 0)
    await submit(dispatcher, Item(0, 0, "k"))
    await submit(dispatcher, Item(0, 1, "k"))

    await until(lambda: recorder.active == 1)
    await asyncio.sleep(0.01)
    assert [item.offset for item in recorder.started] == [0]

    first.set()
    await dispatcher.drain()
    assert [item.offset for item in recorder.started] == [0, 1]


async def test_submit_waits_while_capacity_items_are_pending() -> None:
    recorder = Recorder()
    dispatcher = KeyedDispatcher(recorder.handle, recorder.release, concurrency=1, capacity=2)
    first = recorder.gate(0, 0)
    await submit(dispatcher, Item(0, 0, "a"))
    await submit(dispatcher, Item(0, 1, "b"))

    third = asyncio.create_task(submit(dispatcher, Item(0, 2, "c")))
    await asyncio.sleep(0.01)
    assert not third.done()
    assert dispatcher.pending == 2

    first.set()
    await asyncio.wait_for(third, 0.5)
    await dispatcher.drain()
    assert recorder.released_offsets(0) == [0, 1, 2]


async def test_close_cancels_unfinished_work_and_releases_nothing_past_it() -> None:
    """After a crash Kafka redelivers from the first unreleased offset: 1 and 2 both come back."""
    recorder = Recorder()
    dispatcher = KeyedDispatcher(recorder.handle, recorder.release, concurrency=4)
    recorder.gate(0, 1)
    for offset in range(3):
        await submit(dispatcher, Item(0, offset, f"key-{offset}"))
    await until(lambda: len(recorder.finished) == 2)

    await dispatcher.close()

    assert recorder.released_offsets(0) == [0]
    assert [item.offset for item in recorder.cancelled] == [1]
    assert dispatcher.pending == 2
    await asyncio.sleep(0.01)
    assert recorder.released_offsets(0) == [0]


async def test_close_cancels_items_still_waiting_for_their_key() -> None:
    recorder = Recorder()
    dispatcher = KeyedDispatcher(recorder.handle, recorder.release, concurrency=4)
    recorder.gate(0, 0)
    await submit(dispatcher, Item(0, 0, "k"))
    await submit(dispatcher, Item(0, 1, "k"))
    await until(lambda: recorder.active == 1)

    await dispatcher.close()
    await asyncio.sleep(0.01)

    assert [item.offset for item in recorder.started] == [0]
    assert recorder.released == []


class HandlerBug(Exception):
    pass


async def failing(item: Item) -> None:
    if item.key == "bug":
        raise HandlerBug(f"offset {item.offset}")


async def test_a_handler_failure_makes_the_next_submit_raise() -> None:
    recorder = Recorder()
    dispatcher = KeyedDispatcher(failing, recorder.release, concurrency=4)
    await submit(dispatcher, Item(0, 0, "bug"))
    await asyncio.sleep(0.01)

    with pytest.raises(RuntimeError) as caught:
        await submit(dispatcher, Item(0, 1, "fine"))
    assert isinstance(caught.value.__cause__, HandlerBug)
    assert str(caught.value.__cause__) == "offset 0"
    assert recorder.released == []


async def test_a_handler_failure_makes_drain_raise() -> None:
    recorder = Recorder()
    dispatcher = KeyedDispatcher(failing, recorder.release, concurrency=4)
    await submit(dispatcher, Item(0, 0, "fine"))
    await submit(dispatcher, Item(0, 1, "bug"))

    with pytest.raises(RuntimeError) as caught:
        await asyncio.wait_for(dispatcher.drain(), 0.5)
    assert isinstance(caught.value.__cause__, HandlerBug)
    assert recorder.released_offsets(0) == [0]


async def test_a_handler_failure_wakes_a_submit_blocked_on_capacity() -> None:
    """Otherwise a full dispatcher stalls silently: nothing will ever free the space."""
    release_gate = asyncio.Event()

    async def handle(item: Item) -> None:
        await release_gate.wait()
        raise HandlerBug(f"offset {item.offset}")

    async def release(item: Item) -> None:
        pass

    dispatcher = KeyedDispatcher(handle, release, concurrency=1, capacity=1)
    await submit(dispatcher, Item(0, 0, "bug"))
    blocked = asyncio.create_task(submit(dispatcher, Item(0, 1, "next")))
    await asyncio.sleep(0.01)
    assert not blocked.done()

    release_gate.set()
    try:
        with pytest.raises(RuntimeError) as caught:
            await asyncio.wait_for(asyncio.shield(blocked), 0.5)
        assert isinstance(caught.value.__cause__, HandlerBug)
    finally:
        blocked.cancel()
        await dispatcher.close()


async def test_drain_returns_at_once_when_nothing_was_submitted() -> None:
    recorder = Recorder()
    dispatcher = KeyedDispatcher(recorder.handle, recorder.release, concurrency=1)
    await asyncio.wait_for(dispatcher.drain(), 0.1)
    assert dispatcher.pending == 0


async def test_a_finish_holds_no_slot_but_comes_before_the_keys_next_item_and_the_release() -> None:
    """Publishing (waiting for the broker) runs outside the slot, so other keys are handled meanwhile."""
    recorder = Recorder()
    acknowledged = asyncio.Event()

    async def publish() -> None:
        await acknowledged.wait()

    async def handle(item: Item) -> Finish | None:
        await recorder.handle(item)
        return publish() if item.offset == 0 else None

    dispatcher = KeyedDispatcher(handle, recorder.release, concurrency=1)
    for offset, key in enumerate(["a", "b", "a"]):
        await submit(dispatcher, Item(0, offset, key))
    await until(lambda: [item.offset for item in recorder.finished] == [0, 1])
    await asyncio.sleep(0.01)
    assert [item.offset for item in recorder.started] == [0, 1]  # "a" waits for its first item's finish
    assert recorder.released == []

    acknowledged.set()
    await dispatcher.drain()
    assert [item.offset for item in recorder.started] == [0, 1, 2]
    assert recorder.released_offsets(0) == [0, 1, 2]


async def test_failed_raises_a_handler_failure_while_nothing_more_is_submitted() -> None:
    """A caller waiting for input that never comes (a wedged broker) still learns of the failure."""
    recorder = Recorder()
    dispatcher = KeyedDispatcher(failing, recorder.release, concurrency=4)
    failed = asyncio.create_task(dispatcher.failed())
    await submit(dispatcher, Item(0, 0, "fine"))
    await asyncio.sleep(0.01)
    assert not failed.done()

    await submit(dispatcher, Item(0, 1, "bug"))
    with pytest.raises(RuntimeError) as caught:
        await asyncio.wait_for(failed, 0.5)
    assert isinstance(caught.value.__cause__, HandlerBug)
    assert recorder.released_offsets(0) == [0]
