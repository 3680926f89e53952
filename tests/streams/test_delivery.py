"""Which delivery a record is: failure headers written by another producer must not break it."""

from __future__ import annotations

import pytest

from streams.envelope import Origin
from streams.failures import RETRY, Delivery, fields
from streams.records import Headers, Incoming

ORIGIN = Origin("t.work.retry.1", 0, 7, 1_700_000_000_000)


def _record(headers: Headers) -> Incoming:
    return Incoming(ORIGIN, b"k", b"v", headers)


def test_retry_headers_give_the_original_coordinates_and_attempt() -> None:
    headers = [(f"retry.{k}", v) for k, v in {"topic": b"t.work.in", "partition": b"1", "offset": b"40", "attempt": b"2"}.items()]
    assert Delivery.of(_record(headers)) == Delivery("t.work.in", 1, 40, 2, None)


@pytest.mark.parametrize(
    "headers",
    [
        [("retry.topic", b"t.work.in"), ("retry.partition", b"zero"), ("retry.offset", b"1"), ("retry.attempt", b"0")],
        [("retry.topic", b"t.work.in"), ("retry.attempt", b"1")],
        [("retry.topic", b"t.work.in"), ("retry.partition", b"0"), ("retry.offset", b"1"), ("retry.attempt", b"-1")],
        [("retry.topic", None), ("retry.partition", b"\xff"), ("retry.offset", b"1"), ("retry.attempt", b"0")],
    ],
)
def test_malformed_retry_headers_count_as_a_first_delivery(headers: Headers) -> None:
    assert Delivery.of(_record(headers)) == Delivery.first(_record(headers)) == Delivery(ORIGIN.topic, 0, 7, 0, None)


def test_header_values_that_are_missing_or_not_utf8_still_read() -> None:
    assert fields([("retry.a", None), ("retry.b", b"\xff"), ("other", b"x")], RETRY) == {"a": "", "b": "\ufffd"}
