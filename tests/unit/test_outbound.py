from datetime import UTC, datetime

import pytest

from segment_bridge.destinations import Unsendable, endpoint_url
from segment_bridge.outbound.track import (
    MAX_REQUEST_BYTES,
    Outbound,
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


ACCEPTED = [
    # (endpoint, policy, the /v1/batch URL)
    ("us", "public", "https://api.segment.io/v1/batch"),
    ("eu", "public", "https://events.eu1.segmentapis.com/v1/batch"),
    ("https://proxy.example.com", "public", "https://proxy.example.com/v1/batch"),
    ("https://proxy.example.com/segment/", "public", "https://proxy.example.com/segment/v1/batch"),
    ("https://proxy.example.com:8443/v1/batch", "public", "https://proxy.example.com:8443/v1/batch"),
    ("https://8.8.8.8", "public", "https://8.8.8.8/v1/batch"),
    ("https://10.0.0.7", "private", "https://10.0.0.7/v1/batch"),
    ("https://192.168.1.2:8443", "private", "https://192.168.1.2:8443/v1/batch"),
    ("https://169.254.10.10", "private", "https://169.254.10.10/v1/batch"),
    ("https://[fd12::1]", "private", "https://[fd12::1]/v1/batch"),
    ("http://127.0.0.1:3001", "local", "http://127.0.0.1:3001/v1/batch"),
    ("http://localhost:3001", "local", "http://localhost:3001/v1/batch"),
    ("http://[::1]:3001", "local", "http://[::1]:3001/v1/batch"),
]

REFUSED = [
    # (endpoint, policy, why)
    ("asia", "public", "us, eu"),
    ("ftp://x.example.com", "local", "us, eu"),
    ("https://", "public", "us, eu"),
    ("http://api.segment.io", "public", "https"),
    ("http://api.segment.io", "local", "https"),  # plain http leaves the machine: never
    ("http://10.0.0.7", "private", "https"),
    ("http://127.0.0.1:3001", "public", "https"),
    ("http://127.0.0.1:3001", "private", "https"),
    ("https://127.0.0.1", "public", "private, loopback or link-local"),
    ("https://localhost", "public", "private, loopback or link-local"),
    ("https://10.1.2.3", "public", "private, loopback or link-local"),
    ("https://172.16.0.1", "public", "private, loopback or link-local"),
    ("https://192.168.0.1", "public", "private, loopback or link-local"),
    ("https://100.64.0.1", "public", "private, loopback or link-local"),
    ("https://169.254.1.1", "public", "private, loopback or link-local"),
    ("https://[fe80::1]", "public", "private, loopback or link-local"),
    ("https://[::ffff:10.0.0.1]", "public", "private, loopback or link-local"),
    ("https://169.254.169.254", "public", "metadata"),
    ("https://169.254.169.254", "private", "metadata"),
    ("http://169.254.169.254", "local", "https"),
    ("https://169.254.170.2", "local", "metadata"),
    ("https://[fd00:ec2::254]", "private", "metadata"),
    ("https://[::ffff:169.254.169.254]", "local", "metadata"),
    ("https://0.0.0.0", "local", "not a destination"),
    ("https://224.0.0.1", "local", "not a destination"),
    ("https://api.segment.io/v1/batch?x=1", "public", "query or a fragment"),
    ("https://api.segment.io#", "public", "query or a fragment"),
    ("https://evil.example.com/#/v1/batch", "public", "query or a fragment"),
    ("https://evil.example.com/?/v1/batch", "public", "query or a fragment"),
    ("https://user:pass@api.segment.io", "public", "credentials"),
    ("https://api.segment.io@169.254.169.254", "public", "credentials"),
    ("https://api.segment.io:0", "public", "port"),
    ("https://api.segment.io:99999", "public", "us, eu"),
]


@pytest.mark.parametrize(("endpoint", "policy", "url"), ACCEPTED)
def test_endpoints_segment_like_under_the_policy_are_accepted(endpoint, policy, url):
    assert endpoint_url(endpoint, policy) == url


@pytest.mark.parametrize(("endpoint", "policy", "why"), REFUSED)
def test_endpoints_that_are_not_segment_like_or_not_allowed_are_refused(endpoint, policy, why):
    from segment_bridge.destinations import EndpointRefused

    with pytest.raises(EndpointRefused, match=why):
        endpoint_url(endpoint, policy)


@pytest.mark.parametrize(
    "timestamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+23:59"]
)
def test_a_timestamp_without_a_utc_equivalent_is_unsendable_not_a_crash(timestamp):
    with pytest.raises(Unsendable, match="out of range"):
        call({**ITEM, "timestamp": timestamp})


def test_a_change_rule_whose_function_meets_a_record_of_another_shape_says_so():
    from segment_bridge.destinations import ChangeRule

    rule = ChangeRule(
        name="long", table="T", when="length(new.items) > `0`", event="E", properties={"n": "abs(new.n)"}
    )
    with pytest.raises(Unsendable, match="change rule long: `when` cannot be evaluated"):
        rule.fires({"eventName": "INSERT", "old": {}, "new": {"items": 5}})
    fired = {"eventName": "INSERT", "old": {}, "new": {"items": [1], "n": "x"}}
    assert rule.fires(fired)
    with pytest.raises(Unsendable, match=r"`properties\.n` cannot be evaluated"):
        rule.outbox_item(fired, "seq-1")


def test_a_change_rule_fires_on_its_condition_and_builds_an_outbox_item():
    from segment_bridge.destinations import ChangeRule

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

    from segment_bridge.destinations import ChangeRule

    with pytest.raises(ValidationError, match="when"):
        ChangeRule(name="x", table="T", when="new.status ==", event="E")
