"""Blackboard: participants read and write one board; the runtime filters, counts rounds and closes.

```yaml
patterns:
  incident:
    kind: blackboard
    max_rounds: 6
    agents:
      logs:        {handler: agents.board:logs, reacts_to: [incident]}
      metrics:     {handler: agents.board:metrics, reacts_to: [incident]}
      coordinator: {handler: agents.board:coordinate, reacts_to: [finding]}
```

Anyone posts ``{"kind": ..., "content": {...}}`` to ``incident.board`` to
open a session (keyed by session, so a session's entries stay in order).
Every participant is its own consumer group over the board and projects it
into its ``board`` table; the runtime calls its handler only for entry kinds it
reacts to, never for its own posts, and never once the session is closed. A
handler sees ``{"entry": ..., "board": [...]}`` and returns None, one
``{"kind", "content"}`` post or a list of them; a post's round is one more than
the entry it answers. The runtime agent ``incident-keeper`` closes the session
when a ``solution`` is posted or ``max_rounds`` is reached, posting a
``closed`` entry to the board and the outcome to ``incident.sessions``. A
participant started later reads the board from the beginning and rebuilds the
same table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from streams.context import AgentContext
from streams.envelope import Event
from streams.errors import EmitError
from streams.patterns.common import Entry, History, Pattern, runtime_topic
from streams.topology import import_handler
from streams.types import Emit, Handler, JsonObject

KIND = "blackboard"
KEYS = ("max_rounds", "parallelism")
MEMBER_KEYS = ("reacts_to",)
KEEPER = "keeper"
TABLE = "board"
ENTRY = "board.entry"
OUTCOME = "session.closed"
SOLUTION = "solution"
CLOSED = "closed"


@dataclass(frozen=True, kw_only=True)
class Blackboard(Pattern):
    max_rounds: int

    def handler(self, agent: str, base_dir: Path, history: History) -> Handler:
        member = self.member_for(agent)
        if member is None:
            return _keeper(self)
        user = import_handler(member.handler, base_dir)
        return _participant(self, member.name, frozenset(member.reacts_to), user, _closed(history(self.topic("board"))))


def parse(entry: Entry) -> Blackboard | None:
    max_rounds, parallelism = entry.count("max_rounds", 10), entry.count("parallelism", 4)
    for member in entry.members.values():
        if not member.reacts_to:
            at = entry.fields.get("agents") or entry.node
            fix = f"add `reacts_to: [kind, ...]` to patterns.{entry.name}.agents.{member.name}"
            entry.report.add(at, f"participant '{member.name}' reacts to no entry kind", fix)
    line = entry.node.line
    board, sessions = entry.topic("board"), entry.topic("sessions")
    agents = [
        entry.agent_spec(m.name, m.handler, (board,), (board,), concurrency=m.concurrency or 8, line=m.line, tables=(TABLE,))
        for m in entry.members.values()
    ]
    agents.append(entry.agent_spec(KEEPER, f"{__name__}:keep (runtime)", (board,), (board, sessions), concurrency=parallelism, tables=(TABLE,)))
    return Blackboard(
        name=entry.name, kind=KIND, line=line, members=entry.members,
        topics=(runtime_topic(board, parallelism, line), runtime_topic(sessions, parallelism, line)),
        agents=tuple(agents), max_rounds=max_rounds,
    )


@dataclass(frozen=True)
class Projection:
    """One entry applied to its session's board."""

    session: str
    entries: list[JsonObject]
    entry: JsonObject | None
    """None: a redelivery, already on the board."""
    was_closed: bool
    closed: bool


def project(table: Any, event: Event, key: str | None) -> Projection:
    """Apply an entry to the table's projection of its session (the record key, or the first post's task)."""
    p = event.payload
    session = p.get("session") or key or event.task_id
    entry = {"id": event.event_id, "kind": p["kind"], "author": p.get("author", event.source), "round": p.get("round", 0), "content": p.get("content", {})}
    board = table.get(session) or {"entries": [], "closed": False}
    if any(seen["id"] == entry["id"] for seen in board["entries"]):
        return Projection(session, board["entries"], None, board["closed"], board["closed"])
    closed = board["closed"] or entry["kind"] in (SOLUTION, CLOSED)
    table[session] = {"entries": [*board["entries"], entry], "closed": closed}
    return Projection(session, table[session]["entries"], entry, board["closed"], closed)


def _participant(
    pattern: Blackboard, name: str, reacts_to: frozenset[str], user: Callable[..., Awaitable[Any]], closed_before: frozenset[str]
) -> Handler:
    """Projects every entry; reacts to the entries it should, in sessions still open.

    ``closed_before`` are the sessions closed when its worker started (read from
    the board itself): a participant started late catches up on their history
    without answering it, and a restarted one still answers open sessions.
    """

    async def participate(event: Event, ctx: AgentContext) -> list[Emit]:
        seen = project(ctx.tables[TABLE], event, ctx.key)
        entry = seen.entry
        if entry is None or seen.closed or seen.session in closed_before or entry["author"] == name:
            return []
        if entry["kind"] not in reacts_to or entry["round"] >= pattern.max_rounds:
            return []
        posts = await user(replace(event, payload={"entry": entry, "board": seen.entries}), ctx)
        return [_post(pattern, seen.session, name, entry["round"] + 1, post) for post in _posts(posts)]

    return participate  # type: ignore[return-value]  # the runtime passes an AgentContext


def _closed(history: list[Event]) -> frozenset[str]:
    return frozenset(e.payload["session"] for e in history if e.payload.get("kind") in (SOLUTION, CLOSED) and "session" in e.payload)


def _keeper(pattern: Blackboard) -> Handler:
    async def keep(event: Event, ctx: AgentContext) -> list[Emit]:
        seen = project(ctx.tables[TABLE], event, ctx.key)
        entry = seen.entry
        if entry is None or seen.was_closed:
            return []
        solved = entry["kind"] == SOLUTION
        if not solved and entry["round"] < pattern.max_rounds:
            return []
        reason = "solution" if solved else f"max_rounds {pattern.max_rounds} reached"
        outcome = {"session": seen.session, "reason": reason, "solution": entry["content"] if solved else None,
                   "rounds": max(e["round"] for e in seen.entries), "entries": seen.entries}
        return [
            _post(pattern, seen.session, KEEPER, entry["round"], {"kind": CLOSED, "content": {"reason": reason}}),
            Emit(pattern.topic("sessions"), OUTCOME, outcome, key=seen.session),
        ]

    return keep  # type: ignore[return-value]  # the runtime passes an AgentContext


def _posts(result: Any) -> list[JsonObject]:
    posts = [] if result is None else [result] if isinstance(result, dict) else result
    if not isinstance(posts, list) or not all(isinstance(p, dict) and "kind" in p for p in posts):
        raise EmitError('a blackboard participant returns None, {"kind": ..., "content": {...}} or a list of them')
    return posts


def _post(pattern: Blackboard, session: str, author: str, round: int, post: JsonObject) -> Emit:
    entry = {"session": session, "kind": post["kind"], "author": author, "round": round, "content": post.get("content", {})}
    return Emit(pattern.topic("board"), ENTRY, entry, key=session)
