"""Accepted as the sender meant it (issues 25 and 21; docs/privacy-requests.md): a field we do not need
never refuses an event, a delete needs only its subject, Segment's three delete payloads are read, Go's
time text is a time, a BOM and lists of content codings are read as their RFCs say, and numeric ids are
one user where Segment's libraries make them one."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segment_bridge.errors import UnsupportedEncoding
from segment_bridge.ingest.intake import Limits, Outcome, decode_body, judge, parse_payload
from segment_bridge.ingest.spec import number_as_id, validate_event
from segment_bridge.limits import storable_number
from segment_bridge.timestamps import parse
from tests.conftest import ROOT

LIMITS = Limits()
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)
SCALE = settings.default.max_examples / 100
"""CI runs hypothesis' default budget (300 examples here); `make fuzz` (HYPOTHESIS_PROFILE=long) 20x it."""
DELETES = json.loads((ROOT / "tests" / "data" / "segment_deletes.json").read_text(encoding="utf-8"))
SHAPES = ("webhook", "partner", "empty_arrays")


def judged_raw(raw: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Outcome]:
    outcome = Outcome(workspace_id="ws1")
    accepted, kept = judge(parse_payload(raw, None), "ws1", RECEIVED, None, LIMITS, outcome)
    return [json.loads(chunk) for chunk in accepted], kept, outcome


def judged(body: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Outcome]:
    return judged_raw(json.dumps(body).encode())


# --- Segment's delete payloads -------------------------------------------------------------------------


def test_gos_time_text_is_read_as_the_instant_it_names():
    moment = parse("2020-05-09 23:54:49.209808489 +0000 UTC m=+70366.298768264")
    assert moment == datetime(2020, 5, 9, 23, 54, 49, 209808, tzinfo=UTC)
    assert parse("2020-05-10 01:54:49 +0200 CEST") == datetime(2020, 5, 9, 23, 54, 49, tzinfo=UTC)
    assert parse("2020-05-10 02:54:49.5 +0300 +03") == datetime(2020, 5, 9, 23, 54, 49, 500000, tzinfo=UTC)


@pytest.mark.parametrize("shape", SHAPES)
def test_each_of_segments_documented_delete_payloads_is_accepted_alone(shape):
    accepted, kept, outcome = judged(DELETES[shape])
    assert (outcome.accepted, kept) == (1, [])
    (event,) = accepted
    assert event["userId"] == DELETES[shape]["userId"]
    assert event["messageId"]


def test_the_partner_delete_keeps_segments_timestamp_and_its_go_text_as_sent():
    (event,), _, _ = judged(DELETES["partner"])
    assert event["timestamp"] == "2020-05-09T23:54:49.209Z"
    assert event["originalTimestamp"] == DELETES["partner"]["originalTimestamp"]  # raw/ keeps it as sent
    assert (event["context"], event["integrations"]) == (None, None)
    assert event["projectId"] == "P0OJ3CTID1"


def test_the_empty_array_delete_keeps_its_arrays_as_sent():
    (event,), _, _ = judged(DELETES["empty_arrays"])
    assert (event["context"], event["integrations"]) == ([], [])


def test_a_delete_without_a_message_id_gets_the_same_one_on_every_delivery_and_retry():
    """The id hashes the workspace and the delete as sent, without sentAt (set again on every attempt)."""
    first, _, _ = judged(DELETES["webhook"])
    again, _, _ = judged(DELETES["webhook"])
    retried, _, _ = judged({**DELETES["webhook"], "sentAt": "2025-12-31T10:00:05.000Z"})
    other, _, _ = judged({**DELETES["webhook"], "timestamp": "2025-12-31T10:00:01.000Z"})
    assert first[0]["messageId"] == again[0]["messageId"] == retried[0]["messageId"]
    assert first[0]["messageId"] != other[0]["messageId"]


def test_a_delete_with_unreadable_times_and_message_id_falls_back_and_is_accepted():
    (event,), kept, _ = judged(
        {
            "type": "delete",
            "userId": "u",
            "timestamp": "yesterday",
            "receivedAt": {"at": 1},
            "messageId": ["x"],
            "originalTimestamp": "2025-12-31T23:00:00Z",
        }
    )
    assert kept == []
    assert event["receivedAt"] == "2026-01-01T00:00:00.000Z"  # the delivery's
    assert event["timestamp"] == "2025-12-31T23:00:00.000Z"  # its readable time of its own
    assert event["messageId"].startswith("sb-")


def test_a_delete_claiming_a_receipt_days_ahead_counts_at_ours_not_there():
    (event,), kept, _ = judged(
        {
            "type": "delete",
            "userId": "u",
            "receivedAt": "2030-01-01T00:00:00Z",
            "timestamp": "2030-01-01T00:00:00Z",
        }
    )
    assert kept == []
    assert event["receivedAt"] == "2026-01-01T00:00:00.000Z"


def test_a_delete_still_needs_its_subject():
    _, kept, outcome = judged({"type": "delete", "context": None, "userId": None, "anonymousId": []})
    assert outcome.accepted == 0
    assert kept[0]["reason"] == "userId or anonymousId is required"


# --- any value in a field we do not need -----------------------------------------------------------------

LENIENT = ("originalTimestamp", "sentAt", "context", "integrations", "channel", "projectId", "version")
"""The common fields an event is applied without, and extra names below: any JSON value."""
OPTIONAL = {
    "identify": ("messageId", "timestamp", "receivedAt", "traits"),
    "track": ("messageId", "timestamp", "receivedAt", "properties"),
    "page": ("messageId", "timestamp", "receivedAt", "properties", "name", "category"),
    "screen": ("messageId", "timestamp", "receivedAt", "properties", "name", "category"),
    "group": ("messageId", "timestamp", "receivedAt", "traits"),
    "alias": ("messageId", "timestamp", "receivedAt"),
    "delete": (),
}
"""The optional fields that carry meaning: `null` or `[]` there count as absent."""
DELETE_TIMES = ("messageId", "timestamp", "receivedAt")
"""What a delete falls back for: any JSON value."""
BASE = {
    "identify": {"type": "identify"},
    "track": {"type": "track", "event": "Clicked"},
    "page": {"type": "page"},
    "screen": {"type": "screen"},
    "group": {"type": "group", "groupId": "org-1"},
    "alias": {"type": "alias", "previousId": "anon-1"},
    "delete": {"type": "delete"},
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**37), max_value=10**37)
    | st.floats(allow_nan=False, allow_infinity=False).filter(storable_number)
    | st.text(max_size=30)
    | st.sampled_from(["2020-05-09 23:54:49.209808489 +0000 UTC m=+70366.298768264", "2026-01-01T00:00:00Z"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
"""Any JSON value DynamoDB can hold (numbers within its range: an event must fit it, README)."""
extra_names = st.text(min_size=1, max_size=12).filter(
    lambda name: (
        name not in {*LENIENT, *DELETE_TIMES, "type", "userId", "anonymousId", "writeKey", "batch"}
        and all(name not in fields for fields in OPTIONAL.values())
        and name not in {"event", "groupId", "previousId"}
    )
)


@st.composite
def events_with_any_unneeded_field(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(BASE)))
    event: dict[str, Any] = dict(BASE[kind])
    subject, other = draw(st.sampled_from([("userId", "anonymousId"), ("anonymousId", "userId")]))
    if kind == "alias":
        subject, other = "userId", "anonymousId"
    event[subject] = draw(st.text(min_size=1, max_size=20) | st.integers(0, 10**12))
    if draw(st.booleans()):
        event[other] = draw(st.sampled_from([None, []]))
    for name in LENIENT + (DELETE_TIMES if kind == "delete" else ()):
        if draw(st.booleans()):
            event[name] = draw(json_values)
    for name in OPTIONAL[kind]:
        if draw(st.booleans()):
            event[name] = draw(st.sampled_from([None, []]))
    event.update(draw(st.dictionaries(extra_names, json_values, max_size=3)))
    return event


@settings(max_examples=max(1, round(300 * SCALE)), deadline=None)
@given(event=events_with_any_unneeded_field(), batched=st.booleans())
def test_no_event_is_refused_for_a_field_it_is_applied_without(event, batched):
    """Every optional field drawn with values of any JSON type (a delete's times and messageId too):
    never refused for them, and the fields we do not need reach the queue (and raw/) as sent."""
    as_sent = json.loads(json.dumps(event))
    accepted, kept, outcome = judged({"batch": [event]} if batched else event)
    assert kept == [], kept[0]["reason"] if kept else None
    assert outcome.accepted + outcome.echoes == 1
    for queued in accepted:
        validate_event(queued)  # what the processor is sent reads again
        parse(queued["timestamp"])
        for name in LENIENT:
            if name in as_sent and name not in ("originalTimestamp", "sentAt"):
                assert queued[name] == as_sent[name]
            elif name in as_sent and as_sent[name] is not None:
                assert queued[name] == as_sent[name]  # a time we add only where none was sent


def test_null_and_empty_arrays_in_meaningful_optional_fields_count_as_absent():
    accepted, kept, _ = judged(
        [
            {"type": "identify", "userId": "u", "traits": [], "messageId": None, "timestamp": []},
            {"type": "page", "anonymousId": "a", "name": None, "properties": [], "userId": []},
        ]
    )
    assert kept == []
    assert accepted[0]["timestamp"] == "2026-01-01T00:00:00.000Z"
    assert "userId" not in accepted[1]  # `[]` is no id


def test_values_that_carry_meaning_are_still_refused_with_a_reason():
    _, kept, _ = judged(
        [
            {"type": "identify", "userId": "u", "traits": ["plan", "pro"]},
            {"type": "track", "userId": "u", "event": "A", "timestamp": "yesterday"},
            {"type": "track", "userId": {"id": 1}, "event": "A"},
        ]
    )
    assert [record["reason"].split(":")[0] for record in kept] == ["traits", "timestamp", "userId"]


def test_a_skew_correction_beyond_the_calendar_skips_the_correction():
    """sentAt only corrects a device clock: a correction past year 1 keeps the event's own time."""
    (event,), kept, _ = judged(
        {
            "type": "track",
            "userId": "u",
            "event": "A",
            "timestamp": "0001-01-01T00:00:00Z",
            "sentAt": "9999-12-31T00:00:00Z",
        }
    )
    assert kept == []
    assert event["timestamp"] == "0001-01-01T00:00:00.000Z"


# --- numeric ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "user"),
    [
        ("1", "1"),
        ("1.0", "1"),
        ("1e0", "1"),
        ("-0.0", "0"),
        ("0", "0"),
        ("-0", "0"),
        ("1.5", "1.5"),
        ("-2.5e-7", "-2.5e-7"),
        ("0.000001", "0.000001"),
        ("1e21", "1e+21"),
        ("1e20", "100000000000000000000"),
        ("12345678901234567891", "12345678901234567891"),
        ('"1.0"', "1.0"),
    ],
)
def test_numeric_ids_become_the_string_segments_javascript_libraries_make(sent, user):
    (event,), _, _ = judged_raw(f'{{"type":"identify","userId":{sent}}}'.encode())
    assert event["userId"] == user


def test_one_and_one_point_zero_are_one_user_and_minus_zero_is_user_zero():
    accepted, _, _ = judged_raw(
        b'[{"type":"track","event":"A","userId":1},{"type":"track","event":"A","userId":1.0},'
        b'{"type":"track","event":"A","userId":-0.0},{"type":"group","userId":2,"groupId":3.0}]'
    )
    assert [event["userId"] for event in accepted] == ["1", "1", "0", "2"]
    assert accepted[3]["groupId"] == "3"
    assert number_as_id(True) is True  # a boolean is not an id: refused as before


# --- the body: a BOM, lists of content codings -------------------------------------------------------------


def test_a_body_starting_with_a_utf8_bom_is_read():
    raw = "\ufeff".encode() + b'[{"type":"track","userId":"u","event":"A"}]'
    accepted, kept, _ = judged_raw(raw)
    assert (len(accepted), kept) == (1, [])
    single = parse_payload("\ufeff".encode() + b'{"type":"track","userId":"u","event":"A"}', None)
    assert single.signed_bytes().startswith("\ufeff".encode())  # a signature covers the bytes as sent


RAW = b'{"type":"track","userId":"u","event":"A"}'


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@pytest.mark.parametrize(
    ("header", "body"),
    [
        ("gzip, identity", _gzip(RAW)),
        ("identity, gzip", _gzip(RAW)),
        ("GZIP", _gzip(RAW)),
        ("  Gzip  ,  ", _gzip(RAW)),
        (", x-gzip", _gzip(RAW)),
        ("deflate, gzip", _gzip(zlib.compress(RAW))),  # deflated first, then gzipped: undone in reverse
        ("gzip, gzip", _gzip(_gzip(RAW))),
        ("identity", RAW),
        ("", RAW),
    ],
)
def test_content_encoding_lists_are_undone_in_reverse_order_of_listing(header, body):
    assert decode_body(base64.b64encode(body).decode(), True, header, LIMITS) == RAW


@pytest.mark.parametrize("header", ["br", "gzip, br", "zstd", "gzip;q=1", "gzip, gzip, gzip, gzip, gzip"])
def test_an_unknown_content_coding_is_415(header):
    with pytest.raises(UnsupportedEncoding) as refused:
        decode_body(base64.b64encode(_gzip(RAW)).decode(), True, header, LIMITS)
    assert refused.value.status == 415
    assert "gzip, deflate or identity" in refused.value.body()["message"]
