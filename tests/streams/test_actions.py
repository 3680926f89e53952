"""The action log's records: round trip, deterministic ids, and old records read with newer schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.actions import SCHEMA_FILE, Action, ActionCodec, HandlerActions, RecordingModel, task_partition
from streams.envelope import Origin, new_event
from streams.human import Decision, Parked, Parking, Question
from streams.records import Incoming
from streams.errors import EnvelopeError
from streams.types import ChatMessage, Completion


def _action(kind: str, detail: dict[str, Any]) -> Action:
    return Action("a-1", "task-1", "corr-1", "evt-1", "fraud", 1_700_000_000_000, kind, detail)


def _variant(tmp_path: Path, name: str, change: Any) -> Path:
    """A copy of the current schema with one record's fields changed: another version of it."""
    schema = json.loads(SCHEMA_FILE.read_text())
    detail = next(f for f in schema["fields"] if f["name"] == "detail")
    change({record["name"]: record for record in detail["type"]})
    path = tmp_path / f"{name}.avsc"
    path.write_text(json.dumps(schema))
    return path


def test_every_action_kind_round_trips() -> None:
    codec = ActionCodec()
    details: dict[str, dict[str, Any]] = {
        "TaskCreated": {"event_id": "e", "event_type": "t", "topic": "x", "source": "cli"},
        "AgentDecision": {"model": "m", "prompt_digest": "d", "summary": "s", "input_tokens": 3, "output_tokens": 4, "duration_ms": 5},
        "ToolCalled": {"tool": "charge", "call_id": "task-1/charge", "arguments_digest": "d"},
        "ToolResult": {"tool": "charge", "call_id": "task-1/charge", "duration_ms": 2, "outcome": "ok", "error": None},
        "ResultEmitted": {"input_topic": "x", "outputs": [{"topic": "y", "event_type": "t", "event_id": "e2"}]},
        "TaskFailed": {"category": "poison", "error": "bad", "attempt": 0, "final": True},
        "TaskStateChanged": {"state": "working", "reason": "r"},
        "TransitionRejected": {"from_state": "completed", "to_state": "working", "rejected_action_id": "a-0"},
    }
    for kind, detail in details.items():
        assert codec.decode(codec.encode(_action(kind, detail))) == _action(kind, detail)


def test_reader_with_added_optional_field_reads_records_written_before_it(tmp_path: Path) -> None:
    def without_error(records: dict[str, Any]) -> None:
        records["ToolResult"]["fields"] = [f for f in records["ToolResult"]["fields"] if f["name"] != "error"]

    old = _variant(tmp_path, "v1", without_error)
    written = ActionCodec(reader=old).encode(_action("ToolResult", {"tool": "t", "call_id": "c", "duration_ms": 1, "outcome": "ok"}))

    read = ActionCodec(SCHEMA_FILE, writers=[old]).decode(written)

    assert read.detail == {"tool": "t", "call_id": "c", "duration_ms": 1, "outcome": "ok", "error": None}


def test_reader_with_renamed_field_and_alias_reads_records_written_with_the_old_name(tmp_path: Path) -> None:
    def rename_summary(records: dict[str, Any]) -> None:
        for f in records["AgentDecision"]["fields"]:
            if f["name"] == "summary":
                f.update(name="decision", aliases=["summary"])

    new = _variant(tmp_path, "v3", rename_summary)
    decision = {"model": "m", "prompt_digest": "d", "summary": "risk: high", "input_tokens": 1, "output_tokens": 2, "duration_ms": 3}
    written = ActionCodec().encode(_action("AgentDecision", decision))

    read = ActionCodec(new, writers=[SCHEMA_FILE]).decode(written)

    assert read.detail["decision"] == "risk: high"
    assert "summary" not in read.detail


def test_record_from_an_unknown_schema_is_refused_with_the_fix(tmp_path: Path) -> None:
    other = _variant(tmp_path, "other", lambda records: records["TaskStateChanged"]["fields"].pop())
    written = ActionCodec(reader=other).encode(_action("TaskStateChanged", {"state": "working"}))

    with pytest.raises(EnvelopeError, match="unknown schema fingerprint.*schemas/history"):
        ActionCodec().decode(written)


def test_handling_the_same_delivery_again_gives_the_same_action_ids() -> None:
    event = new_event("transaction.created", {"amount": 1}, source="cli", timestamp=1)

    def one_call() -> list[str]:
        actions = HandlerActions("fraud", event, clock=lambda: 1.0)
        actions.started("transactions.card")
        actions.decided("digest", Completion("ok", 1, 1, "offline"), 0)
        return [a.action_id for a in actions.actions]

    assert one_call() == one_call()
    assert [a.kind for a in _started(event).actions] == ["TaskCreated", "TaskStateChanged"]


def test_an_entry_event_refused_before_its_handler_ran_rejects_the_task() -> None:
    event = new_event("transaction.created", {"amount": 1}, source="cli", timestamp=1)
    refused = HandlerActions("fraud", event)
    refused.failed("poison", "bad payload", final=True)
    handled = _started(event)
    handled.failed("unknown", "boom", final=True)

    assert refused.actions[-1].detail["state"] == "rejected"
    assert handled.actions[-1].detail["state"] == "failed"


def test_a_task_always_maps_to_the_same_partition() -> None:
    assert {task_partition("task-42", 4) for _ in range(3)} == {task_partition("task-42", 4)}
    assert {task_partition(f"t{i}", 4) for i in range(100)} == {0, 1, 2, 3}


def _started(event: Any) -> HandlerActions:
    actions = HandlerActions("fraud", event)
    actions.started("transactions.card")
    return actions


class CountingModel:
    """A model that answers with the prompt and counts what it was paid for."""

    name = "counting"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def complete(self, messages: list[ChatMessage], **opts: Any) -> Completion:
        self.prompts.append(messages[-1]["content"])
        return Completion(f"re: {messages[-1]['content']}", 10, 2, self.name)

    async def aclose(self) -> None:
        pass


async def test_a_call_run_again_after_a_pause_replays_its_decisions_until_a_prompt_differs() -> None:
    event = new_event("refund.requested", {"amount": 9}, source="cli", timestamp=1)
    model = CountingModel()
    first = RecordingModel(model, HandlerActions("approver", event))
    await first.complete([{"role": "user", "content": "assess"}])
    await first.complete([{"role": "user", "content": "phrase"}])

    actions = HandlerActions("approver", event)
    again = RecordingModel(model, actions, first.made)
    replayed = await again.complete([{"role": "user", "content": "assess"}])
    changed = await again.complete([{"role": "user", "content": "phrase it differently"}])
    after = await again.complete([{"role": "user", "content": "phrase"}])  # the replay ended at the first difference

    assert replayed == Completion("re: assess", 10, 2, "counting")
    assert model.prompts == ["assess", "phrase", "phrase it differently", "phrase"]
    assert [a.kind for a in actions.actions] == ["AgentDecision", "AgentDecision"]  # replayed answers are not logged again
    assert (changed.text, after.text) == ("re: phrase it differently", "re: phrase")
    assert again.made[0] == first.made[0] and len(again.made) == 3


async def test_a_parked_call_keeps_its_decisions_through_the_table() -> None:
    table: dict[str, Any] = {}

    async def record(key: str, value: Any) -> None:
        table[key] = json.loads(json.dumps(value))  # as the JSON changelog would give it back

    parking = Parking(table, record)
    record_in = Incoming(Origin("refunds.in", 0, 7, 1), b"c1", b"event", [])
    decisions = [Decision("d1", "risky", 10, 2, "offline")]
    await parking.park("task-1", Parked(record_in, "refunds.in", [], Question("ok?", {"type": "boolean"}), 5, decisions))

    parked = parking.waiting("task-1")
    assert parked is not None and parked.decisions == decisions and parked.record.value == b"event"
