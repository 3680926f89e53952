"""The envelope: Avro inside, JSON at the edges, and nothing but EnvelopeError for bad bytes."""

from __future__ import annotations

import dataclasses
import io
import json
import random
import uuid
from pathlib import Path

import fastavro
import orjson
import pytest
from fastavro.schema import load_schema, to_parsing_canonical_form

from streams.envelope import Event, Origin, decode, derived_id, encode, encode_json, new_event
from streams.errors import EnvelopeError

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "Envelope.avsc"
ORIGIN = Origin(topic="transactions.card", partition=3, offset=42, timestamp=1_700_000_000_000)
EDGE_ID = "transactions.card/3/42"


def an_event(**changes: object) -> Event:
    event = Event(
        event_id="e-1",
        type="transaction.created",
        task_id="task-1",
        correlation_id="corr-1",
        causation_id="cause-1",
        source="fraud",
        timestamp=1_700_000_000_123,
        attempt=2,
        payload={"account": "acct-1", "amount": 12.5, "tags": ["a", "ü"], "nested": {"ok": True, "n": None}},
    )
    return dataclasses.replace(event, **changes)


def crc64_avro(data: bytes) -> int:
    """The Rabin fingerprint exactly as the Avro specification writes it."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def edge(**fields: object) -> bytes:
    return orjson.dumps(fields)


# --- Avro -------------------------------------------------------------------------------------


@pytest.mark.parametrize("causation_id", ["cause-1", None])
def test_avro_round_trip_gives_back_the_same_event(causation_id: str | None) -> None:
    event = an_event(causation_id=causation_id)
    assert decode(encode(event), ORIGIN) == event


def test_avro_round_trip_does_not_depend_on_where_the_record_was_read() -> None:
    event = an_event()
    elsewhere = Origin(topic="other", partition=0, offset=0, timestamp=0)
    assert decode(encode(event), elsewhere) == decode(encode(event), ORIGIN) == event


def test_avro_is_single_object_encoded_with_the_little_endian_schema_fingerprint() -> None:
    """Avro spec, single-object encoding: C3 01, the 8-byte little-endian CRC-64-AVRO fingerprint, the body.

    Any other Avro reader (Java's BinaryMessageDecoder, a schema store keyed by
    fingerprint) finds the schema only if the fingerprint bytes are in this order.
    """
    schema = load_schema(str(SCHEMA_FILE))
    expected_fingerprint = crc64_avro(to_parsing_canonical_form(schema).encode()).to_bytes(8, "little")

    value = encode(an_event())

    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == expected_fingerprint


def as_json_types(event: Event) -> dict[str, object]:
    """The event's fields as JSON and Avro readers give them back (lists, not tuples)."""
    return {**dataclasses.asdict(event), "lineage": list(event.lineage)}


def test_avro_body_is_the_envelope_record_with_the_payload_as_json_text() -> None:
    event = an_event()
    record = fastavro.schemaless_reader(io.BytesIO(encode(event)[10:]), load_schema(str(SCHEMA_FILE)), None)
    assert isinstance(record, dict)
    assert orjson.loads(record.pop("payload")) == event.payload
    assert record == {k: v for k, v in as_json_types(event).items() if k != "payload"}


def test_event_fields_are_the_envelope_schema_fields_in_order() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert [field.name for field in dataclasses.fields(Event)] == [field["name"] for field in schema["fields"]]


# --- JSON at the edge -------------------------------------------------------------------------


def test_minimal_json_event_derives_its_ids_and_time_from_the_record_coordinates() -> None:
    event = decode(edge(type="transaction.created", payload={"amount": 5}), ORIGIN)
    assert event == Event(
        event_id=EDGE_ID,
        type="transaction.created",
        task_id=EDGE_ID,
        correlation_id=EDGE_ID,
        causation_id=None,
        source="external",
        timestamp=ORIGIN.timestamp,
        attempt=0,
        payload={"amount": 5},
    )


def test_the_same_json_record_decodes_to_the_same_event_on_replay() -> None:
    value = edge(type="t", payload={})
    assert decode(value, ORIGIN) == decode(value, dataclasses.replace(ORIGIN))


def test_json_records_at_different_offsets_get_different_ids() -> None:
    value = edge(type="t", payload={})
    assert decode(value, ORIGIN).event_id != decode(value, dataclasses.replace(ORIGIN, offset=43)).event_id


def test_json_task_and_correlation_default_to_a_given_event_id() -> None:
    event = decode(edge(type="t", payload={}, event_id="mine"), ORIGIN)
    assert (event.event_id, event.task_id, event.correlation_id) == ("mine", "mine", "mine")


def test_json_fields_that_are_given_win_over_the_defaults() -> None:
    event = an_event()
    assert decode(encode_json(event), ORIGIN) == event


@pytest.mark.parametrize("leading", [b" ", b"\n", b"\t", b"\r\n", b"  \r\n\t"])
def test_json_may_start_with_any_json_whitespace(leading: bytes) -> None:
    event = decode(leading + edge(type="t", payload={}), ORIGIN)
    assert event.type == "t"


def test_encode_json_is_a_plain_object_with_every_envelope_field() -> None:
    event = an_event()
    assert orjson.loads(encode_json(event)) == as_json_types(event)


# --- What is refused, and why ----------------------------------------------------------------


def assert_refused(value: bytes | None, *words: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        decode(value, ORIGIN)
    message = str(caught.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


@pytest.mark.parametrize("value", [b"", None])
def test_empty_value_is_refused(value: bytes | None) -> None:
    assert_refused(value, "empty")


def test_bytes_that_are_neither_avro_nor_json_are_refused_naming_both_formats() -> None:
    assert_refused(b"\x00\x01garbage", "Avro", "JSON")


@pytest.mark.parametrize("cut", [2, 5, 10, 11, 20])
def test_truncated_avro_is_refused(cut: int) -> None:
    assert_refused(encode(an_event())[:-cut])


def test_avro_with_a_cut_body_says_the_body_is_corrupt() -> None:
    value = encode(an_event())
    assert_refused(value[:14], "corrupt Avro")


def test_avro_body_that_is_not_an_envelope_is_refused_as_corrupt() -> None:
    header = encode(an_event())[:10]
    assert_refused(header + b"\xff" * 12, "corrupt Avro")


def test_avro_whose_payload_is_not_a_json_object_is_refused() -> None:
    header = encode(an_event())[:10]
    record = {**dataclasses.asdict(an_event()), "payload": "[1, 2]"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, load_schema(str(SCHEMA_FILE)), record)
    assert_refused(header + body.getvalue(), "payload", "object")


def test_avro_from_an_unknown_schema_is_refused_naming_its_fingerprint() -> None:
    value = bytearray(encode(an_event()))
    value[2:10] = bytes(range(1, 9))
    assert_refused(bytes(value), "unknown schema fingerprint")


def test_bad_json_is_refused() -> None:
    assert_refused(b'{"type": "t", "payload": ', "bad JSON")


@pytest.mark.parametrize("value", [b"[1, 2]", b" [1, 2]", b' "text"', b" 3"])
def test_json_that_is_not_an_object_is_refused(value: bytes) -> None:
    assert_refused(value, "JSON", "object")


@pytest.mark.parametrize("missing", ["type", "payload"])
def test_json_without_a_required_field_is_refused_naming_it(missing: str) -> None:
    fields: dict[str, object] = {"type": "t", "payload": {}}
    del fields[missing]
    assert_refused(edge(**fields), "missing", f"'{missing}'")


@pytest.mark.parametrize("payload", [[1], "text", 3, None])
def test_json_payload_must_be_an_object(payload: object) -> None:
    assert_refused(edge(type="t", payload=payload), "'payload'", "JSON object")


def test_json_with_an_unknown_field_is_refused_naming_it_and_the_allowed_ones() -> None:
    assert_refused(edge(type="t", payload={}, priority="high"), "priority", "event_id")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", 5),
        ("type", ""),
        ("event_id", ["x"]),
        ("task_id", None),
        ("correlation_id", 7),
        ("source", {}),
        ("timestamp", "yesterday"),
        ("timestamp", 1.5),
        ("attempt", True),
        ("attempt", "1"),
        ("causation_id", 5),
        ("causation_id", ["x"]),
        ("causation_id", ""),
    ],
)
def test_json_field_of_the_wrong_type_is_refused_naming_the_field(field: str, value: object) -> None:
    assert_refused(edge(**{"type": "t", "payload": {}, field: value}), f"'{field}'")


@pytest.mark.parametrize("timestamp", [2**63, 2**64 - 1])
def test_json_timestamp_beyond_an_avro_long_is_refused(timestamp: int) -> None:
    """Accepting it would fail later, when the runtime re-encodes the event (output, dead letter)."""
    assert_refused(edge(type="t", payload={}, timestamp=timestamp), "'timestamp'")


def test_random_bytes_decode_to_an_event_or_raise_envelope_error_only() -> None:
    rng = random.Random(20240611)
    valid_avro = encode(an_event())
    valid_json = encode_json(an_event())
    decoded = refused = 0
    for case in range(2_000):
        value = _random_value(rng, case, valid_avro, valid_json)
        try:
            result = decode(value, ORIGIN)
        except EnvelopeError:
            refused += 1
        else:
            assert isinstance(result, Event), value
            decoded += 1
    assert refused > 0 and decoded > 0  # both paths were exercised


def _random_value(rng: random.Random, case: int, valid_avro: bytes, valid_json: bytes) -> bytes:
    """Pure noise, noise behind a valid header, and valid records truncated or with flipped bytes."""
    kind = case % 5
    if kind == 0:
        return rng.randbytes(rng.randrange(64))
    if kind == 1:
        return valid_avro[:10] + rng.randbytes(rng.randrange(80))
    source = bytearray(valid_avro if kind in (2, 3) else valid_json)
    if kind == 3:
        return bytes(source[: rng.randrange(len(source) + 1)])
    for _ in range(rng.randrange(4)):
        source[rng.randrange(2, len(source))] = rng.randrange(256)
    return bytes(source)


# --- Events caused by events -----------------------------------------------------------------


def test_caused_event_keeps_the_task_and_correlation_and_points_at_its_cause() -> None:
    cause = an_event(attempt=3)
    effect = cause.caused("transaction.flagged", {"score": 0.9}, source="fraud", index=0, timestamp=99)
    assert effect.task_id == cause.task_id
    assert effect.correlation_id == cause.correlation_id
    assert effect.causation_id == cause.event_id
    assert (effect.type, effect.payload, effect.source, effect.timestamp, effect.attempt) == (
        "transaction.flagged",
        {"score": 0.9},
        "fraud",
        99,
        0,
    )


def test_caused_event_id_is_the_same_when_the_cause_is_handled_again() -> None:
    cause = an_event()
    first = cause.caused("x", {}, source="fraud", index=1, timestamp=1)
    again = cause.caused("x", {"other": "payload"}, source="fraud", index=1, timestamp=2)
    assert first.event_id == again.event_id
    assert uuid.UUID(first.event_id).version == 5


@pytest.mark.parametrize("name", ["", "e-1/fraud/0", "ünïcode/ids/3", "x" * 500])
def test_derived_ids_are_the_uuid5_of_namespace_and_name(name: str) -> None:
    """Ids already in the log were written with ``uuid.uuid5``: replays must derive the same ones."""
    namespace = uuid.UUID("6b1f3c2e-8f4a-4f0b-9a57-1d2c3e4f5a6b")
    assert derived_id(namespace, name) == str(uuid.uuid5(namespace, name))


def test_caused_event_ids_differ_per_cause_source_and_index() -> None:
    cause = an_event()
    ids = {
        cause.caused("x", {}, source="fraud", index=0, timestamp=1).event_id,
        cause.caused("x", {}, source="fraud", index=1, timestamp=1).event_id,
        cause.caused("x", {}, source="compliance", index=0, timestamp=1).event_id,
        an_event(event_id="e-2").caused("x", {}, source="fraud", index=0, timestamp=1).event_id,
    }
    assert len(ids) == 4


def test_new_event_starts_a_task_of_its_own() -> None:
    event = new_event("transaction.created", {"amount": 1}, source="cli", timestamp=5)
    assert event.task_id == event.correlation_id == event.event_id
    assert (event.causation_id, event.attempt, event.source, event.timestamp) == (None, 0, "cli", 5)
    assert new_event("t", {}, source="cli", timestamp=5).event_id != event.event_id


def test_new_event_joins_a_given_task() -> None:
    event = new_event("t", {}, source="cli", timestamp=5, task_id="task-9")
    assert event.task_id == "task-9"
    assert event.correlation_id == event.event_id


def test_retried_event_counts_one_more_attempt_and_keeps_everything_else() -> None:
    event = an_event(attempt=2)
    assert event.retried() == dataclasses.replace(event, attempt=3)
