"""One broker per test session, and names no two tests share.

The broker is, in order: the cluster at ``KAFKA_BOOTSTRAP_SERVERS``; a Kafka
container when a Docker engine answers; else the embedded Tansu broker on a free
port, stopped when the session ends.
"""

from __future__ import annotations

import gc
import random
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.broker import BrokerProfile, EmbeddedBroker, detect_profile
from streams.settings import Settings, load_settings


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProfile]:
    settings = load_settings()
    if settings.bootstrap_servers is not None:
        yield detect_profile(settings)
    elif _docker_answers():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield BrokerProfile(kafka.get_bootstrap_server(), embedded=False)
    else:
        state_dir = tmp_path_factory.mktemp("broker-state")
        embedded = load_settings({"KAPPA_STATE_DIR": str(state_dir), "KAPPA_BROKER_PORT": str(free_port())})
        with EmbeddedBroker(embedded):
            yield detect_profile(embedded)
            # Clients kept alive by tracebacks hold connections, and Tansu waits for them on SIGTERM.
            gc.collect()


@pytest.fixture
def namespace() -> str:
    """A prefix for this test's topic and group names, e.g. ``t1a2b3c4d.``."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def kappa_env(broker: BrokerProfile, namespace: str, tmp_path: Path) -> dict[str, str]:
    """Environment variables for worker subprocesses this test launches."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KAPPA_NAMESPACE": namespace,
        "KAPPA_STATE_DIR": str(tmp_path / "state"),
    }


@pytest.fixture
def spare_settings(tmp_path: Path) -> Settings:
    """Settings for an embedded broker of this test's own: a free port, its own state dir."""
    return load_settings({"KAPPA_STATE_DIR": str(tmp_path / "state"), "KAPPA_BROKER_PORT": str(free_port())})


@pytest.fixture
def spare_broker(spare_settings: Settings) -> Iterator[EmbeddedBroker]:
    """That broker, not yet started; stopped after the test."""
    spare = EmbeddedBroker(spare_settings)
    yield spare
    spare.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_port_run(count: int) -> int:
    """A free port with the ``count`` above it free too: a durable broker's SeaweedFS takes those.

    Below Linux's ephemeral range (32768+), so that no client connection of the
    processes being started takes one of them as its local port first.
    """
    while True:
        base = random.randrange(20000, 32768 - count)
        if all(_free(base + i) for i in range(count + 1)):
            return base


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
    except Exception:  # no SDK, no socket: both mean "no Docker here"
        return False
    try:
        return bool(client.ping())
    except Exception:  # a socket but no daemon behind it
        return False
    finally:
        client.close()


@pytest.fixture
def restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """import_handler puts a topology's directory on sys.path; keep that inside each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
