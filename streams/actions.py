"""The action log: what every agent did, as immutable Avro events on ``agents.actions``.

The runtime writes it around every handler call (handlers never do): the task
entering the system, each model decision with its token usage, each tool call
(side effect) and its outcome, what the call emitted, failures, and the
lifecycle states it asks for. Records are keyed by task id and go to the
partition ``task_partition`` picks, so one task's whole story is one key's
history, in the order it happened; projections and time travel fold it.

Records use Avro's single-object encoding (``schemas/AgentAction.avsc``), so a
reader knows which schema wrote each one and resolves old records against the
newest schema (fastavro's schema resolution); keep every schema that ever wrote
a record in ``schemas/history/`` so it stays readable.
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import orjson
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from streams.effects import EffectScope
from streams.envelope import SCHEMA_DIR, Event, derived_id
from streams.errors import EnvelopeError
from streams.human import Decision, Question
from streams.records import Record
from streams.topology import ACTIONS_TOPIC, Topology
from streams.types import ChatMessage, Completion, JsonObject, Model

SCHEMA_FILE = SCHEMA_DIR / "AgentAction.avsc"
HISTORY_DIR = SCHEMA_DIR / "history"
_MAGIC = b"\xc3\x01"
_ID_NAMESPACE = uuid.UUID("0c8e5f0a-3d1b-4c52-9b7e-5a4f2e1d7c90")
SUMMARY_CHARS = 200


@dataclass(frozen=True)
class Action:
    """One action log entry; ``kind`` names the detail record (``TaskCreated``, ``AgentDecision``...)."""

    action_id: str
    task_id: str
    correlation_id: str
    causation_id: str | None
    agent: str
    timestamp: int
    kind: str
    detail: JsonObject

    def as_json(self) -> JsonObject:
        return {
            "action_id": self.action_id,
            "kind": self.kind,
            "agent": self.agent,
            "timestamp": self.timestamp,
            "causation_id": self.causation_id,
            "correlation_id": self.correlation_id,
            "detail": self.detail,
        }


class ActionCodec:
    """Avro single-object encoding of actions; reads every schema version it knows, as the newest."""

    def __init__(self, reader: Path = SCHEMA_FILE, writers: Iterable[Path] = ()) -> None:
        self._reader = fastavro.parse_schema(load_schema(str(reader)))
        self._header = _MAGIC + _fingerprint(self._reader)
        self._writers = {_fingerprint(s): s for s in (fastavro.parse_schema(load_schema(str(p))) for p in writers)}
        self._writers[self._header[2:]] = self._reader

    def encode(self, action: Action) -> bytes:
        record = {
            "action_id": action.action_id,
            "task_id": action.task_id,
            "correlation_id": action.correlation_id,
            "causation_id": action.causation_id,
            "agent": action.agent,
            "timestamp": action.timestamp,
            "detail": (f"kappa.actions.{action.kind}", action.detail),
        }
        out = io.BytesIO()
        out.write(self._header)
        fastavro.schemaless_writer(out, self._reader, record)
        return out.getvalue()

    def decode(self, value: bytes | None) -> Action:
        """EnvelopeError when the bytes are not an action written by a known schema."""
        if not value or value[:2] != _MAGIC:
            raise EnvelopeError(f"not an action: starts with {(value or b'')[:8]!r}, expected Avro single-object (C3 01 ...)")
        writer = self._writers.get(value[2:10])
        if writer is None:
            raise EnvelopeError(
                f"action written with unknown schema fingerprint {value[2:10].hex()}; "
                f"add the schema that wrote it to {HISTORY_DIR}"
            )
        try:
            record = fastavro.schemaless_reader(io.BytesIO(value[10:]), writer, self._reader, return_record_name=True)
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise EnvelopeError(f"corrupt action body: {exc!r}") from exc
        assert isinstance(record, dict)
        name, detail = record.pop("detail")
        return Action(**record, kind=name.rpartition(".")[2], detail=detail)


@cache
def default_codec() -> ActionCodec:
    """The codec for this checkout's schema, reading every archived version too."""
    return ActionCodec(SCHEMA_FILE, sorted(HISTORY_DIR.glob("AgentAction*.avsc")) if HISTORY_DIR.is_dir() else ())


def task_partition(task_id: str, partitions: int) -> int:
    """The action log partition of a task: CRC-32 of the key, as librdkafka's default partitioner."""
    return zlib.crc32(task_id.encode()) % partitions


@dataclass(frozen=True)
class ActionLog:
    """Where a topology's actions go: the namespaced ``agents.actions`` and its partitioning."""

    codec: ActionCodec
    topic: str
    partitions: int

    @classmethod
    def of(cls, topology: Topology) -> ActionLog:
        return cls(default_codec(), topology.topic_name(ACTIONS_TOPIC), topology.actions_partitions())

    def records(self, actions: Iterable[Action]) -> list[Record]:
        return [
            Record(self.topic, a.task_id.encode(), self.codec.encode(a), [], task_partition(a.task_id, self.partitions))
            for a in actions
        ]


def digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class HandlerActions:
    """The actions of one handler call, collected while it runs and published before its outputs.

    Ids derive from (input event, agent, attempt, position), so handling the
    same delivery again writes the same ids.
    """

    agent: str
    event: Event
    clock: Callable[[], float] = time.time
    actions: list[Action] = field(default_factory=list)

    def add(self, kind: str, detail: JsonObject, *, action_id: str | None = None) -> Action:
        e = self.event
        seed = f"{e.event_id}/{self.agent}/{e.attempt}/{len(self.actions)}"
        action = Action(
            action_id or derived_id(_ID_NAMESPACE, seed),
            e.task_id, e.correlation_id, e.event_id, self.agent, int(self.clock() * 1000), kind, detail,
        )
        self.actions.append(action)
        return action

    def started(self, topic: str) -> None:
        """A task's entry event (nothing caused it) creates the task and sets it working."""
        e = self.event
        if e.causation_id is None:
            created = {"event_id": e.event_id, "event_type": e.type, "topic": topic, "source": e.source}
            self.add("TaskCreated", created, action_id=derived_id(_ID_NAMESPACE, f"{e.event_id}/created"))
            self.state("working", f"{self.agent} picked up {e.type}")

    def state(self, state: str, reason: str) -> None:
        self.add("TaskStateChanged", {"state": state, "reason": reason})

    def decided(self, prompt_digest: str, completion: Completion, duration_ms: int) -> None:
        self.add("AgentDecision", {
            "model": completion.model,
            "prompt_digest": prompt_digest,
            "summary": completion.text[:SUMMARY_CHARS],
            "input_tokens": completion.input_tokens,
            "output_tokens": completion.output_tokens,
            "duration_ms": duration_ms,
        })

    def emitted(self, topic: str, outputs: Sequence[Event], output_topics: Sequence[str]) -> None:
        listed = [{"topic": t, "event_type": o.type, "event_id": o.event_id} for o, t in zip(outputs, output_topics)]
        self.add("ResultEmitted", {"input_topic": topic, "outputs": listed})

    def asked(self, question: Question, reply_topic: str, reply_partition: int, reply_key: bytes | None) -> None:
        self.add("HumanInputRequested", {
            "question": question.text,
            "answer_schema": orjson.dumps(question.schema).decode(),
            "reply_topic": reply_topic,
            "reply_partition": reply_partition,
            "reply_key": None if reply_key is None else reply_key.decode("utf-8", "replace"),
            "timeout_s": question.timeout_s,
            "on_timeout": question.on_timeout,
        })
        self.state("input-required", f"{self.agent} asked: {question.text}")

    def answered(self, answer: JsonObject, question: Question) -> None:
        self.add("HumanInputProvided", {"answer": orjson.dumps(answer).decode()})
        self.state("working", f"a person answered: {question.text}")

    def timed_out(self, question: Question) -> None:
        error = f"nobody answered {question.text!r} within {question.timeout_s:g} s"
        self.add("TaskFailed", {"category": "human_timeout", "error": error, "attempt": self.event.attempt, "final": True})
        self.state("failed", f"{self.agent}: {error}")

    def refused(self, answer: JsonObject, reason: str) -> None:
        self.add("HumanInputRejected", {"answer": orjson.dumps(answer).decode(), "reason": reason})

    def failed(self, category: str, error: str, *, final: bool) -> None:
        """A final failure fails the task; a task whose entry event was refused before any handler ran is rejected."""
        refused = self.event.causation_id is None and not self.actions
        self.add("TaskFailed", {"category": category, "error": error[:2000], "attempt": self.event.attempt, "final": final})
        if final:
            self.state("rejected" if refused else "failed", f"{self.agent}: {category}")


class RecordingModel:
    """The handler's model, recording an ``AgentDecision`` (tokens included) per call.

    ``replay`` holds the decisions of an earlier run of the same call: a
    continuation parked for a person runs its handler again from the start.
    While the handler sends the same prompts in the same order, the answers come
    from there, neither paid nor logged again; the first different prompt ends
    the replay and reaches the model.
    """

    def __init__(
        self, model: Model, actions: HandlerActions, replay: Sequence[Decision] = (), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = model.name
        self._model = model
        self._actions = actions
        self._replay = deque(replay)
        self._clock = clock
        self.made: list[Decision] = []
        """Every decision of this run, replayed or new, in order: what a parked continuation keeps."""

    async def complete(self, messages: Sequence[ChatMessage], **opts: Any) -> Completion:
        prompt = digest([dict(m) for m in messages])
        if self._replay and self._replay[0].prompt_digest == prompt:
            decision = self._replay.popleft()
        else:
            self._replay.clear()
            started = self._clock()
            completion = await self._model.complete(messages, **opts)
            self._actions.decided(prompt, completion, int((self._clock() - started) * 1000))
            decision = Decision(prompt, completion.text, completion.input_tokens, completion.output_tokens, completion.model)
        self.made.append(decision)
        return decision.completion()

    async def aclose(self) -> None:
        """The wrapped model belongs to the worker, which closes it."""


@dataclass(frozen=True)
class RecordedEffectScope(EffectScope):
    """Side effects (the agent's tools) with a ``ToolCalled``/``ToolResult`` pair around each."""

    actions: HandlerActions

    async def run(self, action_type: str, act: Callable[[], Awaitable[Any]], *, irreversible: bool) -> Any:
        call_id = f"{self.task_id}/{action_type}"
        self.actions.add("ToolCalled", {"tool": action_type, "call_id": call_id, "arguments_digest": digest([call_id, irreversible])})
        started = time.monotonic()
        outcome: JsonObject = {"tool": action_type, "call_id": call_id, "outcome": "ok", "error": None}
        try:
            return await super().run(action_type, act, irreversible=irreversible)
        except Exception as exc:
            outcome |= {"outcome": "error", "error": f"{type(exc).__name__}: {exc}"[:2000]}
            raise
        finally:
            self.actions.add("ToolResult", {**outcome, "duration_ms": int((time.monotonic() - started) * 1000)})


def _fingerprint(schema: Any) -> bytes:
    """Little-endian CRC-64-AVRO of the parsing canonical form, as the single-object encoding wants."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
