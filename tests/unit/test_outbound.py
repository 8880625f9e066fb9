from datetime import UTC, datetime

import pytest

from segment_bridge.outbound import (
    MAX_REQUEST_BYTES,
    Outbound,
    Unsendable,
    endpoint_url,
    outbound_message_id,
    request_body,
    requests_for,
    retry_after_seconds,
    track_call,
    verdict,
)

ITEM = {"pk": "WS#ws1", "sk": "EVT#1", "event": "Flow Completed", "userId": "u1", "properties": {"n": 1}}


def call(item=ITEM, sk="EVT#1"):
    return track_call(item, table="Outbox", keys={"pk": "WS#ws1", "sk": sk}, record_id=sk, created_at=0.0)


def test_message_ids_are_deterministic_per_item_and_apart_from_inbound_ones():
    assert call().payload["messageId"] == call().payload["messageId"]
    assert call(sk="EVT#2").payload["messageId"] != call().payload["messageId"]
    assert outbound_message_id("Outbox", {"pk": "a"}) != outbound_message_id("Other", {"pk": "a"})
    assert call().payload["messageId"].startswith("sbo-")
    assert len(call().payload["messageId"]) <= 100


def test_timestamp_defaults_to_when_the_item_was_written():
    assert call().payload["timestamp"] == "1970-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({**ITEM, "userId": None}, "userId or anonymousId"),
        ({**ITEM, "pk": "nope"}, "pk"),
        ({k: v for k, v in ITEM.items() if k != "event"}, "event"),
        ({**ITEM, "properties": {"blob": "x" * 33_000}}, "32768"),
    ],
)
def test_unsendable_items_say_why(item, reason):
    with pytest.raises(Unsendable) as caught:
        call(item)
    assert reason in str(caught.value)


def test_requests_hold_at_most_2500_events_and_500_kb():
    tiny = [Outbound(str(n), "ws1", {}, b"{}", 0.0) for n in range(2600)]
    assert [len(r) for r in requests_for(tiny)] == [2500, 100]
    small = [call(sk=f"EVT#{n}") for n in range(2600)]
    packed_small = requests_for(small)  # ~250-byte events: the 500 KB limit binds before the count
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert len(packed_small) == 2
    assert len(request_body(packed_small[0] + packed_small[1][:1], now)) > MAX_REQUEST_BYTES
    big = [call({**ITEM, "properties": {"blob": "y" * 30_000}}, sk=f"EVT#{n}") for n in range(40)]
    packed = requests_for(big)
    assert len(packed) == 3
    assert all(len(request_body(r, now)) <= MAX_REQUEST_BYTES for r in packed)
    assert sum(len(r) for r in packed) == 40


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (501, "permanent"),
        (400, "permanent"),
        (401, "permanent"),
        (413, "permanent"),
    ],
)
def test_answers_follow_segments_retry_rules(status, expected):
    assert verdict(status) == expected


def test_retry_after_as_seconds_or_http_date():
    now = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("3", now) == 3.0
    assert retry_after_seconds("Thu, 01 Jan 2026 00:00:10 GMT", now) == 10.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_endpoints():
    assert endpoint_url("us") == "https://api.segment.io/v1/batch"
    assert endpoint_url("eu") == "https://events.eu1.segmentapis.com/v1/batch"
    assert endpoint_url("http://127.0.0.1:3001") == "http://127.0.0.1:3001/v1/batch"
    with pytest.raises(ValueError, match="us, eu"):
        endpoint_url("asia")


def test_a_change_rule_fires_on_its_condition_and_builds_an_outbox_item():
    from segment_bridge.outbound import ChangeRule

    rule = ChangeRule(
        name="done",
        table="Flows",
        when="new.status == 'DONE' && old.status != 'DONE'",
        event="Flow Completed",
        properties={"flowId": "new.id"},
    )
    changed = {
        "eventName": "MODIFY",
        "old": {"status": "OPEN"},
        "new": {"status": "DONE", "id": "f1", "workspace_id": "ws1", "userId": "u1"},
    }
    assert rule.fires(changed)
    assert not rule.fires({**changed, "old": {"status": "DONE"}})
    item = rule.outbox_item(changed, "seq-1")
    assert item == {
        "pk": "WS#ws1",
        "sk": "RULE#done#seq-1",
        "event": "Flow Completed",
        "properties": {"flowId": "f1"},
        "userId": "u1",
    }


def test_an_invalid_change_rule_is_refused():
    from pydantic import ValidationError

    from segment_bridge.outbound import ChangeRule

    with pytest.raises(ValidationError, match="when"):
        ChangeRule(name="x", table="T", when="new.status ==", event="E")
