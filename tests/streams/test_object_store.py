"""The durable broker's S3 store: the ports it takes, what it is told, and when it counts as ready."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from streams.object_store import BUCKET, PORT_OFFSETS, ObjectStore
from tests.conftest import free_port


def test_ports_are_fixed_offsets_above_the_broker_port_and_all_on_the_command_line(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path, 20000)
    assert sorted(store.ports.values()) == list(range(20001, 20001 + len(PORT_OFFSETS)))  # the same at every start
    assert store.endpoint == "http://127.0.0.1:20007"
    command = store.command()
    assert all(f"-{flag}={port}" in command for flag, port in store.ports.items())
    assert {"-ip.bind=127.0.0.1", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-dir={tmp_path / 'data'}"} <= set(command)


def test_callers_aws_keys_never_reach_the_store_or_tansu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-real")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    store = ObjectStore(tmp_path, 20000)
    assert not any(name.startswith("AWS_") for name in store.environment())
    tansu = store.client_environment()
    assert tansu["AWS_ENDPOINT"] == store.endpoint and tansu["AWS_ALLOW_HTTP"] == "true"
    assert "real" not in tansu["AWS_ACCESS_KEY_ID"] + tansu["AWS_SECRET_ACCESS_KEY"]


def test_a_state_dir_is_durable_once_the_store_holds_data(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path, 20000)
    assert not store.holds_data()
    store.data_dir.mkdir(parents=True)
    assert store.holds_data()


class _FakeS3(BaseHTTPRequestHandler):
    """Buckets and objects in a dict; ``broken`` answers every read with 500, as before the volume server registered."""

    objects: dict[str, bytes] = {}
    broken = False

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.strip("/")
        exists = path in self.objects
        self.objects[path] = body
        self._answer(409 if exists and "/" not in path else 200)

    def do_GET(self) -> None:
        path = self.path.strip("/")
        self._answer(500 if self.broken else 200 if path in self.objects else 404)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_s3(tmp_path: Path) -> Iterator[tuple[ObjectStore, type[_FakeS3]]]:
    port = free_port()
    handler = type("Handler", (_FakeS3,), {"objects": {}, "broken": False})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ObjectStore(tmp_path, port - PORT_OFFSETS["s3.port"]), handler
    server.shutdown()
    server.server_close()


def test_first_start_creates_the_bucket_and_a_probe_then_is_ready(fake_s3: tuple[ObjectStore, type[_FakeS3]]) -> None:
    store, s3 = fake_s3
    assert store.is_ready()
    assert BUCKET in s3.objects and any(key.startswith(f"{BUCKET}/") for key in s3.objects)
    assert store.is_ready()  # a restart: the bucket exists (409) and the probe reads back


def test_not_ready_while_stored_objects_cannot_be_read(fake_s3: tuple[ObjectStore, type[_FakeS3]]) -> None:
    store, s3 = fake_s3
    s3.broken = True
    assert not store.is_ready()


def test_not_ready_while_nothing_listens(tmp_path: Path) -> None:
    assert not ObjectStore(tmp_path, free_port() - PORT_OFFSETS["s3.port"]).is_ready()
