"""Fixtures for end-to-end tests: one ``Cluster`` (namespace, topics, workers) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.admin import apply_topics, topics_wanted
from streams.broker import BrokerProfile
from streams.topology import load_topology
from tests.e2e.harness import (
    E2E_TOPOLOGY, FAILURES_TOPOLOGY, FLOW_TOPOLOGY, FUZZ_TOPOLOGY, PATTERNS_TOPOLOGY, TASKS_TOPOLOGY, Cluster, print_logs,
)  # fmt: skip


@pytest.fixture
def cluster(broker: BrokerProfile, kappa_env: dict[str, str], namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    yield from cluster_of(E2E_TOPOLOGY, broker, kappa_env, namespace, tmp_path)


@pytest.fixture
def failing_cluster(broker: BrokerProfile, kappa_env: dict[str, str], namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    """Agents that fail on purpose (tests/e2e/failures.yaml), with fast retry levels."""
    yield from cluster_of(FAILURES_TOPOLOGY, broker, kappa_env, namespace, tmp_path)


@pytest.fixture
def fuzz_cluster(broker: BrokerProfile, kappa_env: dict[str, str], namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    """The counter agent behind a schema-checked topic (tests/e2e/fuzz.yaml)."""
    yield from cluster_of(FUZZ_TOPOLOGY, broker, kappa_env, namespace, tmp_path)


@pytest.fixture
def flow_cluster(broker: BrokerProfile, kappa_env: dict[str, str], namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    """An agent whose model calls are throttled by a token bucket (tests/e2e/flow.yaml)."""
    yield from cluster_of(FLOW_TOPOLOGY, broker, kappa_env, namespace, tmp_path)


@pytest.fixture
def patterns_cluster(broker: BrokerProfile, kappa_env: dict[str, str], namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    """The four multi-agent patterns (tests/e2e/patterns.yaml)."""
    yield from cluster_of(PATTERNS_TOPOLOGY, broker, kappa_env, namespace, tmp_path)


@pytest.fixture
def tasks_cluster(broker: BrokerProfile, kappa_env: dict[str, str], namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    """A two-agent ticket flow (tests/e2e/tasks.yaml) for the action log, projections and queries."""
    yield from cluster_of(TASKS_TOPOLOGY, broker, kappa_env, namespace, tmp_path)


def cluster_of(path: Path, broker: BrokerProfile, env: dict[str, str], namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    topology = load_topology(path, namespace=namespace)
    apply_topics(broker, topics_wanted(topology))
    logs = tmp_path / "logs"
    logs.mkdir()
    cluster = Cluster(topology, broker, env, logs, [])
    yield cluster
    for worker in cluster.workers:
        if worker.alive():
            worker.kill()
    print_logs(cluster)
