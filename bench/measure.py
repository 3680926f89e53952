"""Measure one row: its worker process over a backlog, then over a paced trickle.

Every row is measured the same way, from outside its process: a reader thread
consumes the row's output topic and stamps each record's arrival. Throughput is
taken from the outputs' own timestamps (set when the worker produced them), from
the first to the N-th; wall time and startup from when the process was spawned.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from bench.workload import AGENT, INPUT_TOPIC, OUTPUT_TOPIC, TOPOLOGY, InputRecord, expected_totals, produce_backlog, produce_paced
from streams.admin import apply_topics, topics_wanted
from streams.broker import BrokerProfile
from streams.envelope import Origin, decode
from streams.topology import Topology, load_topology

REPO = Path(__file__).resolve().parent.parent
STALL_S = 60.0
"""A row fails when its output stops growing for this long."""
READ_WAIT_S = 0.005
"""The reader's consume() wait: also the resolution of arrival stamps."""
READ_FETCH_WAIT_MS = 5
"""The reader's own fetch wait; on the embedded broker it adds ~half of this to every latency."""
LATENCY_MIN_S = 3.0
"""The paced phase lasts at least this long (more events than asked for if need be). The
embedded broker answers a fetch only after about half its max wait, data or not (librdkafka
waits 0.5 s, faust 1.5 s), so a consumer's records arrive in bursts up to 0.25/0.75 s
apart: a phase shorter than a few such cycles would sample one burst, not the pipeline."""
STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 30


Progress = Callable[[str], None]
"""Where a row reports what it is doing."""


class RowFailed(Exception):
    """The row could not be measured (worker died, output stalled); the message says why."""


@dataclass(frozen=True)
class Row:
    """One way of doing the work: the command that starts its worker, run from the repo root.

    ``unavailable`` says why the row cannot run here (its own venv is missing); it is then skipped.
    """

    name: str
    label: str
    command: tuple[str, ...]
    note: str
    unavailable: str | None = None


@dataclass(frozen=True)
class Plan:
    """What every row runs on: the broker, the workload sizes and the pre-encoded backlog."""

    profile: BrokerProfile
    run_id: str
    work_dir: Path
    events: int
    latency_events: int
    backlog: list[InputRecord]


@dataclass
class RowResult:
    name: str
    label: str
    note: str
    events_per_s: float = math.nan
    wall_s: float = math.nan
    startup_s: float = math.nan
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    paced_rate: float = math.nan
    """Inputs/s of the paced phase: half of ``events_per_s``."""
    paced_events: int = 0
    outputs: int = 0
    problems: list[str] = field(default_factory=list)
    ratio_to_raw: float = math.nan
    skipped: str | None = None
    """Why the row was not measured; a skipped row has no figures and no problems."""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Arrival:
    """One output record as the reader saw it."""

    value: bytes
    created_ms: int
    received_s: float


@dataclass(frozen=True)
class Answer:
    """One output, decoded."""

    key: str
    total: int
    seq: int
    sent_ms: int
    received_s: float


def run_row(plan: Plan, row: Row, progress: Progress) -> RowResult:
    """Backlog phase, paced phase, then checks; a RowFailed lands in ``problems``."""
    result = RowResult(row.name, row.label, row.note)
    if row.unavailable is not None:
        result.skipped = row.unavailable
        progress(f"{row.label}: skipped, {row.unavailable}")
        return result
    topology = load_topology(TOPOLOGY, namespace=f"bench-{plan.run_id}-{row.name}.", import_handlers=False)
    apply_topics(plan.profile, topics_wanted(topology))
    produce_backlog(plan.profile, topology.topic_name(INPUT_TOPIC), plan.backlog)
    progress(f"{row.label}: {plan.events:,} events on {topology.topic_name(INPUT_TOPIC)}, starting the worker")
    try:
        arrivals = _measure(plan, row, topology, result, progress)
    except RowFailed as exc:
        result.problems.append(str(exc))
        return result
    _check(plan, arrivals, result)
    return result


def _measure(plan: Plan, row: Row, topology: Topology, result: RowResult, progress: Progress) -> list[Arrival]:
    with OutputReader(plan.profile, topology.topic_name(OUTPUT_TOPIC)) as reader:
        with WorkerProcess(row, _worker_env(plan, row, topology), plan.work_dir / f"{row.name}.log") as worker:
            reader.wait_for(plan.events, worker)
            _backlog_figures(reader.arrivals[: plan.events], worker.started_s, result)
            result.paced_events = max(plan.latency_events, math.ceil(result.paced_rate * LATENCY_MIN_S))
            progress(
                f"{row.label}: {result.events_per_s:,.0f} events/s "
                f"(startup {result.startup_s:.1f} s); paced {result.paced_events:,} at {result.paced_rate:,.0f}/s"
            )
            produce_paced(plan.profile, topology.topic_name(INPUT_TOPIC), plan.events, result.paced_events, result.paced_rate)
            reader.wait_for(plan.events + result.paced_events, worker)
        reader.settle()
        return list(reader.arrivals)


def _worker_env(plan: Plan, row: Row, topology: Topology) -> dict[str, str]:
    """The runtime's settings, and what they resolve to for a worker that cannot load them (``BENCH_*``)."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": plan.profile.bootstrap,
        "KAPPA_BROKER_KIND": "embedded" if plan.profile.embedded else "kafka",
        "KAPPA_NAMESPACE": topology.namespace,
        "KAPPA_STATE_DIR": str(plan.work_dir / row.name),
        "BENCH_INPUT_TOPIC": topology.topic_name(INPUT_TOPIC),
        "BENCH_OUTPUT_TOPIC": topology.topic_name(OUTPUT_TOPIC),
        "BENCH_CONSUMER_CONFIG": json.dumps(plan.profile.consumer_config(topology.group_id(AGENT))),
        "BENCH_PRODUCER_CONFIG": json.dumps(plan.profile.producer_config()),
    }


def _backlog_figures(arrivals: list[Arrival], started_s: float, result: RowResult) -> None:
    span_ms = max(a.created_ms for a in arrivals) - min(a.created_ms for a in arrivals)
    result.events_per_s = (len(arrivals) - 1) / (max(span_ms, 1) / 1000)
    result.paced_rate = result.events_per_s / 2
    result.startup_s = arrivals[0].received_s - started_s
    result.wall_s = arrivals[-1].received_s - started_s


def _check(plan: Plan, arrivals: list[Arrival], result: RowResult) -> None:
    answers = [_answer(arrival) for arrival in arrivals]
    total = plan.events + result.paced_events
    result.outputs = len(answers)
    result.problems += _problems(answers, total)
    latencies = sorted(a.received_s * 1000 - a.sent_ms for a in answers if a.seq >= plan.events)
    if latencies:
        result.p50_ms, result.p99_ms = _percentile(latencies, 0.50), _percentile(latencies, 0.99)


def _answer(arrival: Arrival) -> Answer:
    payload = decode(arrival.value, Origin("", 0, 0, arrival.created_ms)).payload
    return Answer(payload["key"], payload["total"], payload["seq"], payload["sent_ms"], arrival.received_s)


def _problems(answers: list[Answer], total: int) -> list[str]:
    """Each output once, and every key's last output carries the key's expected total.

    A key's outputs share a partition, so the reader sees them in the order they were written.
    """
    seen = Counter(a.seq for a in answers)
    problems = []
    if len(answers) != total:
        problems.append(f"{len(answers):,} outputs for {total:,} inputs")
    if missing := total - len(seen.keys() & set(range(total))):
        problems.append(f"{missing:,} inputs have no output")
    if doubled := sum(n - 1 for n in seen.values() if n > 1):
        problems.append(f"{doubled:,} duplicate outputs")
    final = {a.key: a.total for a in answers}
    wrong = {key: (final.get(key), want) for key, want in expected_totals(total).items() if final.get(key) != want}
    if wrong:
        key, (got, want) = next(iter(wrong.items()))
        problems.append(f"{len(wrong)} keys end on a wrong total (e.g. {key}: {got}, expected {want})")
    return problems


def _percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class OutputReader:
    """Reads a topic from its beginning on a thread, stamping when each record arrived."""

    def __init__(self, profile: BrokerProfile, topic: str) -> None:
        config = {**profile.consumer_config(f"bench-reader-{uuid.uuid4().hex[:8]}"), "fetch.wait.max.ms": READ_FETCH_WAIT_MS}
        self._consumer = Consumer(config)
        self._topic = topic
        self.arrivals: list[Arrival] = []
        self._error: str | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bench-reader-{topic}", daemon=True)

    def __enter__(self) -> OutputReader:
        partitions = self._consumer.list_topics(self._topic, timeout=10).topics[self._topic].partitions
        self._consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._consumer.close()

    def wait_for(self, count: int, worker: WorkerProcess) -> None:
        """Return once ``count`` records arrived; RowFailed if the worker exits or the output stalls."""
        seen, progressed = len(self.arrivals), time.monotonic()
        while len(self.arrivals) < count:
            if self._error is not None:
                raise RowFailed(f"reading {self._topic}: {self._error}")
            if not worker.alive():
                raise RowFailed(f"the worker exited with code {worker.returncode} after {len(self.arrivals):,} outputs; {worker.log_tail()}")
            if len(self.arrivals) > seen:
                seen, progressed = len(self.arrivals), time.monotonic()
            elif time.monotonic() - progressed > STALL_S:
                raise RowFailed(f"no output for {STALL_S:.0f} s after {seen:,} of {count:,}; {worker.log_tail()}")
            time.sleep(0.05)

    def settle(self, quiet_s: float = 1.0) -> None:
        """Wait until nothing arrived for ``quiet_s``, so late duplicates are counted too."""
        count = -1
        while count != len(self.arrivals):
            count = len(self.arrivals)
            time.sleep(quiet_s)

    def _run(self) -> None:
        while not self._stopping.is_set():
            messages = self._consumer.consume(1000, timeout=READ_WAIT_S)
            received_s = time.time()
            for message in messages:
                self._keep(message, received_s)

    def _keep(self, message: Message, received_s: float) -> None:
        if message.error():
            self._error = str(message.error())
        else:
            self.arrivals.append(Arrival(message.value(), message.timestamp()[1], received_s))


class WorkerProcess:
    """A row's worker, started on enter and stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, row: Row, env: dict[str, str], log: Path) -> None:
        self._row = row
        self._env = env
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None
        self.started_s = math.nan

    def __enter__(self) -> WorkerProcess:
        with self._log.open("wb") as out:
            self.started_s = time.time()
            self._process = subprocess.Popen(self._row.command, stdout=out, stderr=subprocess.STDOUT, env=self._env, cwd=REPO)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        assert self._process is not None, "started on enter"
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    def log_tail(self) -> str:
        lines = self._log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        return f"last lines of {self._log.name}:\n" + "\n".join(f"    {line}" for line in lines)
