"""W3C trace context carried in Kafka headers, so one trace spans every hop.

Only the OpenTelemetry API is a dependency: with no SDK installed spans are
no-ops, but the ``traceparent`` an edge producer set still travels unchanged
through every agent; install an SDK and each hop becomes a real span.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER = trace.get_tracer("kappa_agents")
_FIELDS = frozenset(_PROPAGATOR.fields)

Headers = list[tuple[str, bytes]]


def new_trace_headers() -> Headers:
    """A fresh root ``traceparent`` for an event entering at the edge."""
    return [("traceparent", f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01".encode())]


@contextmanager
def consuming(agent: str, topic: str, headers: Sequence[tuple[str, bytes | None]]) -> Iterator[Headers]:
    """A span for one agent handling one record, child of the producer's trace; yields the next hop's headers.

    Without an SDK no span is started: the next hop gets the producer's trace
    context as it came (what a no-op span would give, at no cost per event).
    """
    carrier = {k: v.decode("latin-1") for k, v in headers if k in _FIELDS and v is not None}
    if not _recording():
        yield current_trace_headers(_PROPAGATOR.extract(carrier)) if carrier else []
        return
    parent = _PROPAGATOR.extract(carrier)
    attributes = {"messaging.system": "kafka", "messaging.destination.name": topic, "gen_ai.agent.name": agent}
    with _TRACER.start_as_current_span(f"process {topic}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes):
        yield current_trace_headers()


def _recording() -> bool:
    """Whether an SDK is installed: the API alone leaves the proxy (or no-op) provider in place."""
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def current_trace_headers(context: Context | None = None) -> Headers:
    """Headers that make the next hop a child of the current span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return [(k, v.encode()) for k, v in carrier.items()]
