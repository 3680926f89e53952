"""One root exception for everything the runtime raises on purpose.

Library errors are converted where they enter the runtime, so callers catch
``KappaError`` (or a subclass) and never a faust/confluent/fastavro type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.yaml_nodes import Problem


class KappaError(Exception):
    """Root of every error the runtime raises deliberately."""


class ConfigError(KappaError):
    """A deployment setting (environment variable, CLI flag) is wrong."""


class TopologyError(KappaError):
    """topology.yaml is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class EnvelopeError(KappaError):
    """Bytes on a topic are not a valid event; the reason says which part."""


class BrokerError(KappaError):
    """The broker could not be started, reached or administered."""


class ModelError(KappaError):
    """A call to the language model failed."""


class ReplayError(KappaError):
    """An offset reset was refused (group active, bad target)."""


class EmitError(KappaError):
    """An agent tried to publish what its topology or schema forbids."""


class AgentFailure(KappaError):
    """A handler's failure with a category the topology has a policy for.

    Handlers raise the subclasses; the runtime maps common library errors to
    them itself (``streams.triage``).
    """

    category = "unknown"


class ContextWindowExceeded(AgentFailure):
    category = "context_window_exceeded"


class RateLimited(AgentFailure):
    category = "rate_limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds the caller asked us to wait, when it said."""


class ValidationFailed(AgentFailure):
    category = "validation_failed"


class CircularDelegation(AgentFailure):
    category = "circular_delegation"


class ToolTimeout(AgentFailure):
    category = "tool_timeout"
