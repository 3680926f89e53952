"""`make bench`: events/s and end-to-end latency of the same stateful work, five ways.

(a) a raw confluent-kafka loop, (b) a Kappa Agents agent, (c) a default faust agent,
(c2) faust over take() batches (faust's own floor), (d) a quixstreams app (in a venv of
its own; skipped when that venv is missing), one after another on the same broker in the same run, each on topics of its own.
Writes bench/results.json, prints a table; exits 1 when any row's output is wrong.

Then the flow-control scenarios (bench/scenarios.py) and every target of the
dispatch issue, met or missed, in the same file.

Environment: BENCH_EVENTS (200000), BENCH_LATENCY_EVENTS (5000), BENCH_BUCKET_S (60),
BENCH_SOAK_EVENTS (1000000), BENCH_SCENARIOS=0 to skip the scenarios, BENCH_ONLY to
measure only some targets (comma-separated names: speed and cold_start run the rows;
fan_out, in_flight, bucket, soak), and KAFKA_BOOTSTRAP_SERVERS to use a running cluster
instead of an embedded broker.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from datetime import datetime, UTC
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

import confluent_kafka

from bench.measure import REPO, Plan, Progress, Row, RowResult, run_row
from bench.scenarios import SCENARIOS, Scenario, run_scenarios
from bench.workload import AGENT, INPUT_TOPIC, KEYS, TOPOLOGY, input_records
from streams.broker import BrokerProfile, EmbeddedBroker, detect_profile
from streams.settings import load_settings
from streams.topology import load_topology

RESULTS = Path(__file__).with_name("results.json")
PY = sys.executable
QUIX_STAMP = REPO / "bench" / ".venv-quix" / ".installed"
"""Written by `make bench` once the quixstreams row's venv is complete (the Makefile's QUIX_STAMP)."""
QUIX_PY = QUIX_STAMP.parent / "bin" / "python"
QUIX_PIN = next(line for line in (REPO / "bench" / "quix-requirements.txt").read_text().splitlines() if line.startswith("quixstreams=="))
ROWS = (
    Row("raw", "(a) raw confluent-kafka loop", (PY, "-m", "bench.raw_loop"),
        "consume(1000) → decode → rocksdict read+write → produce; commit after flush every 1 s; no changelog"),
    Row("kappa", "(b) Kappa Agents agent", (PY, "-m", "streams.cli", "--topology", str(TOPOLOGY), "worker", "--agent", AGENT, "-l", "warn"),
        "kappa-agents worker: faust table with changelog, KeyedDispatcher, librdkafka output producer"),
    Row("faust", "(c) faust default agent", (PY, "-m", "bench.faust_app", "worker", "-l", "warn", "--without-web"),
        "async for event in stream → table → await topic.send; the broker profile's faust settings"),
    Row("faust-batched", "(c2) faust take() batches", (PY, "-m", "bench.faust_app", "batched", "worker", "-l", "warn", "--without-web"),
        "stream.noack_take(500) → table per event → one librdkafka send per batch, acked once delivered: faust's floor"),
    Row("quix", "(d) quixstreams app", (str(QUIX_PY), "-m", "bench.quix_app"),
        f"StreamingDataFrame.apply(stateful) → RocksDB state with changelog → to_topic; {QUIX_PIN}, its own venv",
        unavailable=None if QUIX_STAMP.exists() else f"no {QUIX_STAMP.parent.relative_to(REPO)}: `make bench` builds it (needs PyPI)"),
)  # fmt: skip
ROW_TARGETS = ("speed", "cold_start")
"""The targets read off the throughput rows (bench/scenarios.py measures the others)."""


def main() -> int:
    events = _env_int("BENCH_EVENTS", 200_000)
    latency_events = _env_int("BENCH_LATENCY_EVENTS", 5_000)
    only = selected_targets(os.environ)
    rows = ROWS if only & set(ROW_TARGETS) else ()
    started = time.monotonic()
    progress = _progress(started)
    try:
        with ExitStack() as stack:
            stack.enter_context(_stop_on_sigterm())
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kappa-bench-")))
            profile = _broker(stack, work_dir)
            progress(f"broker {profile.bootstrap} ({'embedded Tansu' if profile.embedded else 'Kafka'}); encoding {events:,} events")
            plan = Plan(profile, uuid.uuid4().hex[:8], work_dir, events, latency_events, input_records(range(events if rows else 0)))
            results = [_run(plan, row, progress) for row in rows]
            scenarios = run_scenarios(plan, progress, only)
    except KeyboardInterrupt:
        print("interrupted: workers and broker stopped", file=sys.stderr)
        return 130
    if results:
        _set_ratios(results)
        scenarios = [*_row_targets(results), *scenarios]
    report = _report(plan, results, scenarios, time.monotonic() - started)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(_table(results))
    print(_targets_table(scenarios))
    print(f"{events:,} backlog events per row, then at least {latency_events:,} paced at half its rate; run took {report['run_s']:.0f} s; wrote {RESULTS}")
    return 0 if all(result.ok for result in results) and not any(s.problems for s in scenarios) else 1


def selected_targets(env: Mapping[str, str]) -> set[str]:
    """The targets this run measures: those BENCH_ONLY names (all by default), less the scenarios if BENCH_SCENARIOS=0."""
    known = (*ROW_TARGETS, *SCENARIOS)
    only = {name.strip() for name in (env.get("BENCH_ONLY") or ",".join(known)).split(",") if name.strip()}
    if unknown := only - set(known):
        raise SystemExit(f"BENCH_ONLY names unknown target(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    return only - set(SCENARIOS) if env.get("BENCH_SCENARIOS") == "0" else only


def _row_targets(results: list[RowResult]) -> list[Scenario]:
    """(a) and (e), read off the throughput rows."""
    kappa = next(result for result in results if result.name == "kappa")
    speed = Scenario("speed", "(a) agent with a table vs the raw loop", ">= 0.25 x raw events/s",
                     {"ratio_to_raw": round(kappa.ratio_to_raw, 3), "p50_ms": round(kappa.p50_ms, 1), "p99_ms": round(kappa.p99_ms, 1)},
                     ok=kappa.ratio_to_raw >= 0.25)
    cold = Scenario("cold_start", "(e) worker cold start to first processed event", "<= 5 s",
                    {"seconds": round(kappa.startup_s, 2)}, ok=kappa.startup_s <= 5)
    return [speed, cold]  # fmt: skip


def _targets_table(scenarios: list[Scenario]) -> str:
    return "\n".join(f"{'met   ' if s.ok else 'MISSED'} {s.label}: {s.target}; {s.figures}" for s in scenarios)


def _run(plan: Plan, row: Row, progress: Progress) -> RowResult:
    result = run_row(plan, row, progress)
    if result.skipped:
        return result
    verdict = "OK" if result.ok else "FAIL: " + "; ".join(result.problems)
    progress(f"{row.label}: p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms; {result.outputs:,} outputs {verdict}")
    return result


def _broker(stack: ExitStack, work_dir: Path) -> BrokerProfile:
    """The cluster at KAFKA_BOOTSTRAP_SERVERS, else an embedded broker of this run's own."""
    settings = load_settings()
    if settings.bootstrap_servers is not None:
        return detect_profile(settings)
    embedded = load_settings({"KAPPA_STATE_DIR": str(work_dir / "broker"), "KAPPA_BROKER_PORT": str(_free_port())})
    stack.enter_context(EmbeddedBroker(embedded))
    return BrokerProfile(embedded.bootstrap(), embedded=True)


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the workers and broker this run started are stopped."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _set_ratios(results: list[RowResult]) -> None:
    raw = results[0].events_per_s
    for result in results:
        result.ratio_to_raw = result.events_per_s / raw


def _report(plan: Plan, results: list[RowResult], scenarios: list[Scenario], run_s: float) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "broker": {"kind": "embedded tansu" if plan.profile.embedded else "kafka", "bootstrap": plan.profile.bootstrap},
        "events": plan.events,
        "latency_events": plan.latency_events,
        "partitions": load_topology(TOPOLOGY, import_handlers=False).topics[INPUT_TOPIC].partitions,
        "keys": KEYS,
        "run_s": round(run_s, 1),
        "rows": [{**asdict(result), "ok": result.ok} for result in results],
        "targets": [asdict(scenario) for scenario in scenarios],
    }


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "faust-streaming": version("faust-streaming"),
        "aiokafka": version("aiokafka"),
        "confluent-kafka": confluent_kafka.version()[0],
        "librdkafka": confluent_kafka.libversion()[0],
        "rocksdict": version("rocksdict"),
    }


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor())


def _table(results: list[RowResult]) -> str:
    head = f"{'':32} {'events/s':>9} {'× raw':>6} {'wall s':>7} {'startup s':>9} {'p50 ms':>7} {'p99 ms':>7}  check"
    lines = [head, "-" * len(head)]
    for r in results:
        figures = f"{_n(r.events_per_s, 0):>9} {_n(r.ratio_to_raw, 3):>6} {_n(r.wall_s, 1):>7} {_n(r.startup_s, 1):>9} {_n(r.p50_ms, 1):>7} {_n(r.p99_ms, 1):>7}"
        lines.append(f"{r.label:32} {figures}  {_verdict(r)}")
    return "\n".join(lines)


def _verdict(result: RowResult) -> str:
    if result.skipped:
        return f"skipped: {result.skipped}"
    return "OK" if result.ok else "FAIL"


def _n(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _progress(started: float) -> Progress:
    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {message}", flush=True)

    return say


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"{name}={raw!r} is not a positive whole number")
    return int(raw)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
