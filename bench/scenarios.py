"""The flow-control scenarios of `make bench`, each against its own worker processes.

(b) a 5-way fan-out with 3 s of simulated model latency, (c) the CPU of 200 model
calls in flight, (d) a 1,000 tokens/s bucket offered ten times that, (f) a long
soak's memory. (a) and (e) come from the throughput rows (bench/run.py). Each
scenario returns a ``Scenario``: its figures, the target and whether it was met.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import REPO, OutputReader, Plan, Progress, Row, RowFailed, WorkerProcess
from bench.workload import INPUT_TOPIC, OUTPUT_TOPIC, TOPOLOGY, InputRecord, input_records, produce_backlog
from streams.admin import apply_topics, topics_wanted
from streams.edge import read_to_end
from streams.envelope import Origin, decode, encode, new_event
from streams.lag import committed_offsets, lag
from streams.model import OfflineModel
from streams.topology import Topology, load_topology

FLOWS = Path(__file__).with_name("scenarios.yaml")
BUCKET = Path(__file__).with_name("bucket.yaml")
FAN_LATENCY_MS = 3000
FAN_TRIALS = 3
IN_FLIGHT = 200
IN_FLIGHT_LATENCY_MS = 15_000
CPU_WINDOW_S = 6.0
BUCKET_RATE = 1000
BUCKET_PROMPT = "x" * 360  # ~90 input tokens, ~22 output: ~9 calls/s fit in the bucket
BUCKET_WARMUP_S = 5.0
SOAK_CHUNK = 100_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Scenario:
    name: str
    label: str
    target: str
    figures: dict[str, Any] = field(default_factory=dict)
    ok: bool = False
    problems: list[str] = field(default_factory=list)



def run_scenarios(plan: Plan, progress: Progress, only: Collection[str]) -> list[Scenario]:
    """The scenarios named in ``only``, in their usual order."""
    results = []
    for name, label, target, run in _RUNS:
        if name not in only:
            continue
        scenario = Scenario(name, label, target)
        try:
            run(plan, scenario, progress)
        except RowFailed as exc:
            scenario.problems.append(str(exc))
        scenario.ok = scenario.ok and not scenario.problems
        progress(f"{label}: {scenario.figures} {'OK' if scenario.ok else 'MISSED: ' + '; '.join(scenario.problems) if scenario.problems else 'MISSED'}")
        results.append(scenario)
    return results


def fan_out(plan: Plan, scenario: Scenario, progress: Progress) -> None:
    """One event, five agents answering it in parallel: from the send to the fifth answer."""
    topology = _topology(plan, FLOWS, "fan")
    agents = [f"fan-{i}" for i in range(1, 6)]
    with ExitStack() as stack:
        reader = stack.enter_context(OutputReader(plan.profile, topology.topic_name("fan.out")))
        workers = [stack.enter_context(_worker(plan, topology, FLOWS, agent, FAN_LATENCY_MS)) for agent in agents]
        progress(f"{scenario.label}: starting {len(agents)} workers")
        _send(plan, topology, "fan.in", [0])
        reader.wait_for(len(agents), workers[0])  # all five joined and answered once
        times = []
        for trial in range(1, FAN_TRIALS + 1):
            sent = time.time()
            _send(plan, topology, "fan.in", [trial])
            reader.wait_for(len(agents) * (trial + 1), workers[0])
            times.append(max(a.received_s for a in reader.arrivals[-len(agents):]) - sent)
    scenario.figures = {"seconds": [round(t, 2) for t in times], "median_s": round(statistics.median(times), 2)}
    scenario.ok = statistics.median(times) <= 3.3


def in_flight(plan: Plan, scenario: Scenario, progress: Progress) -> None:
    """The worker's CPU while idle, then while ``IN_FLIGHT`` calls of distinct keys wait on the model."""
    topology = _topology(plan, FLOWS, "calls")
    with ExitStack() as stack:
        reader = stack.enter_context(OutputReader(plan.profile, topology.topic_name("calls.out")))
        worker = stack.enter_context(_worker(plan, topology, FLOWS, "waiter", IN_FLIGHT_LATENCY_MS))
        _send(plan, topology, "calls.in", [-1])
        progress(f"{scenario.label}: waiting for the worker's first answer")
        reader.wait_for(1, worker)
        idle = _cpu_share(worker, CPU_WINDOW_S)
        _send(plan, topology, "calls.in", list(range(IN_FLIGHT)))
        time.sleep(1.0)  # fetched and dispatched; answers are due 15 s after the send
        busy = _cpu_share(worker, CPU_WINDOW_S)
        in_flight_at_end = IN_FLIGHT - (len(reader.arrivals) - 1)
        reader.wait_for(IN_FLIGHT + 1, worker)
    scenario.figures = {"idle_cpu_pct": round(idle, 2), "in_flight_cpu_pct": round(busy, 2), "beyond_idle_pct": round(busy - idle, 2), "calls_in_flight": in_flight_at_end}
    scenario.ok = busy - idle < 5 and in_flight_at_end == IN_FLIGHT


def bucket(plan: Plan, scenario: Scenario, progress: Progress) -> None:
    """Offer ten times the bucket's rate for ``BENCH_BUCKET_S`` seconds; count the tokens answered."""
    duration = float(os.environ.get("BENCH_BUCKET_S") or 60)
    topology = _topology(plan, BUCKET, "bucket")
    group, source = topology.group_id("metered"), topology.topic_name("metered.in")
    offered_per_s = 10 * BUCKET_RATE / _tokens_per_call()
    with ExitStack() as stack:
        reader = stack.enter_context(OutputReader(plan.profile, topology.topic_name("metered.out")))
        worker = stack.enter_context(_worker(plan, topology, BUCKET, "metered", 0))
        stack.enter_context(_paced(plan, topology, "metered.in", offered_per_s))
        reader.wait_for(1, worker)
        progress(f"{scenario.label}: first answer; measuring for {duration:.0f} s at {offered_per_s:.0f} calls/s offered")
        time.sleep(BUCKET_WARMUP_S)
        start, rss_start, backlog_start = time.time(), _rss_mb(worker), _backlog(plan, group, source)
        time.sleep(duration)
        end, rss_end, backlog_end = time.time(), _rss_mb(worker), _backlog(plan, group, source)
    tokens = sum(_payload(a)["tokens"] for a in reader.arrivals if start * 1000 <= a.created_ms < end * 1000)
    rate = tokens / (end - start)
    scenario.figures = {
        "seconds": round(end - start, 1), "tokens_per_s": round(rate, 1), "offered_tokens_per_s": 10 * BUCKET_RATE,
        "rss_mb": [round(rss_start, 1), round(rss_end, 1)], "backlog": [backlog_start, backlog_end],
    }  # fmt: skip
    scenario.ok = abs(rate - BUCKET_RATE) <= 0.05 * BUCKET_RATE and rss_end <= rss_start * 1.05 and backlog_end > backlog_start


def soak(plan: Plan, scenario: Scenario, progress: Progress) -> None:
    """``BENCH_SOAK_EVENTS`` (1M) through the throughput row's agent; its RSS after 100k and at the end."""
    events = int(os.environ.get("BENCH_SOAK_EVENTS") or 1_000_000)
    scenario.label = f"(f) {events:,}-event soak"
    topology = load_topology(TOPOLOGY, namespace=f"bench-{plan.run_id}-soak.", import_handlers=False)
    apply_topics(plan.profile, topics_wanted(topology))
    for first in range(0, events, SOAK_CHUNK):
        produce_backlog(plan.profile, topology.topic_name(INPUT_TOPIC), input_records(range(first, min(first + SOAK_CHUNK, events))))
    progress(f"{scenario.label}: backlog written, starting the worker")
    command = (REPO / ".venv" / "bin" / "python", "-m", "streams.cli", "--topology", str(TOPOLOGY), "worker", "--agent", "total", "-l", "warn")
    row = Row("soak", scenario.label, tuple(map(str, command)), "")
    with OutputReader(plan.profile, topology.topic_name(OUTPUT_TOPIC)) as reader:
        with WorkerProcess(row, _env(plan, topology, "soak", 0), plan.work_dir / "soak.log") as worker:
            reader.wait_for(min(SOAK_CHUNK, events), worker)
            rss_early = _rss_mb(worker)
            scenario.figures = {"events": events, "rss_mb_after_100k": round(rss_early, 1)}  # kept if the rest fails
            reader.wait_for(events, worker)
            rss_end = _rss_mb(worker)
    span_s = (reader.arrivals[-1].created_ms - reader.arrivals[0].created_ms) / 1000
    scenario.figures |= {"rss_mb_at_end": round(rss_end, 1), "events_per_s": round(events / max(span_s, 1e-3))}
    scenario.ok = rss_end <= rss_early * 1.10


_RUNS: tuple[tuple[str, str, str, Callable[[Plan, Scenario, Progress], None]], ...] = (
    ("fan_out", "(b) 5-way fan-out, 3 s model latency", "completes in <= 3.3 s", fan_out),
    ("in_flight", f"(c) {IN_FLIGHT} model calls in flight", "< 5% of a core beyond the idle worker", in_flight),
    ("bucket", f"(d) {BUCKET_RATE:,} tokens/s bucket under 10x overload", "1,000 +/- 5% tokens/s, RSS flat, backlog grows", bucket),
    ("soak", "(f) soak", "RSS at the end within 10% of RSS after 100k events", soak),
)
SCENARIOS = tuple(name for name, *_ in _RUNS)


def _topology(plan: Plan, path: Path, name: str) -> Topology:
    topology = load_topology(path, namespace=f"bench-{plan.run_id}-{name}.", import_handlers=False)
    apply_topics(plan.profile, topics_wanted(topology))
    return topology


def _env(plan: Plan, topology: Topology, name: str, latency_ms: int) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": plan.profile.bootstrap,
        "KAPPA_BROKER_KIND": "embedded" if plan.profile.embedded else "kafka",
        "KAPPA_NAMESPACE": topology.namespace,
        "KAPPA_STATE_DIR": str(plan.work_dir / name),
        "KAPPA_MODEL": "offline",
        "KAPPA_OFFLINE_LATENCY_MS": str(latency_ms),
    }


@contextmanager
def _worker(plan: Plan, topology: Topology, path: Path, agent: str, latency_ms: int) -> Iterator[WorkerProcess]:
    command = (str(REPO / ".venv" / "bin" / "python"), "-m", "streams.cli", "--topology", str(path), "worker", "--agent", agent, "-l", "warn")
    env = _env(plan, topology, f"{topology.app}-{agent}", latency_ms)
    with WorkerProcess(Row(agent, agent, command, ""), env, plan.work_dir / f"{topology.app}-{agent}.log") as worker:
        yield worker


def _records(seqs: list[int], prompt: str = "hello") -> list[InputRecord]:
    events = [new_event("bench.ask", {"seq": seq, "prompt": prompt}, source="bench", timestamp=int(time.time() * 1000)) for seq in seqs]
    return [(f"k{seq}".encode(), encode(event)) for seq, event in zip(seqs, events, strict=True)]


def _send(plan: Plan, topology: Topology, topic: str, seqs: list[int]) -> None:
    produce_backlog(plan.profile, topology.topic_name(topic), _records(seqs))


@contextmanager
def _paced(plan: Plan, topology: Topology, topic: str, per_s: float) -> Iterator[None]:
    """Sends ``per_s`` events a second on a thread until the block ends."""
    stopping = threading.Event()

    def pace() -> None:
        sent, started = 0, time.monotonic()
        while not stopping.is_set():
            due = int((time.monotonic() - started) * per_s) - sent
            if due > 0:
                produce_backlog(plan.profile, topology.topic_name(topic), _records(list(range(sent, sent + due)), BUCKET_PROMPT))
                sent += due
            stopping.wait(0.1)

    thread = threading.Thread(target=pace, name="bench-paced", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopping.set()
        thread.join(30)


def _tokens_per_call() -> float:
    """What one call costs with the model the worker runs, to size the overload."""
    answer = asyncio.run(OfflineModel().complete([{"role": "user", "content": BUCKET_PROMPT}]))
    return answer.input_tokens + answer.output_tokens


def _backlog(plan: Plan, group: str, topic: str) -> int:
    """Inputs on the topic not yet committed by the agent (the ends read to the real end)."""
    ends: dict[tuple[str, int], int] = {}
    for record in read_to_end(plan.profile, topic):
        where = (topic, record.origin.partition)
        ends[where] = max(ends.get(where, 0), record.origin.offset + 1)
    return lag(ends, committed_offsets(plan.profile, group, ends))


def _payload(arrival: Any) -> dict[str, Any]:
    return decode(arrival.value, Origin("", 0, 0, arrival.created_ms)).payload


def _cpu_share(worker: WorkerProcess, seconds: float) -> float:
    """Percent of one core the worker used over the next ``seconds``."""
    before, started = _cpu_s(worker), time.monotonic()
    time.sleep(seconds)
    return 100 * (_cpu_s(worker) - before) / (time.monotonic() - started)


def _cpu_s(worker: WorkerProcess) -> float:
    fields = Path(f"/proc/{worker.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _rss_mb(worker: WorkerProcess) -> float:
    status = Path(f"/proc/{worker.pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024

