"""Human in the loop: ``await ctx.ask_human(question, schema=...)`` without blocking anything.

A handler that asks a question it has no answer for stops there
(``InputRequired``, control flow rather than a failure). The runtime parks the
continuation durably: the event being handled and the answers so far go into
the agent's ``_parked`` RocksDB table (changelog first), a
``HumanInputRequested`` action tells the world where to answer, the task
becomes ``input-required`` and the event is acked, so no worker, thread or
coroutine waits. An answer is an event on ``<agent>.human``, in the partition
of the parked event, so whichever worker owns that partition after any
restart finds the continuation; the runtime checks the answer against the
schema, then runs the handler again from the start on the parked event, with
the answers so far: ``ask_human`` returns them in order, model calls made
before the question answer from the recorded decisions instead of the model
(``RecordingModel``), and side effects are idempotent per task, so the second
run repeats none of them. A question with
``timeout_s`` fails or escalates the task when nobody answers in time.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from fastavro import parse_schema
from fastavro.schema import SchemaParseException
from fastavro.validation import ValidationError, validate

from streams.envelope import Event, Origin, encode, new_event
from streams.errors import EmitError, KappaError
from streams.records import Incoming, Record
from streams.types import Completion, JsonObject

TABLE = "_parked"
"""The runtime's table of parked continuations in every agent app, keyed by task id."""
ANSWER_TYPE = "human.input.provided"
TIMEOUT_TYPE = "human.input.timeout"
"""What the runtime sends itself on ``<agent>.human`` when a question's ``timeout_s`` passed."""
TIMEOUT_CHECK_S = 1.0
_TIMEOUT_IDS = uuid.UUID("9a3e7c21-44b0-4f6e-8d2a-0b5c6e7f8a91")
ON_TIMEOUT = ("fail", "escalate")


@dataclass(frozen=True)
class Question:
    text: str
    schema: JsonObject
    """Avro schema the answer must match."""
    timeout_s: float | None = None
    on_timeout: str = "fail"

    def as_json(self) -> JsonObject:
        return {"text": self.text, "schema": self.schema, "timeout_s": self.timeout_s, "on_timeout": self.on_timeout}


class InputRequired(Exception):
    """Raised through the handler by ``ask_human`` when the answer is not there yet: park, don't fail."""

    def __init__(self, question: Question) -> None:
        super().__init__(question.text)
        self.question = question


@dataclass(frozen=True)
class Decision:
    """A model answer a parked call already paid for, replayed when the call runs again (``RecordingModel``)."""

    prompt_digest: str
    text: str
    input_tokens: int
    output_tokens: int
    model: str

    def completion(self) -> Completion:
        return Completion(self.text, self.input_tokens, self.output_tokens, self.model)


class Conversation:
    """One handler call's questions: the answers it already has, in the order it asks.

    ``decisions``: the model answers the call got before it was parked, so running
    it again after an answer does not pay for them twice.
    """

    def __init__(self, answers: list[JsonObject], decisions: list[Decision] | None = None) -> None:
        self.answers = answers
        self.decisions = decisions or []
        self._asked = 0

    async def ask(self, text: str, schema: JsonObject, timeout_s: float | None, on_timeout: str) -> JsonObject:
        question = Question(text, schema, timeout_s, on_timeout)
        _check(question)
        if self._asked < len(self.answers):
            self._asked += 1
            return self.answers[self._asked - 1]
        raise InputRequired(question)


def answer_problem(schema: JsonObject, answer: JsonObject) -> str | None:
    """Why ``answer`` does not match ``schema``, or None."""
    try:
        validate(answer, parse_schema(schema), raise_errors=True)
    except ValidationError as exc:
        return f"the answer does not match the question's schema: {'; '.join(map(str, exc.errors))}"
    return None


def answer_event(task_id: str, answer: JsonObject, *, requested_by: str, timestamp: int) -> Event:
    """The ``HumanInputProvided`` event answering the question whose action id is ``requested_by``."""
    return replace(new_event(ANSWER_TYPE, answer, source="human", timestamp=timestamp, task_id=task_id), causation_id=requested_by)


def timeout_record(topic: str, task_id: str, parked: Parked) -> Record:
    """The event that applies a question's timeout policy, sent to the parked partition.

    Its id derives from the question, so a worker that sends it again (after a
    restart) sends the same event; one that arrives for a question already
    answered, or asked again since, changes nothing.
    """
    event = Event(
        str(uuid.uuid5(_TIMEOUT_IDS, f"{task_id}/{parked.asked_at_ms}")), TIMEOUT_TYPE, task_id, task_id, None,
        "runtime", now_ms(), 0, {"asked_at_ms": parked.asked_at_ms},
    )
    return Record(topic, parked.record.key, encode(event), [], parked.record.origin.partition)


@dataclass(frozen=True)
class Parked:
    """A continuation waiting for a person: the event to handle again, the answers and model decisions so far, the question."""

    record: Incoming
    topic: str
    """Logical topic the event was read from."""
    answers: list[JsonObject]
    question: Question
    asked_at_ms: int
    decisions: list[Decision] = field(default_factory=list)

    def due(self, now_ms: int) -> bool:
        timeout = self.question.timeout_s
        return timeout is not None and now_ms >= self.asked_at_ms + timeout * 1000


class Parking:
    """The agent's parked continuations, in its ``_parked`` table: written durably, read by task id."""

    def __init__(self, table: MutableMapping[str, Any], record: Callable[[str, Any], Awaitable[None]]) -> None:
        self._table = table
        self._record = record
        """Writes one entry and returns once the broker acknowledged it."""

    def waiting(self, task_id: str) -> Parked | None:
        entry = self._table.get(task_id)
        return None if entry is None else _parked(entry)

    def overdue(self, now: int) -> Iterator[tuple[str, Parked]]:
        """Continuations parked in this worker's partitions whose question timed out."""
        for task_id, entry in list(self._table.items()):
            if entry is not None and (parked := _parked(entry)).due(now):
                yield task_id, parked

    async def park(self, task_id: str, parked: Parked) -> None:
        o = parked.record.origin
        await self._record(task_id, {
            "origin": [o.topic, o.partition, o.offset, o.timestamp],
            "key": _b64(parked.record.key),
            "value": _b64(parked.record.value),
            "topic": parked.topic,
            "answers": parked.answers,
            "question": parked.question.as_json(),
            "asked_at_ms": parked.asked_at_ms,
            "decisions": [asdict(d) for d in parked.decisions],
        })

    async def release(self, task_id: str) -> None:
        await self._record(task_id, None)


def now_ms() -> int:
    return int(time.time() * 1000)


def _check(question: Question) -> None:
    """A malformed question is the handler's bug: it fails like an invalid output does."""
    if question.on_timeout not in ON_TIMEOUT:
        raise EmitError(f"ask_human(on_timeout={question.on_timeout!r}): choose one of {', '.join(ON_TIMEOUT)}")
    try:
        parse_schema(question.schema)
    except (SchemaParseException, KappaError, TypeError, ValueError) as exc:
        raise EmitError(f"ask_human schema is not an Avro schema: {exc}") from exc


def _parked(entry: Mapping[str, Any]) -> Parked:
    topic, partition, offset, timestamp = entry["origin"]
    record = Incoming(Origin(topic, partition, offset, timestamp), _unb64(entry["key"]), _unb64(entry["value"]), [])
    q = entry["question"]
    question = Question(q["text"], q["schema"], q["timeout_s"], q["on_timeout"])
    decisions = [Decision(**d) for d in entry.get("decisions", ())]  # entries parked before decisions were kept have none
    return Parked(record, entry["topic"], entry["answers"], question, entry["asked_at_ms"], decisions)


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)

