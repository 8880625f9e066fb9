import base64
import gzip
import json
import zlib
from datetime import UTC, datetime

import pytest

from segment_bridge.envelope import unpack
from segment_bridge.errors import (
    InvalidPayload,
    PayloadTooLarge,
    UnreadableBody,
    UnsupportedEncoding,
)
from segment_bridge.ingest.intake import (
    Limits,
    Outcome,
    decode_body,
    derived_message_id,
    judge,
    parse_payload,
)

LIMITS = Limits()
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


def judged(body, call_type=None, limits=LIMITS):
    outcome = Outcome(workspace_id="ws1")
    payload = parse_payload(json.dumps(body).encode(), call_type)
    accepted, kept = judge(payload, "ws1", RECEIVED, call_type, limits, outcome)
    return [json.loads(chunk) for chunk in accepted], kept, outcome


# --- decoding -----------------------------------------------------------------------------------


def test_plain_base64_and_gzip_bodies_decode_to_the_same_bytes():
    raw = b'{"type":"track"}'
    assert decode_body(raw.decode(), False, None, LIMITS) == raw
    assert decode_body(base64.b64encode(raw).decode(), True, None, LIMITS) == raw
    gz = base64.b64encode(gzip.compress(raw)).decode()
    assert decode_body(gz, True, "gzip", LIMITS) == raw
    assert decode_body(gz, True, None, LIMITS) == raw  # gzip magic without the header
    deflated = base64.b64encode(zlib.compress(raw)).decode()
    assert decode_body(deflated, True, "deflate", LIMITS) == raw


@pytest.mark.parametrize(
    ("body", "is_b64", "encoding", "error"),
    [
        (None, False, None, UnreadableBody),
        ("", False, None, UnreadableBody),
        ("%%%", True, None, UnreadableBody),
        (base64.b64encode(b"not gzip").decode(), True, "gzip", UnreadableBody),
        (base64.b64encode(gzip.compress(b"[1,2,3]")[:-6]).decode(), True, "gzip", UnreadableBody),
        ("{}", False, "br", UnsupportedEncoding),
    ],
)
def test_unreadable_bodies_are_refused(body, is_b64, encoding, error):
    with pytest.raises(error):
        decode_body(body, is_b64, encoding, LIMITS)


def test_gzip_bombs_stop_at_the_body_limit():
    bomb = base64.b64encode(gzip.compress(b" " * (LIMITS.max_body_bytes + 10))).decode()
    with pytest.raises(PayloadTooLarge):
        decode_body(bomb, True, "gzip", LIMITS)


def test_plain_body_over_the_limit_is_too_large():
    with pytest.raises(PayloadTooLarge):
        decode_body("x" * 2048, False, None, Limits(max_body_bytes=1024))


# --- shapes -------------------------------------------------------------------------------------


def test_the_three_shapes():
    single = parse_payload(b'{"type":"track","event":"a","userId":"u"}', None)
    array = parse_payload(b'[{"type":"track"},{"type":"page"}]', None)
    batch = parse_payload(
        b'{"batch":[{"type":"track"}],"writeKey":"k","sentAt":"2026-01-01T00:00:00Z"}', None
    )
    assert (single.shape, len(single.events)) == ("single", 1)
    assert (array.shape, len(array.events)) == ("array", 2)
    assert (batch.shape, batch.write_key, batch.sent_at) == ("batch", "k", RECEIVED)


@pytest.mark.parametrize(
    ("raw", "call_type", "error", "text"),
    [
        (b'{"type":', None, UnreadableBody, "not valid JSON"),
        (b"\xff\xfe", None, UnreadableBody, "UTF-8"),
        (b"42", None, InvalidPayload, "JSON object"),
        (b"[]", None, InvalidPayload, "no events"),
        (b'{"batch":[]}', None, InvalidPayload, "no events"),
        (b'{"batch":{"type":"track"}}', None, InvalidPayload, "array"),
        (b'[{"event":"a"}]', "track", InvalidPayload, "/v1/batch"),
    ],
)
def test_unusable_payloads(raw, call_type, error, text):
    with pytest.raises(error) as caught:
        parse_payload(raw, call_type)
    assert text in caught.value.message


def test_signed_bytes_of_an_array_are_the_first_elements_raw_bytes():
    first = '{"b":1, "a":"é",  "nested":{"x":[1,2]}}'
    text = f'[ \n {first} ,{{"type":"page"}}]'
    payload = parse_payload(text.encode(), None)
    assert payload.signed_bytes() == first.encode()


def test_signed_bytes_of_one_event_are_the_whole_body():
    text = '{"type":"track", "event":"x"}'
    assert parse_payload(text.encode(), None).signed_bytes() == text.encode()


# --- judging ------------------------------------------------------------------------------------


def test_valid_events_are_accepted_and_invalid_ones_kept_with_reasons():
    accepted, kept, outcome = judged(
        [
            {"type": "track", "userId": "u", "event": "A", "messageId": "m1"},
            {"type": "track", "userId": "u", "messageId": "m2"},
            7,
            {"type": "identify", "anonymousId": "a", "messageId": "m4"},
        ]
    )
    assert [event["messageId"] for event in accepted] == ["m1", "m4"]
    assert [(r.index, r.message_id) for r in outcome.rejected] == [(1, "m2"), (2, None)]
    assert "event" in outcome.rejected[0].reason
    assert [record["event"] for record in kept] == [{"type": "track", "userId": "u", "messageId": "m2"}, 7]
    assert all(record["workspaceId"] == "ws1" for record in kept)


def test_batch_context_and_integrations_merge_into_each_event_without_overriding():
    accepted, _, _ = judged(
        {
            "batch": [
                {"type": "track", "userId": "u", "event": "A", "context": {"ip": "own"}},
                {"type": "track", "userId": "u", "event": "B"},
            ],
            "context": {"ip": "shared", "library": {"name": "lib"}},
            "integrations": {"All": False},
        }
    )
    assert accepted[0]["context"] == {"ip": "own", "library": {"name": "lib"}}
    assert accepted[1]["context"] == {"ip": "shared", "library": {"name": "lib"}}
    assert accepted[1]["integrations"] == {"All": False}


def test_write_keys_never_travel_with_events():
    accepted, _, _ = judged({"type": "track", "userId": "u", "event": "A", "writeKey": "secret"})
    assert "writeKey" not in accepted[0]


def test_the_path_decides_the_type_of_a_single_call():
    accepted, _, _ = judged({"type": "page", "userId": "u", "event": "A"}, call_type="track")
    assert accepted[0]["type"] == "track"


def test_echoes_of_our_own_events_are_counted_not_ingested():
    ours = {
        "type": "track",
        "userId": "u",
        "event": "A",
        "context": {"integration": {"name": "segment-bridge"}},
    }
    theirs = {"type": "track", "userId": "u", "event": "B", "context": {"integration": {"name": "other"}}}
    accepted, kept, outcome = judged([ours, theirs])
    assert [event["event"] for event in accepted] == ["B"]
    assert (outcome.echoes, kept) == (1, [])


def test_clock_skew_is_corrected_for_events_sent_straight_by_an_sdk():
    # The device clock runs 10 minutes fast: it stamped the event at 00:09:00 and sent it at 00:10:00.
    accepted, _, _ = judged(
        {
            "batch": [{"type": "track", "userId": "u", "event": "A", "timestamp": "2026-01-01T00:09:00Z"}],
            "sentAt": "2026-01-01T00:10:00Z",
        }
    )
    event = accepted[0]
    assert event["receivedAt"] == "2026-01-01T00:00:00.000Z"
    assert event["timestamp"] == "2025-12-31T23:59:00.000Z"
    assert event["originalTimestamp"] == "2026-01-01T00:09:00.000Z"
    assert event["sentAt"] == "2026-01-01T00:10:00.000Z"


def test_timestamps_without_sent_at_are_kept_and_missing_ones_default_to_receipt():
    accepted, _, _ = judged(
        [
            {"type": "track", "userId": "u", "event": "A", "timestamp": "2025-06-01T12:00:00"},
            {"type": "track", "userId": "u", "event": "B"},
        ]
    )
    assert accepted[0]["timestamp"] == "2025-06-01T12:00:00.000Z"
    assert accepted[1]["timestamp"] == "2026-01-01T00:00:00.000Z"


def test_events_relayed_by_segment_keep_segments_timestamps():
    relayed = {
        "type": "track",
        "userId": "u",
        "event": "A",
        "timestamp": "2025-12-31T10:00:00.000Z",
        "sentAt": "2025-12-31T10:05:00.000Z",
        "receivedAt": "2025-12-31T10:05:01.000Z",
    }
    accepted, _, _ = judged([relayed])
    assert accepted[0]["timestamp"] == relayed["timestamp"]
    assert accepted[0]["receivedAt"] == relayed["receivedAt"]


def test_missing_message_ids_are_derived_deterministically():
    event = {"type": "track", "userId": "u", "event": "A", "timestamp": "2026-01-01T00:00:00Z"}
    first, _, _ = judged([dict(event)])
    again, _, _ = judged([dict(event)])
    other, _, _ = judged([{**event, "event": "B"}])
    assert first[0]["messageId"] == again[0]["messageId"]
    assert first[0]["messageId"] != other[0]["messageId"]
    assert first[0]["messageId"].startswith("sb-")
    assert len(first[0]["messageId"]) <= 100
    assert derived_message_id("ws1", event) != derived_message_id("ws2", event)


def test_numeric_ids_are_stored_as_strings():
    accepted, _, _ = judged({"type": "group", "userId": 12, "groupId": 34})
    assert (accepted[0]["userId"], accepted[0]["groupId"]) == ("12", "34")


def test_an_event_over_the_size_limit_is_rejected_and_kept():
    big = {
        "type": "track",
        "userId": "u",
        "event": "A",
        "messageId": "big",
        "properties": {"blob": "x" * 2000},
    }
    accepted, kept, outcome = judged(
        [big, {"type": "track", "userId": "u", "event": "B"}], limits=Limits(max_event_bytes=1024)
    )
    assert len(accepted) == 1
    assert outcome.rejected[0].message_id == "big"
    assert "limit is 1024" in outcome.rejected[0].reason
    assert kept[0]["event"]["properties"]["blob"] == "x" * 2000


# --- packing ------------------------------------------------------------------------------------


def test_packing_respects_the_message_size_and_keeps_every_event_in_order():
    from segment_bridge.envelope import pack

    chunks = [
        json.dumps({"n": n, "noise": base64.b64encode(bytes([n % 256]) * 600).decode() + str(n)}).encode()
        for n in range(500)
    ]
    bodies = pack(chunks, workspace_id="ws1", request_id="r", received_at="t", max_bytes=16 * 1024)
    assert len(bodies) > 1
    assert all(len(body) <= 16 * 1024 for body in bodies)
    unpacked = [event for body in bodies for event in unpack(body)[1]]
    assert [event["n"] for event in unpacked] == list(range(500))
    envelope, _ = unpack(bodies[0])
    assert (envelope.workspaceId, envelope.requestId) == ("ws1", "r")
