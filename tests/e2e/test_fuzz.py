"""Fuzzed input: garbage of every kind lands on the DLQ with a reason; the worker and valid events carry on."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import orjson
import pytest

from streams.edge import read_to_end
from streams.envelope import encode, encode_json, new_event
from streams.failures import DLQ, fields
from streams.producer import publish
from streams.records import Headers, Record
from streams.types import JsonObject
from tests.e2e.harness import Cluster, payloads_of

pytestmark = pytest.mark.e2e

GARBAGE = 1000
VALID = 200
HUGE = 400_000
"""Bytes in a huge field: big, yet with its dead-letter headers under the 1 MB a record may have."""
ID = "fuzz.id"
"""Header naming each garbage record, so its dead letter is found whatever its key."""


def _event(type_: str, payload: JsonObject) -> bytes:
    return encode(new_event(type_, payload, source="fuzz", timestamp=int(time.time() * 1000)))


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 éü✓\0\n\"\\") for _ in range(n))


def _odd_value(rng: random.Random) -> object:
    return rng.choice([None, True, -1, -(2**63), 1.5, "seven", [], ["a"], {}, {"k": [1, {"x": None}]}, _text(rng, 20)])


def _random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randrange(1, 2000))


def _truncated_avro(rng: random.Random) -> bytes:
    whole = _event("count.request", {"key": "k", "seq": 1})
    return whole[: rng.randrange(0, len(whole) - 1)]


def _flipped_avro(rng: random.Random) -> bytes:
    """A valid envelope with its body (after magic and fingerprint) partly overwritten."""
    whole = bytearray(_event("count.request", {"key": "k", "seq": 1}))
    at = rng.randrange(10, len(whole))
    whole[at:] = rng.randbytes(len(whole) - at)
    whole[-1] = 0xFF  # a body cut short or running long either way
    return bytes(whole) + rng.randbytes(rng.randrange(0, 8))


def _missing_field(rng: random.Random) -> bytes:
    return _event("count.request", rng.choice([{}, {"key": "k"}, {"seq": 3}, {"other": 1}]))


def _wrong_types(rng: random.Random) -> bytes:
    payload = {"key": _odd_value(rng), "seq": _odd_value(rng)}
    if isinstance(payload["key"], str) and isinstance(payload["seq"], int) and not isinstance(payload["seq"], bool):
        payload["seq"] = "not a number"
    return _event("count.request", payload)


def _unknown_type(rng: random.Random) -> bytes:
    return _event(rng.choice(["count.reqest", "counted", "", "x" * 300, _text(rng, 12)]) or "?", {"key": "k", "seq": 1})


def _huge_field(rng: random.Random) -> bytes:
    return _event("count.request", {"key": "k" * HUGE, "seq": "huge"} if rng.random() < 0.5 else {"key": 1, "seq": 1, "notes": "n" * HUGE})


def _json_garbage(rng: random.Random) -> bytes:
    """JSON where Avro belongs: not an object, not an envelope, or an envelope with a bad payload."""
    event = new_event("count.request", {"key": "k", "seq": "1"}, source="fuzz", timestamp=0)
    return rng.choice([
        orjson.dumps(_odd_value(rng)) if rng.random() < 0.5 else b"[1, 2",
        orjson.dumps({"type": "count.request"}),
        orjson.dumps({"type": "count.request", "payload": _odd_value(rng) or "x"}),
        orjson.dumps({"type": "count.request", "payload": {"key": "k", "seq": 1}, "lineage": "agent"}),
        orjson.dumps({"type": "count.request", "payload": {"key": "k", "seq": 1}, "surprise": 1}),
        encode_json(event),
        b" " + _text(rng, 50).encode(),
    ])  # fmt: skip


def _empty(rng: random.Random) -> bytes | None:
    return rng.choice([b"", None])


GENERATORS: list[Callable[[random.Random], bytes | None]] = [
    _random_bytes, _truncated_avro, _flipped_avro, _missing_field, _wrong_types,
    _unknown_type, _huge_field, _json_garbage, _empty,
]  # fmt: skip


def _weird_headers(rng: random.Random) -> Headers:
    """Headers a careless or hostile producer might write, ours included."""
    return rng.choice([
        [],
        [("traceparent", b"not-a-trace")],
        [("x", None), ("x", b"\xff\xfe"), ("", b"")],
        [("retry.topic", b"elsewhere"), ("retry.partition", b"zero"), ("retry.attempt", b"-1")],
        [("retry.attempt", b"\xff"), ("retry.due_ms", b"soon")],
        [("dlq.category", b"forged"), ("redrive.from", None)],
        [("big", rng.randbytes(10_000))],
    ])  # fmt: skip


def _garbage(rng: random.Random, n: int, topic: str) -> Record:
    """Garbage ``n``: null keys half the time; its id travels in a header either way."""
    value = rng.choice(GENERATORS)(rng)
    key = None if rng.random() < 0.5 else rng.choice([f"g-{n}".encode(), rng.randbytes(8)])
    return Record(topic, key, value, [*_weird_headers(rng), (ID, str(n).encode())])


def _valid(n: int, topic: str) -> Record:
    return Record(topic, f"acct-{n % 8}".encode(), _event("count.request", {"key": f"acct-{n % 8}", "seq": n}), [])


def test_garbage_is_dead_lettered_with_a_reason_while_valid_events_flow(fuzz_cluster: Cluster) -> None:
    c = fuzz_cluster
    rng = random.Random(20261202)
    topic = c.topology.topic_name("counter.in")
    valid_at = set(rng.sample(range(GARBAGE + VALID), VALID))
    records, garbage_ids, seq = [], iter(range(GARBAGE)), iter(range(VALID))
    for slot in range(GARBAGE + VALID):
        records.append(_valid(next(seq), topic) if slot in valid_at else _garbage(rng, next(garbage_ids), topic))
    worker = c.start("counter")
    publish(c.profile, records)

    out = payloads_of(c.read("counter.out", VALID))
    dead = _dead_letters(c, GARBAGE)

    assert sorted(p["seq"] for p in out) == list(range(VALID))  # every valid event, once
    assert sorted(dead) == list(range(GARBAGE))  # every garbage record, once
    assert all(reason["category"] == "poison" and reason["error"] for reason in dead.values())
    assert worker.alive()


def _dead_letters(c: Cluster, expect: int, timeout: float = 60.0) -> dict[int, dict[str, str]]:
    """Garbage id → its dead letter's ``dlq.*`` reason, once ``expect`` arrived (or time ran out)."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_to_end(c.profile, c.topology.topic_name("counter.dlq"))
        if len(records) >= expect or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    ids = [int(dict((k, v) for k, v in r.headers if k == ID)[ID] or b"") for r in records]
    assert len(ids) == len(set(ids)), "a garbage record was dead-lettered twice"
    return {n: fields(r.headers, DLQ) for n, r in zip(ids, records)}
