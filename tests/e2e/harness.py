"""End-to-end harness: real worker processes against the session's broker.

Every test gets its own namespace, so its topics, groups and state are its
own; workers are ``kappa-agents worker --agent NAME`` subprocesses, exactly as
a user runs them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streams.broker import BrokerProfile
from streams.edge import Outgoing, describe, read_to_end, send
from streams.envelope import new_event
from streams.producer import publish
from streams.records import Record
from streams.topology import Topology
from streams.types import JsonObject

E2E_TOPOLOGY = Path(__file__).with_name("topology.yaml")
FAILURES_TOPOLOGY = Path(__file__).with_name("failures.yaml")
FLOW_TOPOLOGY = Path(__file__).with_name("flow.yaml")
FUZZ_TOPOLOGY = Path(__file__).with_name("fuzz.yaml")
PATTERNS_TOPOLOGY = Path(__file__).with_name("patterns.yaml")
TASKS_TOPOLOGY = Path(__file__).with_name("tasks.yaml")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Worker:
    """One agent's worker process; its output goes to a log file a failing test prints."""

    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int:
        """Graceful stop (SIGTERM), as a deploy would."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def kill(self) -> None:
        """A crash: SIGKILL, nothing flushed, nothing committed on the way out."""
        self.process.kill()
        self.process.wait(10)

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_mb(self) -> float:
        """Resident memory of the worker process now."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024


@dataclass
class Cluster:
    """A test's view of the system: its topology, broker and worker launcher."""

    topology: Topology
    profile: BrokerProfile
    env: dict[str, str]
    logs: Path
    workers: list[Worker]

    def start(self, agent: str, *, extra_env: dict[str, str] | None = None) -> Worker:
        log = self.logs / f"{agent}-{len(self.workers)}.log"
        env = {**os.environ, **self.env, **(extra_env or {})}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "--topology", str(self.topology.path), "worker", "--agent", agent, "-l", "info"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            )
        worker = Worker(process, log)
        self.workers.append(worker)
        return worker

    def send(self, topic: str, payloads: list[JsonObject], *, key: Callable[[JsonObject], str], event_type: str = "test") -> None:
        items = [Outgoing(new_event(event_type, p, source="test", timestamp=int(time.time() * 1000)), key(p)) for p in payloads]
        send(self.profile, self.topology, topic, items)

    def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Bytes as any producer might write them, valid or not."""
        publish(self.profile, [Record(self.topology.topic_name(topic), key, value, [])])

    def read(self, topic: str, expect: int, *, timeout: float = 60.0) -> list[JsonObject]:
        """Every record on a topic, waiting until at least ``expect`` arrived (or timing out)."""
        deadline = time.monotonic() + timeout
        while True:
            # To the partitions' real ends, not "idle for a while": right after a broker restart the
            # first fetch from durable storage can take longer than any idle guess.
            lines = [describe(record) for record in read_to_end(self.profile, self.topology.topic_name(topic))]
            if len(lines) >= expect or time.monotonic() > deadline:
                return lines
            time.sleep(0.5)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env}
        return subprocess.run([sys.executable, "-m", "streams.cli", "--topology", str(self.topology.path), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)


def payloads_of(lines: list[JsonObject]) -> list[JsonObject]:
    return [line["event"]["payload"] for line in lines if "event" in line]


def print_logs(cluster: Cluster) -> None:
    for worker in cluster.workers:
        sys.stderr.write(f"--- {worker.log.name} (last lines)\n{_tail(worker.log)}\n")


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
