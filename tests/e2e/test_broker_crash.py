"""A durable broker SIGKILLed mid-stream: workers reconnect by themselves, no event lost, no charge twice."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker, detect_profile
from streams.object_store import PORT_OFFSETS
from streams.settings import Settings, load_settings
from tests.conftest import free_port_run
from tests.e2e.conftest import cluster_of
from tests.e2e.harness import E2E_TOPOLOGY, Cluster
from tests.e2e.world import actions, assert_each_paid_once, wait_for_actions

pytestmark = pytest.mark.e2e

EVENTS = 500
DOWN_S = 2.0
"""How long the broker stays dead: long enough for every client to notice and retry."""


@pytest.fixture
def durable_settings(tmp_path: Path) -> Settings:
    """A port with the ones SeaweedFS takes above it free, and a state dir of this test's own."""
    return load_settings({"KAPPA_STATE_DIR": str(tmp_path / "state"), "KAPPA_BROKER_PORT": str(free_port_run(len(PORT_OFFSETS)))})


@pytest.fixture
def durable_broker(durable_settings: Settings) -> Iterator[EmbeddedBroker]:
    """This test's own broker on s3:// storage (SeaweedFS), not the session's in-memory one."""
    broker = EmbeddedBroker(durable_settings, durable=True)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def durable_cluster(durable_broker: EmbeddedBroker, durable_settings: Settings, namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    profile = detect_profile(durable_settings)
    env = {"KAFKA_BOOTSTRAP_SERVERS": profile.bootstrap, "KAPPA_NAMESPACE": namespace}
    yield from cluster_of(E2E_TOPOLOGY, profile, env, namespace, tmp_path)


def test_broker_sigkilled_mid_stream_loses_no_event_and_repeats_no_charge(
    durable_cluster: Cluster, durable_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    c = durable_cluster
    world = tmp_path / "world.log"
    workers = [c.start("pay", extra_env={"E2E_WORLD_FILE": str(world), "KAPPA_STATE_DIR": str(tmp_path / f"worker-{n}")}) for n in range(2)]
    c.send("paid.in", [{"seq": i} for i in range(EVENTS)], key=lambda p: f"acct-{p['seq'] % 64}")
    wait_for_actions(world, random.Random(20261202).randrange(100, EVENTS // 2))

    assert durable_broker.kill()
    done_before = len(actions(world))
    time.sleep(DOWN_S)
    durable_broker.start()

    assert_each_paid_once(c, world, EVENTS, timeout=60)
    assert done_before < EVENTS  # killed mid-stream: most charges and receipts still to come
    assert all(worker.alive() for worker in workers) and c.workers == workers  # reconnected by themselves
