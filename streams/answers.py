"""Answering a task that waits for a person: ``kappa-agents task respond ID '{json}'``.

The question, its schema and where to answer (the agent's ``<agent>.human``
topic, the partition its continuation is parked in) are all in the task's
``HumanInputRequested`` action, so any producer can answer; this is the one
for people. It checks the answer before sending, as the runtime does on
arrival, so a wrong answer is refused here with the question and its schema.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson

from streams.actions import Action, ActionLog
from streams.broker import BrokerProfile
from streams.producer import publish
from streams.envelope import encode, json_object
from streams.errors import KappaError
from streams.human import answer_event, answer_problem
from streams.lifecycle import fold_tasks
from streams.records import Record
from streams.timetravel import Logged, load_story
from streams.topology import Topology
from streams.tracing import new_trace_headers


def pending_question(story: Sequence[Logged]) -> Action | None:
    """The question the task waits on: its last ``HumanInputRequested``, if the task is ``input-required``."""
    actions = [entry.action for entry in story]
    if fold_tasks(actions)[actions[0].task_id]["state"] != "input-required":
        return None
    return next((a for a in reversed(actions) if a.kind == "HumanInputRequested"), None)


def respond(profile: BrokerProfile, topology: Topology, task_id: str, text: str) -> str:
    """Send the answer to the parked continuation; KappaError (task kept waiting) if it cannot be the answer."""
    asked = pending_question(load_story(profile, ActionLog.of(topology), task_id))
    if asked is None:
        raise KappaError(f"task {task_id!r} is not waiting for an answer; `kappa-agents task show {task_id}` shows its state")
    answer = json_object(text, "the answer")
    schema = orjson.loads(asked.detail["answer_schema"])
    problem = answer_problem(schema, answer)
    if problem is not None:
        raise KappaError(f"{problem}; task {task_id!r} keeps waiting. Question: {asked.detail['question']!r}; answer schema: {asked.detail['answer_schema']}")
    event = answer_event(task_id, answer, requested_by=asked.action_id, timestamp=int(time.time() * 1000))
    detail = asked.detail
    key = None if detail["reply_key"] is None else detail["reply_key"].encode()
    topic = topology.topic_name(detail["reply_topic"])
    publish(profile, [Record(topic, key, encode(event), new_trace_headers(), detail["reply_partition"])])
    return f"answered task {task_id} ({asked.agent} asked {detail['question']!r}); sent to {topic}[{detail['reply_partition']}]"
