"""Which event types a topic carries and what their payloads must look like.

topology.yaml declares the types per topic and a payload schema per type
(``schemas/<Name>.avsc``); this module enforces both, on the way in (a bad
event is dead-lettered) and on the way out (an agent cannot publish one).
"""

from __future__ import annotations

from typing import Any

from fastavro import parse_schema
from fastavro.schema import load_schema
from fastavro.validation import ValidationError, validate

from streams.topology import Topology
from streams.types import JsonObject


class EventCatalog:
    """Per-topic event types and per-type payload schemas, parsed once."""

    def __init__(self, topology: Topology) -> None:
        self._allowed = {name: frozenset(spec.events) for name, spec in topology.topics.items()}
        self._schemas: dict[str, Any] = {}
        for event_type in topology.events:
            path = topology.schema_path(event_type)
            if path is not None:
                self._schemas[event_type] = parse_schema(load_schema(str(path)))

    def problem(self, topic: str, event_type: str, payload: JsonObject) -> str | None:
        """Why this event may not be on this (logical) topic, or None if it may."""
        allowed = self._allowed.get(topic, frozenset())
        if allowed and event_type not in allowed:
            return f"unknown type '{event_type}' for topic '{topic}' (it carries: {', '.join(sorted(allowed))})"
        schema = self._schemas.get(event_type)
        if schema is None:
            return None
        try:
            validate(payload, schema, raise_errors=True)
        except ValidationError as exc:
            return f"payload does not match schema of '{event_type}': {exc}"
        return None
