"""Failure triage: which category an exception belongs to.

Handlers may raise the typed ``streams.errors.AgentFailure`` subclasses; the
common failures that are not typed (timeouts, bad input, invalid output) are
mapped here, so the topology's per-category policies apply to them too.
"""

from __future__ import annotations

from streams.errors import AgentFailure, EmitError, EnvelopeError, RateLimited
from streams.failures import Failure
from streams.model import ModelTimeout


def classify(exc: BaseException) -> Failure:
    """The category and retry hint of one failure; anything unrecognised is ``unknown``."""
    message = f"{type(exc).__name__}: {exc}"
    match exc:
        case RateLimited():
            return Failure(exc.category, message, exc.retry_after)
        case AgentFailure():
            return Failure(exc.category, message)
        case EnvelopeError():
            return Failure("poison", str(exc))
        case EmitError():
            return Failure("validation_failed", str(exc))
        case TimeoutError() | ModelTimeout():
            return Failure("tool_timeout", message)
    return Failure("unknown", message)
