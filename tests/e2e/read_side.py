"""Helpers of the read-side tests: the ticket flow's input, the projections worker, its HTTP views."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from rocksdict import AccessType, Options, Rdict

from streams.edge import Outgoing, send
from streams.envelope import new_event
from tests.e2e.harness import Cluster, Worker


def get(port: int, path: str) -> tuple[int, Any]:
    """(status, JSON body) of a query view; (0, None) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())
    except (urllib.error.URLError, ConnectionError):
        return 0, None


def until(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    """The first truthy value ``probe`` returns, polling; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def start_projections(cluster: Cluster, port: int, **env: str) -> Worker:
    return cluster.start("projections", extra_env={"KAPPA_QUERY_PORT": str(port), **env})


def send_tickets(cluster: Cluster, tickets: list[dict[str, Any]], *, task_id: str | None = None) -> None:
    now = int(time.time() * 1000)
    items = [Outgoing(new_event("ticket.opened", t, source="test", timestamp=now, task_id=task_id), t["customer"]) for t in tickets]
    send(cluster.profile, cluster.topology, "tickets.in", items)


def completed(port: int, n: int) -> list[Any]:
    """The completed tasks once there are ``n`` of them, else an empty list."""
    status, tasks = get(port, "/tasks?state=completed")
    return tasks if status == 200 and len(tasks) == n else []


FAUST_OFFSET_KEY = b"__faust\x00offset__"
"""faust's own bookkeeping in each RocksDB partition, not part of a table's contents."""


def table_bytes(tables: Path) -> dict[str, dict[Any, Any]]:
    """Every faust table's raw RocksDB contents under ``tables``, per partition file."""
    stores = sorted(tables.rglob("*.db"))
    assert stores, f"no tables under {tables}"
    contents = {}
    for path in stores:
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            contents[path.name] = {k: v for k, v in db.items() if k != FAUST_OFFSET_KEY}
        finally:
            db.close()
    return contents
