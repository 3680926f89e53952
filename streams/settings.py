"""Deployment settings: the environment is their one source.

``topology.yaml`` holds the wiring; everything that differs between a laptop and
production (where the broker is, where state lives, which model answers) is an
environment variable with a ``KAPPA_`` prefix, plus Kafka's conventional
``KAFKA_BOOTSTRAP_SERVERS``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from streams.errors import ConfigError

N = TypeVar("N", int, float)

DEFAULT_EMBEDDED_PORT = 19092
DEFAULT_QUERY_PORT = 6066
DEFAULT_COMMIT_INTERVAL_S = 2.8
"""faust's own default."""


@dataclass(frozen=True)
class Settings:
    """Everything read from the environment, read once."""

    bootstrap_servers: str | None
    """Set: use that cluster and start nothing. Unset: the embedded broker."""
    state_dir: Path
    """Broker pid/log files and RocksDB table data live below it."""
    namespace: str
    """Prefix for every topic, consumer group and table name (tests, sandboxes)."""
    embedded_port: int
    topology_path: Path
    broker_kind: str | None
    """``embedded`` or ``kafka`` to skip detecting which broker answers; None detects."""
    query_host: str = "127.0.0.1"
    """Host name other projections workers reach this one's query views at."""
    query_port: int = DEFAULT_QUERY_PORT
    """Port of this projections worker's query views: one per worker sharing a host."""
    commit_interval_s: float = DEFAULT_COMMIT_INTERVAL_S
    """How often a worker commits the offsets its agents finished. A worker that dies handles again
    what it finished since its last commit (at-least-once); a rebalance commits first."""

    @property
    def tables_dir(self) -> Path:
        return self.state_dir / "tables"

    @property
    def broker_dir(self) -> Path:
        return self.state_dir / "broker"

    def bootstrap(self) -> str:
        """Where clients connect: the configured cluster or the embedded broker."""
        return self.bootstrap_servers or f"127.0.0.1:{self.embedded_port}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    return Settings(
        bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
        state_dir=Path(env.get("KAPPA_STATE_DIR", ".kappa")).absolute(),
        namespace=env.get("KAPPA_NAMESPACE", ""),
        embedded_port=_number(env, "KAPPA_BROKER_PORT", DEFAULT_EMBEDDED_PORT),
        topology_path=Path(env.get("KAPPA_TOPOLOGY", "topology.yaml")),
        broker_kind=_broker_kind(env),
        query_host=env.get("KAPPA_QUERY_HOST") or "127.0.0.1",
        query_port=_number(env, "KAPPA_QUERY_PORT", DEFAULT_QUERY_PORT),
        commit_interval_s=_number(env, "KAPPA_COMMIT_INTERVAL_S", DEFAULT_COMMIT_INTERVAL_S),
    )


def _broker_kind(env: Mapping[str, str]) -> str | None:
    kind = env.get("KAPPA_BROKER_KIND") or None
    if kind not in (None, "embedded", "kafka"):
        raise ConfigError(f"KAPPA_BROKER_KIND={kind!r} is not a broker kind; set it to 'embedded' or 'kafka'")
    return kind


def _number(env: Mapping[str, str], name: str, default: N) -> N:
    """The variable as a number of ``default``'s type (int or float)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    kind = type(default)
    try:
        return kind(raw)
    except ValueError as exc:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name}={raw!r} is not {what}; set it to e.g. {default}") from exc
