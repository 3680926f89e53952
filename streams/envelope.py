"""The event envelope and its wire formats.

Inside the system every event is Avro in the single-object encoding (magic
``C3 01``, the writer schema's CRC-64-AVRO fingerprint, then the body), so a
reader knows which schema wrote each record without a registry. At the edges
people may write JSON: an object with at least ``type`` and ``payload``; the
envelope fields it leaves out are derived from the record's coordinates, so a
replay of the same record decodes to the same event.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import fastavro
import orjson
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from streams.errors import EnvelopeError
from streams.types import JsonObject

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
ENVELOPE_SCHEMA = load_schema(str(SCHEMA_DIR / "Envelope.avsc"))
_MAGIC = b"\xc3\x01"
_FINGERPRINT = bytes.fromhex(fingerprint(to_parsing_canonical_form(ENVELOPE_SCHEMA), "CRC-64-AVRO"))
"""Little-endian CRC-64-AVRO, as the single-object encoding specifies (fastavro's byte order)."""
_HEADER = _MAGIC + _FINGERPRINT
_ID_NAMESPACE = uuid.UUID("6b1f3c2e-8f4a-4f0b-9a57-1d2c3e4f5a6b")


@dataclass(frozen=True)
class Event:
    """One immutable event. Fields mirror ``schemas/Envelope.avsc`` exactly."""

    event_id: str
    type: str
    task_id: str
    correlation_id: str
    causation_id: str | None
    source: str
    timestamp: int
    attempt: int
    payload: JsonObject
    lineage: tuple[str, ...] = ()

    def caused(self, type: str, payload: JsonObject, *, source: str, index: int, timestamp: int) -> Event:
        """The ``index``-th event this one causes: same task and correlation, a derived id.

        The id is a UUIDv5 of (this id, source, index), so re-handling the same
        event (redelivery, replay) emits events with the same ids.
        """
        return Event(
            event_id=derived_id(_ID_NAMESPACE, f"{self.event_id}/{source}/{index}"),
            type=type,
            task_id=self.task_id,
            correlation_id=self.correlation_id,
            causation_id=self.event_id,
            source=source,
            timestamp=timestamp,
            attempt=0,
            payload=payload,
            lineage=(*self.lineage, source),
        )

    def retried(self) -> Event:
        return replace(self, attempt=self.attempt + 1)


@dataclass(frozen=True)
class Origin:
    """Where a record was read: what a JSON edge event's defaults derive from."""

    topic: str
    partition: int
    offset: int
    timestamp: int


def new_event(type: str, payload: JsonObject, *, source: str, timestamp: int, task_id: str | None = None) -> Event:
    """An event that starts a task at the edge (CLI, demo, external producer)."""
    event_id = str(uuid.uuid4())
    return Event(event_id, type, task_id or event_id, event_id, None, source, timestamp, 0, payload)


def derived_id(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``, without building a UUID object: ids are derived per event and action."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def encode(event: Event) -> bytes:
    """Avro single-object encoding of the envelope."""
    record = dict(vars(event))  # shallow: asdict would deep-copy the payload only to serialise it
    record["payload"] = orjson.dumps(event.payload).decode()
    record["lineage"] = list(event.lineage)
    out = io.BytesIO()
    out.write(_HEADER)
    fastavro.schemaless_writer(out, ENVELOPE_SCHEMA, record)
    return out.getvalue()


def encode_json(event: Event) -> bytes:
    """The human-readable form, for the edges (``send --json``, ``tail``)."""
    return orjson.dumps(asdict(event))


def decode(value: bytes | None, origin: Origin) -> Event:
    """Avro single-object or JSON bytes → Event; EnvelopeError says what is wrong."""
    if not value:
        raise EnvelopeError("empty value: expected an Avro or JSON event")
    if value[:2] == _MAGIC:
        return _decode_avro(value)
    if value[:1] in (b"{", b" ", b"\n", b"\t", b"\r"):
        return _decode_json(value, origin)
    raise EnvelopeError(f"not an event: starts with {value[:8]!r}, expected Avro (C3 01 ...) or a JSON object")


def _decode_avro(value: bytes) -> Event:
    if value[2:10] != _FINGERPRINT:
        raise EnvelopeError(f"Avro written with unknown schema fingerprint {value[2:10].hex()}")
    try:
        record = fastavro.schemaless_reader(io.BytesIO(value[10:]), ENVELOPE_SCHEMA, None)
    except Exception as exc:  # fastavro raises many types on corrupt input
        raise EnvelopeError(f"corrupt Avro body: {exc!r}") from exc
    assert isinstance(record, dict)
    record["payload"] = json_object(record["payload"], "payload")
    record["lineage"] = tuple(record["lineage"])
    return Event(**record)


def json_object(text: bytes | str, what: str) -> JsonObject:
    """Parse JSON that must be an object; EnvelopeError naming ``what`` otherwise."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"bad JSON in {what}: {exc}") from exc
    if not isinstance(data, dict):
        raise EnvelopeError(f"{what} must be a JSON object, got {type(data).__name__}")
    return data


def _decode_json(value: bytes, origin: Origin) -> Event:
    data = json_object(value, "JSON event")
    unknown = set(data) - _FIELD_NAMES
    if unknown:
        raise EnvelopeError(f"unknown envelope field(s) {sorted(unknown)}; allowed: {sorted(_FIELD_NAMES)}")
    for required in ("type", "payload"):
        if required not in data:
            raise EnvelopeError(f"missing field '{required}'")
    return _with_defaults(data, origin)


def _with_defaults(data: dict[str, Any], origin: Origin) -> Event:
    event_id = _text(data, "event_id", f"{origin.topic}/{origin.partition}/{origin.offset}")
    payload = data["payload"]
    if not isinstance(payload, dict):
        raise EnvelopeError(f"field 'payload' must be a JSON object, got {type(payload).__name__}")
    return Event(
        event_id=event_id,
        type=_text(data, "type", ""),
        task_id=_text(data, "task_id", event_id),
        correlation_id=_text(data, "correlation_id", event_id),
        causation_id=None if data.get("causation_id") is None else _text(data, "causation_id", ""),
        source=_text(data, "source", "external"),
        timestamp=_int(data, "timestamp", origin.timestamp, bits=64),
        attempt=_int(data, "attempt", 0, bits=32),
        payload=payload,
        lineage=_names(data, "lineage"),
    )


def _names(data: dict[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise EnvelopeError(f"field '{name}' must be a list of strings, got {value!r}")
    return tuple(value)


def _text(data: dict[str, Any], name: str, default: str) -> str:
    value = data.get(name, default)
    if not isinstance(value, str) or not value:
        raise EnvelopeError(f"field '{name}' must be a non-empty string, got {value!r}")
    return value


def _int(data: dict[str, Any], name: str, default: int, *, bits: int) -> int:
    value = data.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise EnvelopeError(f"field '{name}' must be an integer, got {value!r}")
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise EnvelopeError(f"field '{name}' must fit a signed {bits}-bit integer, got {value}")
    return value


_FIELD_NAMES = frozenset(f.name for f in fields(Event))
