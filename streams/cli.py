"""``kappa-agents``: the command line people use to run and operate the runtime.

Each command is a thin shell over one module (broker, topology, admin, worker,
edge, replay, demo). Errors a user can cause print one clear message and exit
1; nothing prints a traceback for them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

from streams.actions import ActionLog
from streams.admin import apply_topics, topics_wanted
from streams.answers import respond
from streams.broker import BrokerProfile, EmbeddedBroker, detect_profile
from streams.dlq import Selection, list_dead_letters, purge, redrive, show_dead_letter
from streams.edge import build_outgoing, send, tail
from streams.errors import KappaError, TopologyError
from streams.graph import to_dot, to_svg
from streams.patterns.show import show
from streams.replay import replay_agent, target_from
from streams.settings import Settings, load_settings
from streams.timetravel import Cutoff, history_lines, load_story, show_lines, task_at
from streams.topology import PROJECTIONS, Topology, load_topology
from streams.types import JsonObject

def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "worker":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.run(args, extra))
    except KappaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kappa-agents", description=__doc__.splitlines()[0])
    parser.add_argument("--topology", type=Path, help="topology file (default: $KAPPA_TOPOLOGY or ./topology.yaml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    broker = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu)")
    broker.add_argument("action", choices=["start", "stop", "status"])
    broker.add_argument("--durable", action="store_true", help="store in a local SeaweedFS (S3) under the state dir, surviving a crash")
    broker.set_defaults(run=_broker)

    topology = sub.add_parser("topology", help="validate and describe topology.yaml")
    topology.add_argument("action", choices=["check", "show", "graph"], help="show: what patterns expand into; graph: DOT + SVG")
    topology.add_argument("file", nargs="?", type=Path)
    topology.add_argument("--out", type=Path, default=Path("topology.svg"), help="graph: the SVG to write (the .dot goes next to it)")
    topology.set_defaults(run=_topology)

    topics = sub.add_parser("topics", help="create/update the topics topology.yaml declares")
    topics.add_argument("action", choices=["apply"])
    topics.set_defaults(run=_topics)

    worker = sub.add_parser("worker", help="run agents (all, or --agent NAME); faust's worker flags pass through")
    worker.add_argument("--agent", help="run only this agent in this process (or the built-in `projections`)")
    worker.set_defaults(run=_worker)

    send = sub.add_parser("send", help="publish JSON events onto a topic")
    send.add_argument("topic")
    send.add_argument("json", nargs="?", help="one JSON payload (or {\"type\":..., \"payload\":...})")
    send.add_argument("--file", type=Path, help="a JSON-lines file of events")
    send.add_argument("--type", help="event type (default: the topic's only declared type)")
    send.add_argument("--key", help="record key (picks the partition; same key, same order)")
    send.add_argument("--key-field", help="use this payload field as the key")
    send.add_argument("--json-wire", action="store_true", help="write the JSON envelope instead of Avro")
    send.add_argument("--max-lag", type=int, metavar="N", help="wait while an agent reading the topic lags more than N (default: flow.max_lag)")
    send.set_defaults(run=_send)

    tail = sub.add_parser("tail", help="print the decoded events of a topic")
    tail.add_argument("topic")
    tail.add_argument("--limit", type=int)
    tail.add_argument("--idle", type=float, default=2.0, help="stop after this many seconds without records")
    tail.set_defaults(run=_tail)

    replay = sub.add_parser("replay", help="reset an agent's offsets so its next run re-reads the log")
    replay.add_argument("--agent", required=True)
    target = replay.add_mutually_exclusive_group()
    target.add_argument("--to-earliest", action="store_true")
    target.add_argument("--to-datetime", type=datetime.fromisoformat, metavar="ISO")
    target.add_argument("--to-offset", type=int, metavar="N")
    target.add_argument("--shift-by", type=int, metavar="N")
    replay.add_argument("--reset-tables", action="store_true", help="also drop the agent's tables so the replay rebuilds them")
    replay.add_argument("--dry-run", action="store_true")
    sandbox = replay.add_argument_group("sandbox", "A/B a new handler on history; nothing reaches production")
    sandbox.add_argument("--sandbox", action="store_true", help="run --handler over the agent's input in a namespace of its own")
    sandbox.add_argument("--handler", metavar="MODULE:FUNCTION", help="the new handler to compare with the agent's")
    sandbox.add_argument("--from", dest="start", type=datetime.fromisoformat, metavar="ISO", help="first record time replayed")
    sandbox.add_argument("--to", dest="end", type=datetime.fromisoformat, metavar="ISO", help="last record time replayed")
    replay.set_defaults(run=_replay)

    dlq = sub.add_parser("dlq", help="list, show, redrive and purge dead letters (<agent>.dlq)")
    dlq_actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    dlq_list = dlq_actions.add_parser("list", help="live dead letters, one per line, and the depth per category")
    dlq_list.add_argument("--agent", help="only this agent (default: every agent in the topology)")
    dlq_list.add_argument("--category", nargs="+", action="extend", help="only these failure categories")
    dlq_list.add_argument("--since", type=datetime.fromisoformat, metavar="ISO", help="only those that died at or after ISO")
    dlq_list.set_defaults(run=_dlq_list)
    dlq_show = dlq_actions.add_parser("show", help="one dead letter: headers, key, event or its bytes")
    dlq_show.add_argument("id", metavar="ID", help="AGENT:PARTITION:OFFSET, as `dlq list` prints it")
    dlq_show.set_defaults(run=_dlq_show)
    dlq_redrive = dlq_actions.add_parser("redrive", help="send dead letters back to their agent, attempts reset")
    dlq_redrive.add_argument("--agent", help="only this agent (default: every agent, or those the IDs name)")
    dlq_redrive.add_argument("--category", nargs="+", action="extend", help="only these failure categories")
    dlq_redrive.add_argument("--id", nargs="+", action="extend", metavar="ID", help="only these dead letters")
    dlq_redrive.add_argument("--dry-run", action="store_true")
    dlq_redrive.set_defaults(run=_dlq_redrive)
    dlq_purge = dlq_actions.add_parser("purge", help="drop dead letters that died before a time from the list and the depth")
    dlq_purge.add_argument("--before", type=datetime.fromisoformat, metavar="ISO", required=True)
    dlq_purge.add_argument("--agent", help="only this agent (default: every agent)")
    dlq_purge.add_argument("--dry-run", action="store_true")
    dlq_purge.set_defaults(run=_dlq_purge)

    example = sub.add_parser("example", help="run one multi-agent pattern's example end to end and show who did what")
    example.add_argument("name", help="orchestrator-worker, hierarchical, market or blackboard")
    example.set_defaults(run=_example)

    task = sub.add_parser("task", help="one task from the action log: its state, history, state at a point in time")
    task_actions = task.add_subparsers(dest="action", required=True, metavar="ACTION")
    task_show = task_actions.add_parser("show", help="state, history summary and decisions (as GET /tasks/ID)")
    task_show.add_argument("id", metavar="ID")
    task_show.add_argument("--json", action="store_true", help="print the JSON view")
    task_show.set_defaults(run=_task_show)
    task_history = task_actions.add_parser("history", help="every state the task passed through and the action that caused it")
    task_history.add_argument("id", metavar="ID")
    task_history.set_defaults(run=_task_history)
    task_state = task_actions.add_parser("state", help="the task as it was at a time or log offset, folded from the log")
    task_state.add_argument("id", metavar="ID")
    point = task_state.add_mutually_exclusive_group(required=True)
    point.add_argument("--at", type=datetime.fromisoformat, metavar="ISO", help="a time with its timezone")
    point.add_argument("--at-offset", type=int, metavar="N", help="an offset in the task's partition of agents.actions (see `task history`)")
    task_state.add_argument("--json", action="store_true", help="print the JSON view")
    task_state.set_defaults(run=_task_state)
    task_respond = task_actions.add_parser("respond", help="answer the question a parked task waits on")
    task_respond.add_argument("id", metavar="ID")
    task_respond.add_argument("answer", metavar="JSON", help="the answer, matching the question's schema")
    task_respond.set_defaults(run=_task_respond)

    projections = sub.add_parser("projections", help="the read side folded from agents.actions (worker --agent projections)")
    projections.add_argument("action", choices=["rebuild"], help="rebuild: forget the projections so the next worker re-folds the whole log")
    projections.set_defaults(run=_projections)

    demo = sub.add_parser("demo", help="run the fraud/compliance demo end to end and show what happens")
    demo.add_argument("--events", type=int, default=1000)
    demo.set_defaults(run=_demo)
    return parser


def _broker(args: argparse.Namespace, _: list[str]) -> int:
    settings = load_settings()
    if settings.bootstrap_servers:
        print(f"KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers} is set: that cluster is used, nothing embedded runs")
        return 0
    broker = EmbeddedBroker(settings, durable=args.durable)
    if args.action == "stop":
        print("stopped" if broker.stop() else "not running")
        return 0
    status = broker.start() if args.action == "start" else broker.status()
    print(f"{'running' if status.running else 'not running'} on {status.bootstrap} (pid {status.pid}, storage {status.storage}, log {status.log})")
    if status.store is not None:
        store = status.store
        print(f"storage: SeaweedFS {'running' if store.running else 'not running'} at {store.endpoint} (pid {store.pid}, data {store.data_dir}, log {store.log})")
    return 0 if status.running or args.action == "status" else 1


def _topology(args: argparse.Namespace, _: list[str]) -> int:
    path = args.file or _topology_path(args)
    try:
        topology = load_topology(path)
    except TopologyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {path}", file=sys.stderr)
        return 1
    if args.action == "show":
        print(show(topology))
    elif args.action == "graph":
        print(_graph(topology, args.out))
    else:
        print(topology.summary())
    return 0


def _graph(topology: Topology, out: Path) -> str:
    dot = out.with_suffix(".dot")
    dot.write_text(to_dot(topology))
    out.write_text(to_svg(topology))
    return f"wrote {dot} (Graphviz: dot -Tpng {dot} -o {out.with_suffix('.png')}) and {out}"


def _topics(args: argparse.Namespace, _: list[str]) -> int:
    rt = _runtime(args)
    report = apply_topics(rt.profile, topics_wanted(rt.topology))
    print(report)
    return 0


def _worker(args: argparse.Namespace, faust_args: list[str]) -> int:
    from streams.worker import run_agent, supervise  # imports faust: only where needed

    rt = _runtime(args)
    if args.agent is None:
        return supervise([*rt.topology.agents, PROJECTIONS], faust_args)
    if args.agent == PROJECTIONS:
        from streams.projections import run_projections

        run_projections(rt.topology, rt.settings, rt.profile, faust_args)
        return 0
    if args.agent not in rt.topology.agents:
        raise KappaError(f"no agent '{args.agent}' in {rt.topology.path.name}; agents: {', '.join(rt.topology.agents)}")
    run_agent(rt.topology, args.agent, rt.settings, rt.profile, faust_args)
    return 0


def _send(args: argparse.Namespace, _: list[str]) -> int:
    rt = _runtime(args)
    topology = rt.topology
    texts = [line for line in args.file.read_text().splitlines() if line.strip()] if args.file else [args.json or ""]
    items = [build_outgoing(topology, args.topic, text, event_type=args.type, key_field=args.key_field, key=args.key) for text in texts]
    max_lag = args.max_lag if args.max_lag is not None else topology.flow.max_lag
    send(rt.profile, topology, args.topic, items, as_json=args.json_wire, max_lag=max_lag)
    print(f"sent {len(items)} event(s) to {topology.topic_name(args.topic)}")
    return 0


def _tail(args: argparse.Namespace, _: list[str]) -> int:
    rt = _runtime(args)
    for line in tail(rt.profile, rt.topology.topic_name(args.topic), idle_s=args.idle, limit=args.limit):
        sys.stdout.write(orjson.dumps(line).decode() + "\n")
    return 0


def _replay(args: argparse.Namespace, _: list[str]) -> int:
    if args.sandbox:
        return _sandbox(args)
    if args.handler or args.start or args.end:
        raise KappaError("--handler, --from and --to belong to a sandbox replay: add --sandbox")
    if not (args.to_earliest or args.to_datetime or args.to_offset is not None or args.shift_by is not None):
        raise KappaError("replay needs a target: --to-earliest, --to-datetime ISO, --to-offset N or --shift-by N (or --sandbox)")
    rt = _runtime(args)
    target = target_from(args.to_earliest, args.to_datetime, args.to_offset, args.shift_by)
    summary = replay_agent(rt.topology, rt.settings, rt.profile, args.agent, target, reset_tables=args.reset_tables, dry_run=args.dry_run)
    print(summary)
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from streams.sandbox import Window, format_report, run_sandbox  # imports the runtime: only where needed

    if not args.handler:
        raise KappaError("a sandbox replay needs --handler MODULE:FUNCTION, the new version to compare")
    rt = _runtime(args)
    print(format_report(run_sandbox(rt.topology, rt.settings, rt.profile, args.agent, args.handler, Window(args.start, args.end))))
    return 0


def _dlq_list(args: argparse.Namespace, _: list[str]) -> int:
    rt = _runtime(args)
    print(list_dead_letters(rt.profile, rt.topology, args.agent, Selection.of(args.category, None, args.since)))
    return 0


def _dlq_show(args: argparse.Namespace, _: list[str]) -> int:
    rt = _runtime(args)
    sys.stdout.write(orjson.dumps(show_dead_letter(rt.profile, rt.topology, args.id), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _dlq_redrive(args: argparse.Namespace, _: list[str]) -> int:
    rt = _runtime(args)
    print(redrive(rt.profile, rt.topology, args.agent, Selection.of(args.category, args.id, None), dry_run=args.dry_run))
    return 0


def _dlq_purge(args: argparse.Namespace, _: list[str]) -> int:
    rt = _runtime(args)
    print(purge(rt.profile, rt.topology, args.agent, args.before, dry_run=args.dry_run))
    return 0


def _example(args: argparse.Namespace, _: list[str]) -> int:
    from streams.examples import example_topology, run_example  # imports faust: only where needed

    settings = load_settings()
    topology = example_topology(args.name, settings.namespace)
    return run_example(args.name, topology, settings, detect_profile(settings))


def _task_show(args: argparse.Namespace, _: list[str]) -> int:
    rt = _runtime(args)
    _print_task(task_at(load_story(rt.profile, ActionLog.of(rt.topology), args.id)), as_json=args.json)
    return 0


def _task_history(args: argparse.Namespace, _: list[str]) -> int:
    rt = _runtime(args)
    print("\n".join(history_lines(load_story(rt.profile, ActionLog.of(rt.topology), args.id))))
    return 0


def _task_state(args: argparse.Namespace, _: list[str]) -> int:
    rt = _runtime(args)
    story = load_story(rt.profile, ActionLog.of(rt.topology), args.id)
    _print_task(task_at(story, Cutoff.of(args.at, args.at_offset)), as_json=args.json)
    return 0


def _task_respond(args: argparse.Namespace, _: list[str]) -> int:
    rt = _runtime(args)
    print(respond(rt.profile, rt.topology, args.id, args.answer))
    return 0


def _print_task(task: JsonObject, *, as_json: bool) -> None:
    print(orjson.dumps(task, option=orjson.OPT_INDENT_2).decode() if as_json else "\n".join(show_lines(task)))


def _projections(args: argparse.Namespace, _: list[str]) -> int:
    from streams.projections import rebuild_projections  # imports faust: only where needed

    rt = _runtime(args)
    print(rebuild_projections(rt.topology, rt.settings, rt.profile))
    return 0


def _demo(args: argparse.Namespace, _: list[str]) -> int:
    from streams.demo import run_demo  # imports faust: only where needed

    rt = _runtime(args)
    return run_demo(rt.topology, rt.settings, rt.profile, events=args.events)


@dataclass(frozen=True)
class _Runtime:
    """What every broker-facing command needs, loaded once."""

    settings: Settings
    topology: Topology
    profile: BrokerProfile


def _topology_path(args: argparse.Namespace) -> Path:
    return Path(args.topology or load_settings().topology_path)


def _runtime(args: argparse.Namespace) -> _Runtime:
    settings = load_settings()
    topology = load_topology(_topology_path(args), namespace=settings.namespace)
    return _Runtime(settings, topology, detect_profile(settings))


if __name__ == "__main__":
    sys.exit(main())
