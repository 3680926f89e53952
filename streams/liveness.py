"""Which agents have workers running on this host, and which local state is whose.

Replay must refuse while an agent's workers run (they would commit over the
reset). Apache Kafka tells us through the group's state; the embedded broker
cannot (see ``BrokerProfile.group_state_is_exact``), so each worker also
leaves a pid file under the state directory while it runs.

Several workers of one agent may share a host (to use its cores): each holds a
numbered slot, and keeps its RocksDB tables in that slot's directory, since
RocksDB lets one process open a table's files. A restarted worker takes the
lowest free slot, so a lone worker finds the tables it left.
"""

from __future__ import annotations

import atexit
import fcntl
import os
from pathlib import Path

from streams.settings import Settings


def register(settings: Settings, group: str) -> None:
    """Record this process as a worker of ``group`` until it exits."""
    path = _dir(settings, group) / f"{os.getpid()}.pid"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    atexit.register(path.unlink, missing_ok=True)


def running_workers(settings: Settings, group: str) -> list[int]:
    """Pids of live workers of ``group`` on this host; stale files are removed."""
    live = []
    for path in sorted(_dir(settings, group).glob("*.pid")):
        pid = int(path.stem)
        if _alive(pid):
            live.append(pid)
        else:
            path.unlink(missing_ok=True)
    return live


_held_slots: list[int] = []
"""Open lock files: a slot stays this process's until it exits (the kernel releases it, however it exits)."""


def claim_state_dir(settings: Settings, group: str, base: Path) -> Path:
    """``base/worker-N`` for the lowest slot N no live worker of ``group`` on this host holds (``base`` is created: faust needs the parent)."""
    locks = _dir(settings, group)
    locks.mkdir(parents=True, exist_ok=True)
    base.mkdir(parents=True, exist_ok=True)
    slot = 0
    while True:
        fd = os.open(locks / f"slot-{slot}.lock", os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            slot += 1
            continue
        _held_slots.append(fd)
        return base / f"worker-{slot}"


def _dir(settings: Settings, group: str) -> Path:
    return settings.state_dir / "workers" / group


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
