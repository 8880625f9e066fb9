"""Segment's limits and answers kept by the emitter's own logic: request sizes, a refused batch split to
the event at fault, 429s held per workspace, the statuses table, the body writeKey, ids as text."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge_dev.outage import START, Bucket, Clock, DelayQueue, StandIn
from segment_bridge.destinations import Destination
from segment_bridge.outbound.delivery import Sending, deliver, deliver_retries, stream_changes
from segment_bridge.outbound.egress import Answer
from segment_bridge.outbound.pacing import Pacer
from segment_bridge.outbound.track import (
    MAX_REQUEST_BYTES,
    MAX_REQUEST_EVENTS,
    outbound_message_id,
    track_call,
    verdict,
)
from segment_bridge.store.parked import parked_name

OUTBOX = "OutboxTable"
ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{OUTBOX}/stream/2026-01-01T00:00:00"
_serializer = TypeSerializer()


def record(n: int, workspace_id: str, **fields: Any) -> dict[str, Any]:
    keys = {"pk": f"WS#{workspace_id}", "sk": f"EVT#{n:06d}"}
    item = keys | {"event": "Flow Completed", "userId": f"user-{n}"} | fields
    return {
        "eventID": str(n),
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "eventSourceARN": ARN,
        "dynamodb": {
            "Keys": {name: _serializer.serialize(value) for name, value in keys.items()},
            "NewImage": {name: _serializer.serialize(value) for name, value in item.items()},
            "SequenceNumber": f"{n:021d}",
            "ApproximateCreationDateTime": START,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def message_id(n: int, workspace_id: str) -> str:
    return outbound_message_id(OUTBOX, {"pk": f"WS#{workspace_id}", "sk": f"EVT#{n:06d}"})


class World:
    """The stand-in Segment, the bucket and the retry queue on one simulated clock."""

    def __init__(self, write_key: str = "wk") -> None:
        self.clock = Clock()
        self.segment = StandIn(self.clock, Answer)
        self.bucket = Bucket(parked_name)
        self.retries = DelayQueue(self.clock)
        self.pacer = Pacer(50, 1000, self.clock)
        self.write_key = write_key

    def sending(self, seconds: float = 55.0) -> Sending:
        return Sending(
            destination=lambda ws: Destination("https://api.segment.io/v1/batch", f"{self.write_key}-{ws}"),
            sender=self.segment,
            parking=self.bucket,
            deadline=self.clock.now + seconds,
            clock=self.clock,
            sleep=self.clock.sleep,
            retries=self.retries,
            pacer=self.pacer,
        )

    def deliver(self, records: list[dict[str, Any]], seconds: float = 55.0) -> Any:
        report = deliver(
            stream_changes({"Records": records}, self.clock),
            outbox_table=OUTBOX,
            own_tables=frozenset(),
            sending=self.sending(seconds),
        )
        self.clock.settle()
        return report


# --- never over Segment's limits ------------------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    small=st.integers(0, 2_700),
    small_bytes=st.integers(0, 150),
    large=st.lists(st.integers(0, 400_000), max_size=40),
    key_length=st.integers(1, 300),
)
def test_no_request_is_ever_over_475000_bytes_or_2500_events(
    small: int, small_bytes: int, large: list[int], key_length: int
) -> None:
    # Given outbox items of any size up to DynamoDB's 400 KB, many tiny ones and some of every size
    world = World("k" * key_length)
    records = [record(n, "ws", properties={"b": "x" * small_bytes}) for n in range(small)]
    records += [record(small + n, "ws", properties={"b": "y" * size}) for n, size in enumerate(large)]

    report = world.deliver(records, seconds=600.0)

    # Then every request the emitter sends is within Segment's limits (the whole body, writeKey included)
    assert all(
        size <= MAX_REQUEST_BYTES and events <= MAX_REQUEST_EVENTS
        for _, size, events, _ in world.segment.requests
    )
    # and every item is sent or (over 32 KB) parked, none lost
    assert report.sent + report.parked == len(records)
    assert report.failed == []
    assert report.deferred == 0


def test_each_request_carries_the_write_key_in_its_body_as_well_as_basic_auth() -> None:
    seen: list[tuple[str, str]] = []

    class Sender:
        def send(self, url: str, write_key: str, body: bytes, seconds_left: float) -> Answer:
            seen.append((write_key, json.loads(gzip.decompress(body))["writeKey"]))
            return Answer(200, {}, "{}")

    world = World()
    sending = world.sending()
    sending = Sending(**{**sending.__dict__, "sender": Sender()})
    deliver(
        stream_changes({"Records": [record(1, "ws")]}, world.clock),
        outbox_table=OUTBOX,
        own_tables=frozenset(),
        sending=sending,
    )
    assert seen == [("wk-ws", "wk-ws")]


# --- a refused batch split to the event at fault ---------------------------------------------------


def test_a_batch_refused_for_one_poisoned_event_parks_that_event_alone_and_delivers_the_2499_others() -> None:
    # Given 2,500 events of one workspace, and Segment refusing (400) any batch that holds event 1234
    world = World()
    world.segment.poisoned.add(message_id(1234, "ws"))
    records = [record(n, "ws") for n in range(2500)]

    report = world.deliver(records)

    # Then in that same invocation the 2,499 others are delivered and the poisoned one alone is parked,
    # with Segment's answer, after a few halvings (not one request per event)
    assert report.sent == 2499
    assert len(world.segment.deliveries) == 2499
    assert message_id(1234, "ws") not in world.segment.deliveries
    (parked,) = world.bucket.objects.values()
    assert parked["record"]["messageId"] == message_id(1234, "ws")
    assert "400" in parked["reason"]
    assert len(world.segment.requests) <= 2 * 12 + 2
    assert report.failed == []
    assert report.deferred == 0


def test_an_event_segment_refuses_alone_is_parked_with_its_answer_and_its_neighbours_sent() -> None:
    world = World()
    world.segment.poisoned |= {message_id(3, "ws"), message_id(7, "ws")}
    report = world.deliver([record(n, "ws") for n in range(10)])
    assert report.sent == 8
    assert report.parked == 2
    assert sorted(o["record"]["messageId"] for o in world.bucket.objects.values()) == sorted(
        [message_id(3, "ws"), message_id(7, "ws")]
    )


# --- 429s, per workspace ---------------------------------------------------------------------------


def _reset_headers(kind: str, seconds: float) -> dict[str, str]:
    at = START + seconds
    return {
        "retry-after": {"retry-after": str(int(seconds))},
        "retry-after date": {"retry-after": format_datetime(datetime.fromtimestamp(at, UTC), usegmt=True)},
        "x-ratelimit-reset epoch": {"x-ratelimit-reset": str(int(at))},
        "x-ratelimit-reset ms": {"x-ratelimit-reset": str(int(at * 1000))},
        "x-ratelimit-reset date": {
            "x-ratelimit-reset": format_datetime(datetime.fromtimestamp(at, UTC), usegmt=True)
        },
    }[kind]


@pytest.mark.parametrize(
    "kind",
    [
        "retry-after",
        "retry-after date",
        "x-ratelimit-reset epoch",
        "x-ratelimit-reset ms",
        "x-ratelimit-reset date",
    ],
)
def test_a_429_holds_that_workspace_until_the_header_says_and_the_others_keep_sending(kind: str) -> None:
    # Given workspace A answered 429 for two minutes with a header saying when to come back
    world = World()
    world.segment.down["wk-ws_a"] = (START, START + 120, 429, _reset_headers(kind, 120))

    # When a batch with both workspaces' events is sent, then another 30 s later
    first = world.deliver([record(1, "ws_a"), record(2, "ws_b")])
    world.clock.sleep(30)
    world.clock.settle()
    second = world.deliver([record(3, "ws_a"), record(4, "ws_b")])

    # Then B is sent each time; A is asked once, then held: no request to A until the reset
    assert first.sent == second.sent == 1
    assert set(world.segment.deliveries) == {message_id(2, "ws_b"), message_id(4, "ws_b")}
    asked_a = [r for r in world.segment.requests if r[0] == "wk-ws_a"]
    assert len(asked_a) == 1
    assert asked_a[0][3] == 429
    # and A's events wait on the retry queue until the reset, then go
    assert world.retries.next_due() is not None
    assert world.retries.next_due() >= START + 120
    while (due := world.retries.next_due()) is not None:
        world.clock.base = max(world.clock.base, due)
        deliver_retries(world.retries.take(10), world.sending())
        world.clock.settle()
    assert {message_id(1, "ws_a"), message_id(3, "ws_a")} <= set(world.segment.deliveries)
    assert all(count == 1 for count in world.segment.deliveries.values())


def test_a_workspace_is_paced_under_its_requests_and_events_per_second() -> None:
    world = World()
    world.pacer = Pacer(requests_per_second=2, events_per_second=100, clock=world.clock)
    records = [record(n, "ws", properties={"b": "x" * 30_000}) for n in range(150)]  # ~15 per request
    report = world.deliver(records, seconds=600.0)
    took = world.clock.base - START
    assert report.sent == 150
    # 150 events at 100/s (1 s of burst) and ~10 requests at 2/s (1 s of burst): at least ~4.5 s
    assert took >= 150 / 100 - 1
    assert len(world.segment.requests) / max(took, 1e-9) <= 2 + 1


# --- what each answer means -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (301, "permanent"),
        (400, "permanent"),
        (401, "permanent"),
        (403, "permanent"),
        (404, "permanent"),
        (408, "retry"),
        (410, "retry"),
        (413, "permanent"),
        (422, "permanent"),
        (429, "retry"),
        (460, "retry"),
        (500, "retry"),
        (501, "permanent"),
        (502, "retry"),
        (503, "retry"),
        (504, "retry"),
        (505, "permanent"),
        (511, "permanent"),
        (599, "retry"),
    ],
)
def test_answers_are_retried_as_segments_python_client_retries_them(status: int, expected: str) -> None:
    assert verdict(status) == expected


def test_numbers_in_an_outbox_user_id_or_anonymous_id_are_sent_as_text() -> None:
    outbound = track_call(
        {"pk": "WS#ws", "sk": "EVT#1", "event": "E", "userId": Decimal(42), "anonymousId": Decimal("7.5")},
        table=OUTBOX,
        keys={"pk": "WS#ws", "sk": "EVT#1"},
        record_id="1",
        created_at=START,
    )
    assert (outbound.payload["userId"], outbound.payload["anonymousId"]) == ("42", "7.5")


def test_the_integration_name_events_carry_is_the_deployments() -> None:
    outbound = track_call(
        {"pk": "WS#ws", "sk": "EVT#1", "event": "E", "userId": "u"},
        table=OUTBOX,
        keys={"pk": "WS#ws", "sk": "EVT#1"},
        record_id="1",
        created_at=START,
        integration="acme-onboarding",
    )
    assert outbound.payload["context"]["integration"]["name"] == "acme-onboarding"
