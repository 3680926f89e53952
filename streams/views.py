"""Read-only JSON query views on the projections worker's faust web server.

``GET /tasks/{id}``, ``/tasks/{id}/events``, ``/tasks?state=…``, ``/agents``.
A task lives in the partition ``task_partition`` gives it; the worker that
owns that partition (faust's assignment, shared by every member) answers, and
any other worker forwards the request there, so every worker answers every
query. Listings ask each worker for its own partitions (``?local=1``) and
merge. Reads never touch the write path: they only read the tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
import orjson
from faust.types import TableT
from faust.web import Request, Response, View

from streams.actions import ActionLog, task_partition
from streams.lifecycle import STATES, merge_agents, summary, task_view

LOCAL = "local"
"""Query parameter: answer from this worker's partitions only (how workers ask each other)."""


def add_views(app: faust.App, tasks: TableT[Any, Any], agents: TableT[Any, Any], actions: ActionLog) -> None:
    """Register the query views on ``app``'s web server."""
    owners = _Owners(app, tasks, actions.partitions)

    @app.page("/tasks/{task_id}")
    async def task(view: View, request: Request, task_id: str) -> Response:
        return await owners.answer(view, request, task_id, task_view)

    @app.page("/tasks/{task_id}/events")
    async def task_events(view: View, request: Request, task_id: str) -> Response:
        return await owners.answer(view, request, task_id, lambda found: {"task_id": task_id, "events": found["events"]})

    @app.page("/tasks")
    async def task_list(view: View, request: Request) -> Response:
        state = request.query.get("state")
        if state is not None and state not in STATES:
            return _json(view, {"error": f"unknown state {state!r}; states: {', '.join(STATES)}"}, 400)
        if request.query.get(LOCAL):
            return _json(view, [summary(t) for t in tasks.values() if t is not None and state in (None, t["state"])])
        found = [t for part in await owners.everywhere(view, request) for t in part]
        return _json(view, sorted(found, key=lambda t: (t["created_at"], t["task_id"])))

    @app.page("/agents")
    async def agent_list(view: View, request: Request) -> Response:
        if request.query.get(LOCAL):
            return _json(view, [shard for shard in agents.values() if shard is not None])
        return _json(view, merge_agents(shard for part in await owners.everywhere(view, request) for shard in part))


class _Owners:
    """Which worker owns which task, from faust's assignment of the tasks table's partitions."""

    def __init__(self, app: faust.App, tasks: TableT[Any, Any], partitions: int) -> None:
        self._app = app
        self._tasks = tasks
        self._partitions = partitions

    async def answer(self, view: View, request: Request, task_id: str, shape: Callable[[Any], Any]) -> Response:
        owner = self._owner(task_partition(task_id, self._partitions))
        if owner is None:
            return _json(view, {"error": "partitions are being assigned; retry in a moment"}, 503)
        if owner != self._me():
            status, body = await self._get(str(request.url).replace(self._base(request), owner, 1))
            return view.bytes(body, content_type="application/json", status=status)
        found = self._tasks.get(task_id)
        if found is None:
            return _json(view, {"error": f"no task {task_id!r} in the action log"}, 404)
        return _json(view, shape(found))

    async def everywhere(self, view: View, request: Request) -> list[Any]:
        """Each worker's local answer to this request (this worker's included)."""
        hosts = self._hosts()
        local = request.url.update_query({LOCAL: "1"})
        answers = [await self._get(str(local).replace(self._base(request), host, 1)) for host in hosts]
        return [orjson.loads(body) for status, body in answers if status == 200]

    def _owner(self, partition: int) -> str | None:
        topic = self._tasks.changelog_topic.get_topic_name()
        for host, assigned in self._app.router.table_metadata(self._tasks.name).items():
            if partition in assigned.get(topic, ()):
                return host.rstrip("/")
        return None

    def _hosts(self) -> list[str]:
        return sorted(host.rstrip("/") for host in self._app.router.table_metadata(self._tasks.name))

    def _me(self) -> str:
        return str(self._app.conf.canonical_url).rstrip("/")

    @staticmethod
    def _base(request: Request) -> str:
        return str(request.url.origin())

    async def _get(self, url: str) -> tuple[int, bytes]:
        async with self._app.http_client.get(url) as response:
            return response.status, await response.read()


def _json(view: View, value: Any, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(value), content_type="application/json", status=status)

