"""The fraud/compliance demo: ``make run``'s main job, shown as it happens.

Starts the workers, publishes a deterministic workload of transactions, and
prints a live line (events in, flagged, reports out, each agent's lag) until
every event has been handled, then a final table. Workers stop on completion,
on Ctrl-C, or on timeout; nothing is left running.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.admin import apply_topics, topics_wanted
from streams.broker import BrokerProfile, broker_for_run
from streams.edge import Outgoing, send
from streams.envelope import decode, new_event
from streams.errors import EnvelopeError
from streams.lag import Partition, committed_offsets, lag
from streams.records import Incoming, from_confluent
from streams.settings import Settings
from streams.topology import Topology

SOURCES = ("transactions.card", "transactions.wire")
ACCOUNTS = 120
COUNTRIES = ("US",) * 12 + ("GB", "DE", "FR", "CA", "NG", "RU", "BR", "VN")
MERCHANTS = ("grocer", "fuel", "airline", "electronics", "restaurant", "crypto-exchange", "gift-cards", "wire-service")
DEMO_LATENCY_MS = "150"
"""Simulated LLM latency for the demo's offline model, so concurrency is visible."""


@dataclass
class Progress:
    """What the demo has seen on the topics so far."""

    ends: dict[Partition, int] = field(default_factory=dict)
    decisions: Counter[str] = field(default_factory=Counter)
    by_account: dict[str, tuple[float, str]] = field(default_factory=dict)

    def count(self, topic: str) -> int:
        return sum(end for (t, _), end in self.ends.items() if t == topic)

    def ends_of(self, topics: tuple[str, ...]) -> dict[Partition, int]:
        return {tp: end for tp, end in self.ends.items() if tp[0] in topics}


@dataclass(frozen=True)
class DemoTopics:
    """The demo's physical topic names (namespace applied)."""

    names: dict[str, str]
    dead_letters: list[str]

    @classmethod
    def of(cls, topology: Topology) -> DemoTopics:
        names = {logical: topology.topic_name(logical) for logical in (*SOURCES, "transactions.flagged", "compliance.reports")}
        dead = [topology.topic_name(topology.dead_letter_topic(agent)) for agent in topology.agents]
        return cls(names, dead)

    def all(self) -> list[str]:
        return [*self.names.values(), *self.dead_letters]


def run_demo(topology: Topology, settings: Settings, profile: BrokerProfile, *, events: int, timeout_s: float = 180.0) -> int:
    """Run the demo to completion; 0 when every event was handled, 1 otherwise."""
    topics, progress = DemoTopics.of(topology), Progress()
    with broker_for_run(settings):
        print(f"broker at {profile.bootstrap}; {apply_topics(profile, topics_wanted(topology))}")
        with run_workers(settings) as log_path, topic_reader(profile, topics.all()) as reader:
            print(f"workers started (log: {log_path}); publishing {events} transactions ...")
            for topic, items in _workload(events).items():
                send(profile, topology, topic, items)
            done = _follow(topology, profile, reader, progress, topics, events, timeout_s)
    _print_final(progress, topics)
    return 0 if done else 1


def _workload(events: int, seed: int = 7) -> dict[str, list[Outgoing]]:
    """Deterministic transactions keyed by account, split across the two source topics."""
    rng = random.Random(seed)
    out: dict[str, list[Outgoing]] = {topic: [] for topic in SOURCES}
    now = int(time.time() * 1000)
    for i in range(events):
        account = f"acct-{rng.randrange(ACCOUNTS):03d}"
        amount = round(rng.lognormvariate(4.5, 1.4), 2)
        txn = {"account": account, "amount": amount, "currency": "USD", "country": rng.choice(COUNTRIES), "merchant": rng.choice(MERCHANTS)}
        topic = SOURCES[i % 2]
        out[topic].append(Outgoing(new_event("transaction.created", txn, source="demo", timestamp=now + i), account))
    return out


def _follow(
    topology: Topology,
    profile: BrokerProfile,
    reader: Consumer,
    progress: Progress,
    topics: DemoTopics,
    events: int,
    timeout_s: float,
) -> bool:
    names, dlqs = topics.names, topics.dead_letters
    start = time.monotonic()
    fraud_in = (names["transactions.card"], names["transactions.wire"])
    compliance_in = (names["transactions.flagged"],)
    while time.monotonic() - start < timeout_s:
        _drain(reader, progress, names["compliance.reports"])
        fraud_lag = _lag(profile, topology.group_id("fraud"), progress.ends_of(fraud_in))
        compliance_lag = _lag(profile, topology.group_id("compliance"), progress.ends_of(compliance_in))
        dead = sum(progress.count(t) for t in dlqs)
        flagged, reports = progress.count(names["transactions.flagged"]), progress.count(names["compliance.reports"])
        seen_in = sum(progress.ends_of(fraud_in).values())
        print(
            f"[{time.monotonic() - start:5.1f}s] in {seen_in:>5} | fraud lag {fraud_lag:>5} | flagged {flagged:>4} "
            f"| compliance lag {compliance_lag:>4} | reports {reports:>4} | dead letters {dead}",
            flush=True,
        )
        if seen_in >= events and fraud_lag == 0 and compliance_lag == 0 and reports + dead >= flagged:
            return True
        time.sleep(1.0)
    print(f"timed out after {timeout_s:.0f} s; see the worker log", file=sys.stderr)
    return False


def _lag(profile: BrokerProfile, group: str, ends: dict[Partition, int]) -> int:
    return lag(ends, committed_offsets(profile, group, ends))


def _drain(reader: Consumer, progress: Progress, reports_topic: str) -> None:
    for message in reader.consume(1000, timeout=0.2):
        if message.error():
            continue
        record = from_confluent(message)
        tp = (record.origin.topic, record.origin.partition)
        progress.ends[tp] = max(progress.ends.get(tp, 0), record.origin.offset + 1)
        if tp[0] == reports_topic:
            _note_report(progress, record)


def _note_report(progress: Progress, record: Incoming) -> None:
    try:
        report = decode(record.value, record.origin).payload
    except EnvelopeError:
        return
    progress.decisions[report["decision"]] += 1
    best = progress.by_account.get(report["account"], (0.0, ""))
    if report["score"] >= best[0]:
        progress.by_account[report["account"]] = (report["score"], report["decision"])


def _print_final(progress: Progress, topics: DemoTopics) -> None:
    names, dlqs = topics.names, topics.dead_letters
    print("\nResult")
    print(f"  transactions in      {sum(progress.count(names[t]) for t in SOURCES):>6}")
    print(f"  flagged by fraud     {progress.count(names['transactions.flagged']):>6}")
    print(f"  compliance reports   {progress.count(names['compliance.reports']):>6}")
    print(f"  dead letters         {sum(progress.count(t) for t in dlqs):>6}")
    print("\n  decision    reports")
    for decision in ("FILE_SAR", "REVIEW", "CLEAR"):
        print(f"  {decision:<10} {progress.decisions[decision]:>8}")
    riskiest = sorted(progress.by_account.items(), key=lambda item: -item[1][0])[:5]
    print("\n  riskiest accounts   score  decision")
    for account, (score, decision) in riskiest:
        print(f"  {account:<18} {score:>6.2f}  {decision}")


@contextmanager
def run_workers(settings: Settings, extra_env: Mapping[str, str] | None = None) -> Iterator[Path]:
    """All agents' workers as one supervised child process, stopped on exit; ``extra_env`` overrides ours."""
    log_path = settings.state_dir / "logs" / "workers.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # The projections worker's query views need a port; a free one unless KAPPA_QUERY_PORT says which.
    env = {"KAPPA_OFFLINE_LATENCY_MS": DEMO_LATENCY_MS, "KAPPA_QUERY_PORT": str(_free_port()), **os.environ, **(extra_env or {})}
    print(f"query views: http://127.0.0.1:{env['KAPPA_QUERY_PORT']}/tasks, /agents (try `kappa-agents task show ID`)")
    with log_path.open("ab") as log:
        child = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            yield log_path
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            print("workers stopped")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def topic_reader(profile: BrokerProfile, topics: list[str]) -> Iterator[Consumer]:
    """A group-less consumer over every partition of ``topics`` from the beginning."""
    consumer = Consumer(profile.consumer_config(f"kappa-demo-reader-{uuid.uuid4().hex[:8]}"))
    try:
        metadata = consumer.list_topics(timeout=10).topics
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata[t].partitions])
        yield consumer
    finally:
        consumer.close()
