"""The embedded broker's lifecycle, and the Tansu differences the profile absorbs.

Tests named after a quirk compare what the broker does with what the profile
assumes: if Tansu fixes the quirk, they fail and say which workaround to drop.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from streams.broker import BrokerProfile, EmbeddedBroker, detect_profile, real_ends
from streams.errors import BrokerError, ConfigError
from streams.object_store import ObjectStore
from streams.settings import Settings, load_settings
from tests.conftest import free_port_run


def _create_topic(profile: BrokerProfile, name: str, partitions: int = 1) -> None:
    admin = AdminClient(profile.admin_config())
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result()


def _reported_end(profile: BrokerProfile, topic: str) -> int:
    admin = AdminClient(profile.admin_config())
    [future] = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.latest()}).values()
    return int(future.result().offset)


@pytest.mark.e2e
def test_started_broker_answers_metadata(spare_broker: EmbeddedBroker) -> None:
    status = spare_broker.start()

    assert status.running and status.pid is not None
    assert AdminClient({"bootstrap.servers": status.bootstrap}).list_topics(timeout=5).cluster_id == "tansu_cluster"


@pytest.mark.e2e
def test_second_start_finds_the_running_broker(spare_broker: EmbeddedBroker) -> None:
    first = spare_broker.start()

    again = spare_broker.start()

    assert again.pid == first.pid and again.running


@pytest.mark.e2e
def test_a_later_cli_run_finds_and_stops_the_broker(spare_broker: EmbeddedBroker, spare_settings: Settings) -> None:
    first = spare_broker.start()

    later = EmbeddedBroker(spare_settings)

    assert later.start().pid == first.pid
    assert later.stop() is True
    assert not _answers_tcp(first.bootstrap)


@pytest.mark.e2e
def test_a_new_broker_in_memory_drops_the_tables_of_the_previous_log(spare_broker: EmbeddedBroker, spare_settings: Settings) -> None:
    """A second `make run` used to crash every worker: RocksDB offsets past the new, empty log."""
    stale = spare_settings.tables_dir / "kappa-demo.fraud" / "risk-0.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"state of a log that is gone")

    spare_broker.start()
    assert not stale.exists()

    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"state of the running broker's log")
    spare_broker.start()  # already running: its log and these tables belong together
    assert stale.read_bytes() == b"state of the running broker's log"


@pytest.mark.e2e
def test_broker_outlives_the_process_that_started_it(spare_broker: EmbeddedBroker, spare_settings: Settings) -> None:
    env = os.environ | {"KAPPA_STATE_DIR": str(spare_settings.state_dir), "KAPPA_BROKER_PORT": str(spare_settings.embedded_port)}
    starter = "from streams.broker import EmbeddedBroker; from streams.settings import load_settings; EmbeddedBroker(load_settings()).start()"

    subprocess.run([sys.executable, "-c", starter], env=env, cwd=Path(__file__).parents[2], check=True, timeout=30)

    assert spare_broker.status().running
    assert _answers_tcp(spare_broker.status().bootstrap)


@pytest.mark.e2e
def test_context_manager_stops_the_broker_on_exit(spare_broker: EmbeddedBroker) -> None:
    with spare_broker as running:
        bootstrap = running.status().bootstrap
        assert _answers_tcp(bootstrap)

    assert not _answers_tcp(bootstrap)


@pytest.mark.e2e
def test_stop_ends_the_process_and_forgets_it(spare_broker: EmbeddedBroker) -> None:
    started = spare_broker.start()

    assert spare_broker.stop() is True

    assert spare_broker.status().running is False
    assert spare_broker.status().pid is None
    assert not _answers_tcp(started.bootstrap)
    assert spare_broker.stop() is False


@pytest.mark.e2e
def test_port_taken_by_another_process_is_refused_with_the_fix(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = EmbeddedBroker(load_settings({"KAPPA_STATE_DIR": str(tmp_path), "KAPPA_BROKER_PORT": str(port)}))

        with pytest.raises(BrokerError, match=f"port {port} .*KAPPA_BROKER_PORT"):
            broker.start()


@pytest.mark.e2e
def test_profile_recognises_embedded_broker_behind_kafka_bootstrap_servers(spare_broker: EmbeddedBroker) -> None:
    bootstrap = spare_broker.start().bootstrap

    profile = detect_profile(load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap}))

    assert profile == BrokerProfile(bootstrap, embedded=True)


def test_broker_kind_overrides_detection() -> None:
    assert detect_profile(load_settings({"KAPPA_BROKER_KIND": "kafka"})).embedded is False


def test_unknown_broker_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="KAPPA_BROKER_KIND"):
        load_settings({"KAPPA_BROKER_KIND": "redpanda"})


def test_numeric_settings_are_read_as_their_kind_and_a_bad_value_is_named() -> None:
    settings = load_settings({"KAPPA_COMMIT_INTERVAL_S": "0.5", "KAPPA_BROKER_PORT": "19999"})
    assert (settings.commit_interval_s, settings.embedded_port) == (0.5, 19999)
    assert load_settings({}).commit_interval_s == 2.8
    with pytest.raises(ConfigError, match=r"KAPPA_COMMIT_INTERVAL_S='soon' is not a number; set it to e.g. 2.8"):
        load_settings({"KAPPA_COMMIT_INTERVAL_S": "soon"})
    with pytest.raises(ConfigError, match=r"KAPPA_BROKER_PORT='1.5' is not a whole number"):
        load_settings({"KAPPA_BROKER_PORT": "1.5"})


def test_wait_until_ready_names_the_broker_that_never_answered() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        bootstrap = f"127.0.0.1:{unused.getsockname()[1]}"

    with pytest.raises(BrokerError, match=bootstrap):
        BrokerProfile(bootstrap, embedded=True).wait_until_ready(timeout=0.5)


def test_workarounds_apply_to_the_embedded_broker_only() -> None:
    embedded, kafka = BrokerProfile("h:1", embedded=True), BrokerProfile("h:1", embedded=False)

    assert embedded.faust_app("probe").conf.broker_session_timeout == 4.0
    assert kafka.faust_app("probe").conf.broker_session_timeout == 60.0
    assert embedded.consumer_config("g")["session.timeout.ms"] == 4000
    assert "session.timeout.ms" not in kafka.consumer_config("g")
    assert (embedded.lag_is_exact, kafka.lag_is_exact) == (False, True)
    assert (embedded.producer_config()["enable.idempotence"], kafka.producer_config()["enable.idempotence"]) == (False, True)
    assert (embedded.producer_config()["linger.ms"], kafka.producer_config()["linger.ms"]) == (100, 5)
    assert {**embedded.producer_config(), "enable.idempotence": True, "linger.ms": 5} == kafka.producer_config()


def test_a_send_the_broker_never_acknowledges_fails_within_a_minute() -> None:
    """librdkafka's and aiokafka's defaults (5 and 20 minutes) would stall a worker silently that long."""
    for profile in (BrokerProfile("h:1", embedded=True), BrokerProfile("h:1", embedded=False)):
        assert profile.producer_config()["message.timeout.ms"] == 60_000
        assert profile.faust_app("probe").conf.producer_request_timeout == 60.0


@pytest.mark.e2e
def test_high_watermark_is_base_of_last_batch_on_embedded(broker: BrokerProfile, namespace: str) -> None:
    """Batches of 100, 50, 1 records: Kafka ends at 100, 150, 151; Tansu reports 1, 101, 151.

    If this fails on the embedded broker, Tansu reports real ends now: make
    ``lag_is_exact`` true, and ``faust_app`` can leave faust's transport alone.
    """
    topic = f"{namespace}watermark"
    _create_topic(broker, topic)
    producer = Producer(broker.producer_config())
    reported = []
    for batch in (100, 50, 1):
        for i in range(batch):
            producer.produce(topic, value=b"%d" % i, partition=0)
        producer.flush()
        reported.append(_reported_end(broker, topic))

    assert reported == ([100, 150, 151] if broker.lag_is_exact else [1, 101, 151])


@pytest.mark.e2e
def test_one_record_per_batch_gets_the_exact_end(broker: BrokerProfile, namespace: str) -> None:
    topic = f"{namespace}single"
    _create_topic(broker, topic)
    producer = Producer(broker.producer_config() | {"batch.num.messages": 1})
    reported = []
    for batch in (100, 50, 1):
        for i in range(batch):
            producer.produce(topic, value=b"%d" % i, partition=0)
        producer.flush()
        reported.append(_reported_end(broker, topic))

    assert reported == [100, 150, 151]


@pytest.mark.e2e
def test_real_ends_reads_past_the_reported_end(broker: BrokerProfile, namespace: str) -> None:
    """Batches of 100, 50, 7 records end at 157 however the broker reports it; an empty partition ends at 0."""
    topic = f"{namespace}real-ends"
    _create_topic(broker, topic, partitions=2)
    producer = Producer(broker.producer_config())
    for batch in (100, 50, 7):
        for i in range(batch):
            producer.produce(topic, value=b"%d" % i, partition=0)
        producer.flush()
    reported = {(topic, 0): _reported_end(broker, topic), (topic, 1): 0}

    assert real_ends(broker, reported) == {(topic, 0): 157, (topic, 1): 0}


@pytest.mark.e2e
def test_offset_lookup_by_time(broker: BrokerProfile, namespace: str) -> None:
    """Kafka finds the first record at or after a time; Tansu answers offset 0.

    If this fails on the embedded broker, make ``time_lookup_is_exact`` true.
    """
    topic = f"{namespace}by-time"
    _create_topic(broker, topic)
    producer = Producer(broker.producer_config() | {"batch.num.messages": 1})
    start_ms = int(datetime.now().timestamp() * 1000)
    for i in range(10):
        producer.produce(topic, value=b"%d" % i, partition=0, timestamp=start_ms + i * 1000)
    producer.flush()

    admin = AdminClient(broker.admin_config())
    [future] = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.for_timestamp(start_ms + 3000)}).values()

    assert future.result().offset == (3 if broker.time_lookup_is_exact else 0)


@pytest.mark.e2e
def test_group_join_completes_well_inside_15_seconds(broker: BrokerProfile, namespace: str) -> None:
    topic = f"{namespace}join"
    _create_topic(broker, topic, partitions=2)
    consumer = Consumer(broker.consumer_config(f"{namespace}joiner"))
    consumer.subscribe([topic])
    started = time.monotonic()
    try:
        while not consumer.assignment() and time.monotonic() - started < 15:
            consumer.poll(0.1)
        joined_after = time.monotonic() - started
        assert len(consumer.assignment()) == 2
    finally:
        consumer.close()

    assert joined_after < 10


def _answers_tcp(bootstrap: str) -> bool:
    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def test_faust_takes_every_setting_of_the_profile() -> None:
    """faust ignores unknown keyword arguments silently; a misspelt workaround would vanish."""
    from faust.types.enums import ProcessingGuarantee

    conf = BrokerProfile("127.0.0.1:9", embedded=True).faust_app("kappa-profile-probe").conf

    assert (conf.processing_guarantee, conf.producer_linger) == (ProcessingGuarantee.AT_LEAST_ONCE, 0.1)
    assert (conf.broker_session_timeout, conf.broker_heartbeat_interval) == (4.0, 1.0)
    assert [str(url) for url in conf.broker] == ["kafka://127.0.0.1:9"]


@pytest.mark.e2e
def test_durable_start_from_the_command_line_keeps_records_across_a_broker_kill(tmp_path: Path) -> None:
    env = os.environ | {"KAPPA_STATE_DIR": str(tmp_path / "state"), "KAPPA_BROKER_PORT": str(free_port_run(len(ObjectStore.for_settings(load_settings()).ports)))}
    spare_settings = load_settings(env)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "streams.cli", "broker", *args], env=env, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr
        return done.stdout

    broker = EmbeddedBroker(spare_settings)  # no --durable: it finds the durable data and keeps using it
    try:
        started = cli("start", "--durable")
        profile = detect_profile(spare_settings)
        _create_topic(profile, "kept")
        producer = Producer(profile.producer_config())
        for i in range(100):
            producer.produce("kept", str(i).encode())
        assert producer.flush(10) == 0
        broker.kill()
        restarted = cli("start")
        consumer = Consumer({**profile.consumer_config("durable-check"), "enable.partition.eof": True})
        consumer.assign([TopicPartition("kept", 0, 0)])
        values = [m.value() for m in consumer.consume(200, timeout=10) if m.error() is None]
        consumer.close()
    finally:
        stopped = cli("stop")

    assert "storage s3://" in started and "storage: SeaweedFS running" in started
    assert "storage s3://" in restarted
    assert values == [str(i).encode() for i in range(100)]
    assert stopped.strip() == "stopped" and not broker.status().running
