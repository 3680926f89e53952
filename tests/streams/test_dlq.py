"""The DLQ fold: which dead letters are live and the depth per category, from the log alone."""

from __future__ import annotations

import logging
import time
from datetime import datetime

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.broker import BrokerProfile
from streams.dlq import (
    DeadLetterId,
    Depth,
    DepthWatch,
    DlqError,
    Selection,
    epoch_ms,
    fold,
    purge_marker,
    read_log,
    redrive_marker,
    summary_line,
)
from streams.envelope import Origin
from streams.failures import DLQ, Delivery, Failure, dead_letter_record
from streams.records import Incoming, Record

DLQ_TOPIC = "t.flaky.dlq"
HOUR_MS = 3_600_000
NOW_MS = int(time.time() * 1000)


def _read_back(record: Record, offset: int) -> Incoming:
    """A record as a reader of the DLQ gets it back."""
    return Incoming(Origin(record.topic, record.partition or 0, offset, NOW_MS), record.key, record.value, list(record.headers))


def _dead_letter(offset: int, category: str, *, died_ms: int = NOW_MS, partition: int = 0) -> Incoming:
    event = Incoming(Origin("t.work.in", partition, 40 + offset, NOW_MS), b"k1", b"\xc3\x01original", [("traceparent", b"00-ab")])
    record = dead_letter_record(event, Delivery.of(event), Failure(category, "the answer did not parse\nline two"), DLQ_TOPIC, "flaky", "7")
    times = (DLQ + "first_failure_ms", DLQ + "last_failure_ms")
    died = [(k, str(died_ms).encode() if k in times else v) for k, v in record.headers]
    return _read_back(Record(record.topic, record.key, record.value, died, record.partition), offset)


def _redriven(letter: Incoming, offset: int) -> Incoming:
    [dead] = fold("flaky", [letter]).letters
    return _read_back(redrive_marker(dead, DLQ_TOPIC), offset)


def test_depth_counts_live_dead_letters_per_category() -> None:
    log = [_dead_letter(0, "validation_failed"), _dead_letter(1, "poison"), _dead_letter(2, "validation_failed")]

    state = fold("flaky", log)

    assert state.depth == Depth("flaky", {"validation_failed": 2, "poison": 1})
    assert [str(letter.id) for letter in state.live] == ["flaky:0:0", "flaky:0:1", "flaky:0:2"]
    assert str(state.depth) == "depth flaky: poison=1 validation_failed=2 total=3"


def test_dead_letter_keeps_the_original_bytes_and_its_reason() -> None:
    [letter] = fold("flaky", [_dead_letter(5, "validation_failed")]).letters

    assert letter.record.value == b"\xc3\x01original" and letter.record.key == b"k1"
    assert ("traceparent", b"00-ab") in letter.record.headers
    assert (letter.category, letter.attempts, letter.source) == ("validation_failed", 1, "t.work.in[0]@45")
    assert letter.first_failure_ms == letter.last_failure_ms == NOW_MS
    assert summary_line(letter).startswith("flaky:0:5  validation_failed  attempts=1  first=")
    assert summary_line(letter).endswith("from=t.work.in[0]@45  error=the answer did not parse")


def test_a_redriven_dead_letter_leaves_the_list_and_its_category_drops_to_zero() -> None:
    dead = _dead_letter(0, "validation_failed")
    log = [dead, _dead_letter(1, "poison"), _redriven(dead, 2)]

    state = fold("flaky", log)

    assert [str(letter.id) for letter in state.live] == ["flaky:0:1"]
    assert state.depth == Depth("flaky", {"validation_failed": 0, "poison": 1})
    assert state.status(state.letters[0]) == "redriven"


def test_a_purge_drops_the_dead_letters_that_died_before_its_time() -> None:
    log = [_dead_letter(0, "poison", died_ms=NOW_MS - 2 * HOUR_MS), _dead_letter(1, "poison", died_ms=NOW_MS)]

    state = fold("flaky", [*log, _read_back(purge_marker(DLQ_TOPIC, NOW_MS - HOUR_MS), 2)])

    assert [str(letter.id) for letter in state.live] == ["flaky:0:1"]
    assert state.depth.total == 1 and state.status(state.letters[0]) == "purged"


def test_the_fold_does_not_depend_on_the_order_it_reads_partitions_in() -> None:
    dead = _dead_letter(3, "unknown", partition=1)
    log = [_dead_letter(0, "poison"), dead, _redriven(dead, 4), _read_back(purge_marker(DLQ_TOPIC, 1), 1)]

    assert fold("flaky", log) == fold("flaky", list(reversed(log)))


def test_selection_filters_by_category_id_and_time() -> None:
    letters = fold("flaky", [_dead_letter(0, "poison", died_ms=NOW_MS - HOUR_MS), _dead_letter(1, "validation_failed")]).letters
    since = datetime.fromtimestamp((NOW_MS - 60_000) / 1000).astimezone()

    def chosen(selection: Selection) -> list[str]:
        return [str(letter.id) for letter in letters if selection.matches(letter)]

    assert chosen(Selection()) == ["flaky:0:0", "flaky:0:1"]
    assert chosen(Selection.of(["poison"], None, None)) == ["flaky:0:0"]
    assert chosen(Selection.of(None, ["flaky:0:1"], None)) == ["flaky:0:1"]
    assert chosen(Selection.of(None, None, since)) == ["flaky:0:1"]


def test_dead_letter_ids_round_trip_and_malformed_ones_say_the_format() -> None:
    assert DeadLetterId.parse("my-agent:2:17") == DeadLetterId("my-agent", 2, 17)
    assert str(DeadLetterId("my-agent", 2, 17)) == "my-agent:2:17"
    with pytest.raises(DlqError, match="AGENT:PARTITION:OFFSET"):
        DeadLetterId.parse("flaky:0")


def test_a_time_without_timezone_is_refused() -> None:
    with pytest.raises(DlqError, match="no timezone"):
        epoch_ms(datetime(2026, 11, 25, 10, 0))


def test_depth_watch_warns_when_a_category_reaches_the_threshold_and_at_each_multiple(caplog: pytest.LogCaptureFixture) -> None:
    watch = DepthWatch(Depth("flaky", {"poison": 1}), threshold=3)
    caplog.set_level(logging.WARNING, logger="streams.dlq")

    for category in ["poison", "validation_failed", "poison", "poison", "poison", "poison"]:
        watch.dead_lettered(category)

    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2
    assert "agent flaky has 3 dead letters of category poison (warning threshold 3" in warnings[0]
    assert "run `kappa-agents dlq list --agent flaky`" in warnings[0]
    assert "has 6 dead letters of category poison" in warnings[1]


def test_depth_watch_warns_at_start_when_a_category_is_already_over(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="streams.dlq")

    DepthWatch(Depth("flaky", {"poison": 5, "unknown": 1}), threshold=4)

    assert [record.getMessage()[:48] for record in caplog.records] == ["agent flaky has 5 dead letters of category poiso"]


def test_depth_watch_without_a_threshold_never_warns(caplog: pytest.LogCaptureFixture) -> None:
    watch = DepthWatch(Depth("flaky", {"poison": 50}), threshold=None)

    watch.dead_lettered("poison")

    assert caplog.records == []


@pytest.mark.e2e
def test_the_log_is_read_to_its_real_end_whatever_the_batches(broker: BrokerProfile, namespace: str) -> None:
    """Batches of 1, 5 and 10: Tansu reports the end as 7 (the last batch's base + 1), the records end at 16."""
    topic = f"{namespace}flaky.dlq"
    admin = AdminClient(broker.admin_config())
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result()
    producer = Producer(broker.producer_config())
    for batch in (1, 5, 10):
        for i in range(batch):
            producer.produce(topic, value=b"%d" % i, partition=0)
        assert producer.flush(10) == 0

    records = read_log(broker, topic, partitions=2)

    assert [(r.origin.partition, r.origin.offset) for r in records] == [(0, n) for n in range(16)]
