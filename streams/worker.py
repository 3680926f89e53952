"""Worker processes: one faust worker per agent, or a supervisor over all of them.

One process per agent keeps each agent's consumer group, RocksDB state and
CPU core its own, which is also how they are deployed (``deploy/``). Running
"all agents" locally is just a parent that starts one child per agent and
stops them together.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

import faust
import mode.loop

from streams.admin import list_topics
from streams.broker import BrokerProfile
from streams.errors import BrokerError
from streams.liveness import register
from streams.settings import Settings
from streams.topology import ACTIONS_TOPIC, Topology
from streams.wiring import build_agent_app


def run_agent(topology: Topology, agent: str, settings: Settings, profile: BrokerProfile, faust_args: Sequence[str]) -> None:
    """Run one agent's faust worker in this process until it is stopped (never returns)."""
    require_topics(topology, agent, profile)
    wired = build_agent_app(topology, agent, settings, profile)
    register(settings, topology.group_id(agent))
    # faust's web server stays off unless asked for (``--with-web``), so several
    # agents' workers can share a host.
    run_faust_worker(wired.app, ["--without-web", *faust_args])


def run_faust_worker(app: faust.App, faust_args: Sequence[str]) -> NoReturn:
    """Hand this process to faust's worker command (its own flags pass through), on uvloop where installed.

    The worker's event loop runs every record's callbacks; uvloop's costs
    about 10% less CPU per record than asyncio's (make bench). faust-streaming
    accepts ``--loop uvloop`` but no longer acts on it, so the policy is set here.
    """
    if importlib.util.find_spec("uvloop") is not None:  # not built for Windows
        mode.loop.use("uvloop")
    sys.argv = ["kappa-agents", "worker", *faust_args]
    app.main()


def require_topics(topology: Topology, agent: str, profile: BrokerProfile) -> None:
    """Refuse to start on topics that do not exist rather than let faust invent them."""
    spec = topology.agents[agent]
    require_existing(topology, f"agent '{agent}'", [*spec.inputs, *spec.emits, *topology.failure_topics(agent), ACTIONS_TOPIC], profile)


def require_existing(topology: Topology, who: str, logical: Sequence[str], profile: BrokerProfile) -> None:
    existing = list_topics(profile)
    missing = sorted(topology.topic_name(t) for t in logical if topology.topic_name(t) not in existing)
    if missing:
        raise BrokerError(f"{who} needs topic(s) {', '.join(missing)}, which do not exist; run `kappa-agents topics apply`")


def supervise(agents: Sequence[str], faust_args: Sequence[str]) -> int:
    """Start one worker process per agent; stop all when one exits or on SIGINT/SIGTERM."""
    children = [
        subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--agent", name, *faust_args]) for name in agents
    ]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    return _stop_all(children)


def _stop_all(children: Sequence[subprocess.Popen[bytes]], timeout: float = 20.0) -> int:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return max((abs(child.returncode or 0) for child in children), default=0)
