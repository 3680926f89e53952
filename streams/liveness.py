"""Which agents have workers running on this host.

Replay must refuse while an agent's workers run (they would commit over the
reset). Apache Kafka tells us through the group's state; the embedded broker
cannot (see ``BrokerProfile.group_state_is_exact``), so each worker also
leaves a pid file under the state directory while it runs.
"""

from __future__ import annotations

import atexit
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
