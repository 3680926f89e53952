"""``make run EXAMPLE=<pattern>``: one small system per multi-agent pattern, shown as it happens.

Each example is a topology under ``examples/`` and a workload. The run starts
the broker (unless one is configured), creates the topics, starts a worker per
agent, sends the workload, prints every event the agents publish (who did what,
in order) and then the final result, and stops everything it started.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import Consumer

from streams.admin import apply_topics, topics_wanted
from streams.broker import BrokerProfile, broker_for_run
from streams.demo import run_workers, topic_reader
from streams.edge import Outgoing, send
from streams.envelope import Event, decode, new_event
from streams.errors import EnvelopeError, KappaError
from streams.patterns.clock import TICK
from streams.records import from_confluent
from streams.settings import Settings
from streams.topology import Topology, load_topology
from streams.types import JsonObject

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
LATENCY_MS = "400"
"""The offline model's simulated latency in the examples: enough to see work overlap."""


@dataclass(frozen=True)
class Example:
    """A workload for one example topology, and where its final results appear."""

    topic: str
    event_type: str
    workload: Callable[[], list[tuple[str, JsonObject]]]
    """(key, payload) pairs to send."""
    final_topic: str
    final_count: int
    shown: Callable[[JsonObject], JsonObject]
    """The part of a final event a person wants to read."""


EXAMPLES = {
    "orchestrator-worker": Example(
        "research.requests", "research.requested", lambda: [("q1", {"question": "an e-bike rental service in Lisbon"})],
        "research.completed", 1, lambda final: {"complete": final["complete"], **final["result"]},
    ),
    "hierarchical": Example(
        "outage.requests", "outage.reported", lambda: [("outage-1", {"regions": ["eu", "us", "ap"], "hosts_per_region": 3})],
        "outage.completed", 1, lambda final: {"hosts inspected": len(final["result"]["hosts"]), "high risk": final["result"]["high_risk"]},
    ),
    "market": Example(
        "jobs.asks", "job.posted", lambda: [(f"job-{n}", {"title": f"document {n}", "words": 150 * (n % 8 + 1)}) for n in range(20)],
        "jobs.results", 20, lambda final: {"job": final["result"]["title"], "solver": final["solver"], "price": final["bid"]["price"], "awards": final["awards"]}
        if "result" in final else {"ask": final["ask_id"], "unfilled": final["reason"]},
    ),
    "blackboard": Example(
        "incident.board", "board.entry", lambda: [("inc-1", {"kind": "incident", "content": {"service": "checkout", "symptom": "p99 latency 4 s"}})],
        "incident.sessions", 1, lambda final: {k: final[k] for k in ("session", "reason", "rounds", "solution")},
    ),
}


def example_topology(name: str, namespace: str) -> Topology:
    if name not in EXAMPLES:
        raise KappaError(f"no example '{name}'; examples: {', '.join(EXAMPLES)}")
    return load_topology(EXAMPLES_DIR / f"{name}.yaml", namespace=namespace)


def run_example(name: str, topology: Topology, settings: Settings, profile: BrokerProfile, *, timeout_s: float = 120.0) -> int:
    """Run one example to its final result; 0 when it arrived, 1 on timeout."""
    example = EXAMPLES[name]
    physical = {topology.topic_name(t): t for t in topology.topics}
    with broker_for_run(settings):
        print(f"broker at {profile.bootstrap}; {apply_topics(profile, topics_wanted(topology))}")
        env = {"KAPPA_TOPOLOGY": str(topology.path), "KAPPA_OFFLINE_LATENCY_MS": LATENCY_MS}
        with run_workers(settings, env) as log_path, topic_reader(profile, sorted(physical)) as reader:
            print(f"{len(topology.agents)} agents starting (log: {log_path}); then sending {name}'s workload\n")
            now = int(time.time() * 1000)
            items = [Outgoing(new_event(example.event_type, payload, source="you", timestamp=now), key) for key, payload in example.workload()]
            send(profile, topology, example.topic, items)
            finals = _follow(reader, physical, example, time.monotonic(), timeout_s)
    print(f"\nFinal result ({len(finals)} on {example.final_topic}):")
    for final in finals:
        print("  " + orjson.dumps(example.shown(final)).decode())
    return 0 if len(finals) >= example.final_count else 1


def _follow(reader: Consumer, physical: dict[str, str], example: Example, start: float, timeout_s: float) -> list[JsonObject]:
    finals: list[JsonObject] = []
    while len(finals) < example.final_count and time.monotonic() - start < timeout_s:
        for message in reader.consume(500, timeout=0.2):
            if message.error():
                continue
            record = from_confluent(message)
            try:
                event = decode(record.value, record.origin)
            except EnvelopeError:
                continue
            topic = physical.get(record.origin.topic, record.origin.topic)
            if event.type != TICK:
                print(f"[{time.monotonic() - start:5.1f}s] {event.source:>22} -> {topic:<20} {event.type:<18} {_short(event)}", flush=True)
            if topic == example.final_topic:
                finals.append(event.payload)
    return finals


def _short(event: Event, width: int = 110) -> str:
    text = orjson.dumps(event.payload).decode()
    return text if len(text) <= width else text[: width - 1] + "…"
