"""Hostile input (issue #7): whatever reaches the IngestFunction, it answers a documented status with a
JSON body, never 500, and a delivery is stored whole or not at all.

Property-based (hypothesis) on moto with the real `lambda_handler`. Example counts are small so this
file runs in seconds in CI; `make fuzz` (HYPOTHESIS_PROFILE=long) multiplies them by 20.

What every answer must satisfy (`assert_well_behaved`, in conftest.py, applied by the `deliver` fixture):
- the status is one docs/ingest.md's "Answers" documents for a healthy AWS: 200, 400, 401, 413, 415 (503 is
  for AWS faults, none here; 500 is a bug);
- the body is JSON; a refusal is `{"code", "message"}` (and `details` for `invalid_events`);
- a 200 queued exactly `accepted` events, kept exactly the `rejected` ones under S3 rejected/, and
  every queued event is a valid Segment event; a refusal queued nothing and kept nothing (but the
  events of an `invalid_events` answer, which are all kept).
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import struct
import zlib
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge_dev.events import DEMO_API_KEY, http_event
from tests.functional.conftest import Delivery, sample

MB = 1024 * 1024
AUTH = {"authorization": f"Bearer {DEMO_API_KEY}"}
SCALE = settings.default.max_examples / 100
"""1 by default; the `long` profile (tests/conftest.py) raises max_examples, and with it every budget here."""


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=max(1, round(examples * SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- what a delivery stored ------------------------------------------------------------------------


def assert_accounted(delivery: Delivery, sent: list[Any]) -> None:
    """A 200 accounts for every event sent: accepted, rejected or an echo, each exactly once, in order."""
    body = delivery.answer.body
    assert body["accepted"] + len(body["rejected"]) + body["echoes"] == len(sent)
    assert body["echoes"] == 0  # no hostile input here is marked as ours
    rejected = {r["index"] for r in body["rejected"]}
    expected = [e.get("messageId") for i, e in enumerate(sent) if i not in rejected]
    assert len(delivery.queued) == len(expected)
    for queued, message_id in zip(delivery.queued, expected, strict=True):
        if isinstance(message_id, str) and message_id:  # otherwise intake derives one
            assert queued["messageId"] == message_id


# --- bodies on the wire -----------------------------------------------------------------------------

WIRES = ["text", "base64", "gzip", "gzip-unlabelled", "deflate"]


def on_the_wire(data: bytes, wire: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """`data` as API Gateway hands it over: text, base64 (binary), gzip or deflate with or without
    Content-Encoding, or a label that does not match the bytes."""
    headers = dict(AUTH if headers is None else headers)
    if wire == "text":
        return http_event("/v1/segment", data.decode("utf-8", "surrogateescape"), headers=headers)
    if wire in ("gzip", "gzip-unlabelled"):
        data = gzip.compress(data, mtime=0)
    elif wire == "deflate":
        data = zlib.compress(data)
    labels = {"gzip": "gzip", "deflate": "deflate", "mislabelled-gzip": "gzip", "br": "br"}
    if wire in labels:
        headers["content-encoding"] = labels[wire]
    return http_event("/v1/segment", base64.b64encode(data).decode(), headers=headers, base64_encoded=True)


def sample_body(name: str) -> bytes:
    event = sample(name)
    body = event["body"]
    return base64.b64decode(body) if event["isBase64Encoded"] else body.encode()


def webhook_batch() -> list[dict[str, Any]]:
    return json.loads(sample_body("ingest_webhook_batch.json"))


GOOD = {"type": "track", "userId": "user-1", "event": "Still Here", "messageId": "good-1"}
"""Sent next to a hostile event: it must be accepted whatever happens to its neighbour."""


def batch(*events: Any) -> bytes:
    return json.dumps(list(events)).encode()


# --- random bytes, truncated JSON, base64 garbage ---------------------------------------------------

JSONISH = st.lists(
    st.sampled_from(
        [
            b"[",
            b"]",
            b"{",
            b"}",
            b",",
            b":",
            b'"type"',
            b'"track"',
            b'"userId"',
            b'"u"',
            b"1e999",
            b"-0",
            b"null",
            b"NaN",
            b'"\\ud800"',
            b"\xff",
            b"\x00",
            b"\x1f\x8b",
            b" ",
            b"\xef\xbb\xbf",
        ]
    ),
    max_size=40,
).map(b"".join)


@fuzz(100)
@given(data=st.binary(max_size=2048) | JSONISH, wire=st.sampled_from([*WIRES, "mislabelled-gzip", "br"]))
def test_random_bytes_in_any_encoding_get_a_documented_answer(deliver, data, wire):
    delivery = deliver(on_the_wire(data, wire))
    if wire == "br" and data:
        assert (delivery.status, delivery.code) == (415, "unsupported_encoding")


@fuzz(80)
@given(
    name=st.sampled_from(
        [
            "ingest_webhook_batch.json",
            "ingest_webhook_single.json",
            "ingest_sdk_batch_basic.json",
            "ingest_webhook_signed_batch.json",
            "ingest_sdk_batch_gzip_writekey.json",  # the key is in the body: read before authenticating
        ]
    ),
    cut=st.floats(0, 1, exclude_max=True),
    wire=st.sampled_from([*WIRES, "gzip-stream-cut"]),
)
def test_truncated_json_or_gzip_is_400_and_stores_nothing(deliver, name, cut, wire):
    headers = {k: v for k, v in sample(name)["headers"].items() if k != "content-encoding"}
    body = sample_body(name)
    if wire == "gzip-stream-cut":
        stream = gzip.compress(body, mtime=0)
        hostile = http_event(
            "/v1/segment",
            base64.b64encode(stream[: int(len(stream) * cut)]).decode(),
            headers={**headers, "content-encoding": "gzip"},
            base64_encoded=True,
        )
    else:
        hostile = on_the_wire(body[: int(len(body) * cut)], wire, headers=headers)
    delivery = deliver(hostile)
    assert (delivery.status, delivery.code) == (400, "invalid_body")


@fuzz(60)
@given(text=st.text(max_size=300))
@example(text="é")
@example(text="eyJ0eXBlIjoidHJhY2sifQ=")  # base64 with its padding cut
def test_base64_garbage_is_400(deliver, text):
    event = http_event("/v1/segment", text, headers=AUTH, base64_encoded=True)
    assert deliver(event).status == 400


# --- invalid UTF-8 and lone surrogates --------------------------------------------------------------

INVALID_UTF8 = [b"\xff", b"\xfe", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc",
                b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\xe2\x82"]  # fmt: skip


@fuzz(40)
@given(
    invalid=st.sampled_from(INVALID_UTF8),
    at=st.floats(0, 1),
    wire=st.sampled_from(WIRES),
)
def test_invalid_utf8_anywhere_is_400(deliver, invalid, at, wire):
    body = sample_body("ingest_webhook_batch.json")
    position = int(len(body) * at)
    delivery = deliver(on_the_wire(body[:position] + invalid + body[position:], wire))
    assert (delivery.status, delivery.code) == (400, "invalid_body")


@fuzz(20)
@given(surrogate=st.characters(categories=["Cs"]), where=st.sampled_from(["value", "key", "event"]))
def test_a_lone_surrogate_costs_only_its_own_event(deliver, surrogate, where):
    hostile: dict[str, Any] = {"type": "track", "userId": "u", "event": "Bad", "messageId": "bad-1"}
    if where == "value":
        hostile["properties"] = {"name": f"x{surrogate}y"}
    elif where == "key":
        hostile["traits"] = {surrogate: 1}
        hostile["type"] = "identify"
    else:
        hostile["event"] = surrogate
    delivery = deliver(on_the_wire(batch(hostile, GOOD), "text"))  # json.dumps writes "\udXXX" escapes
    assert delivery.status == 200
    assert delivery.answer.body["rejected"][0]["index"] == 0
    assert [e["messageId"] for e in delivery.queued] == ["good-1"]


@fuzz(10)
@given(surrogate=st.characters(categories=["Cs"]))
@example(surrogate=chr(0xD800))  # once a UnicodeEncodeError: 500
@example(surrogate=chr(0xDC80))  # one surrogateescape maps back to a byte (then invalid UTF-8)
def test_a_text_body_holding_a_raw_lone_surrogate_is_400(deliver, surrogate):
    text = json.dumps([GOOD])[:-3] + surrogate + '"}]'  # inside the last string
    delivery = deliver(http_event("/v1/segment", text, headers=AUTH))
    assert (delivery.status, delivery.code) == (400, "invalid_body")


# --- nesting and size -------------------------------------------------------------------------------


def nested(depth: int, kind: str) -> str:
    return ("[" * depth + "1" + "]" * depth) if kind == "array" else ('{"a":' * depth + "1" + "}" * depth)


@fuzz(40)
@given(depth=st.integers(1, 100_000), kind=st.sampled_from(["array", "object"]))
@example(depth=100_000, kind="array")
@example(depth=100_000, kind="object")
def test_a_deeply_nested_body_is_refused_whole(deliver, depth, kind):
    delivery = deliver(on_the_wire(nested(depth, kind).encode(), "text"))
    assert delivery.status == 400


@fuzz(40)
@given(depth=st.integers(1, 100_000), kind=st.sampled_from(["array", "object"]))
@example(depth=100_000, kind="object")
@example(depth=940, kind="object")  # once parsed, then a RecursionError deriving the messageId: 500
@example(depth=941, kind="array")
@example(depth=31, kind="object")
@example(depth=32, kind="object")
def test_a_deeply_nested_event_never_costs_its_neighbours(deliver, depth, kind):
    text = '[{"type":"track","userId":"u","event":"Deep","properties":{"x":' + nested(depth, kind)
    text += "}}," + json.dumps(GOOD) + "]"
    delivery = deliver(on_the_wire(text.encode(), "text"))
    if delivery.status == 200:
        assert delivery.queued[-1]["messageId"] == "good-1"
        deep_accepted = len(delivery.queued) == 2
        assert deep_accepted == (depth + 2 <= 32)  # event, properties, then `depth` levels
    else:
        assert (delivery.status, delivery.code) == (400, "invalid_body")  # too deep to read at all


@fuzz(12)
@given(
    size=st.sampled_from([1_000, 32 * 1024, 63 * 1024, 65 * 1024, MB, 7 * MB, 8 * MB + 1]),
    field=st.sampled_from(["event", "userId", "messageId", "property", "property-name", "trait"]),
)
def test_a_huge_string_is_rejected_alone_or_the_body_is_413(deliver, size, field):
    huge = "z" * size
    hostile: dict[str, Any] = {"type": "track", "userId": "u", "event": "Big", "messageId": "big-1"}
    if field == "property":
        hostile["properties"] = {"blob": huge}
    elif field == "property-name":
        hostile["properties"] = {huge: 1}
    elif field == "trait":
        hostile |= {"type": "identify", "traits": {"bio": huge}}
    else:
        hostile[field] = huge
    delivery = deliver(on_the_wire(batch(hostile, GOOD), "text"))
    if size > 8 * MB:
        assert (delivery.status, delivery.code) == (413, "payload_too_large")
        return
    assert delivery.status == 200
    assert delivery.queued[-1]["messageId"] == "good-1"


# --- wrong types in every Segment field -------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 10**38, 10**40, 10**4000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-300, 1e300, -1e200, 5e-324]),
    st.text(max_size=20),
)
BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "number": st.integers() | st.floats() | st.sampled_from([10**40, 1e300, float("nan"), float("inf")]),
    "string": st.text(max_size=20),
    "array": st.lists(SCALARS, max_size=3),
    "object": st.dictionaries(st.text(max_size=8), SCALARS, max_size=3),
}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field of an event, nested ones included (list items by index)."""
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    )
    found = []
    for key, child in children:
        found.append((*prefix, key))
        found += paths(child, (*prefix, key))
    return found


def replaced(event: Any, path: tuple[Any, ...], value: Any) -> Any:
    event = json.loads(json.dumps(event))
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


@st.composite
def a_field_of_another_type(draw: st.DrawFn, events: list[dict[str, Any]]) -> tuple[int, list[Any]]:
    index = draw(st.integers(0, len(events) - 1))
    path = draw(st.sampled_from(paths(events[index])))
    original = events[index]
    for key in path:
        original = original[key]
    kind = draw(st.sampled_from(sorted(set(BY_TYPE) - {json_type(original)})))
    mutated = list(events)
    mutated[index] = replaced(events[index], path, draw(BY_TYPE[kind]))
    return index, mutated


@fuzz(100)
@given(case=a_field_of_another_type(webhook_batch()), wire=st.sampled_from(WIRES))
def test_a_field_of_the_wrong_type_costs_only_its_own_event(deliver, case, wire):
    index, events = case
    delivery = deliver(on_the_wire(json.dumps(events).encode(), wire))
    assert delivery.status == 200, delivery.answer.body
    assert_accounted(delivery, events)
    assert {r["index"] for r in delivery.answer.body["rejected"]} <= {index}


SDK_BATCH = json.loads(sample_body("ingest_sdk_batch_basic.json"))


@fuzz(60)
@given(
    field=st.sampled_from(["batch", "sentAt", "context", "integrations", "writeKey"]),
    kind=st.sampled_from(sorted(BY_TYPE)),
    data=st.data(),
)
def test_a_wrong_type_in_a_batch_field_is_a_documented_answer(deliver, field, kind, data):
    body = {**SDK_BATCH, field: data.draw(BY_TYPE[kind])}
    delivery = deliver(on_the_wire(json.dumps(body).encode(), "text"))
    if field == "batch":
        if kind != "array":
            assert (delivery.status, delivery.code) == (400, "invalid_payload")
    elif delivery.status == 400:
        # a shared field no event can be stored with (a sentAt that moves timestamps out of the calendar,
        # a context holding a number DynamoDB cannot hold): each event is rejected, with that reason
        assert delivery.code == "invalid_events"
        cause = {"sentAt": "timestamp", "context": "number", "integrations": "number"}[field]
        assert all(cause in d["reason"] for d in delivery.answer.body["details"])
    else:
        assert delivery.status == 200  # the Authorization header decides; a bad shared field is ignored
        assert_accounted(delivery, SDK_BATCH["batch"])


# --- bombs and API Gateway's largest bodies ---------------------------------------------------------


@cache
def bomb(kind: str) -> bytes:
    """1 GiB of zeros compressed to about 1 MB, as a gzip or a zlib (HTTP "deflate") stream. After a full
    flush, 1 MiB of zeros always deflates to the same block, so the raw stream is that block repeated;
    gzip and zlib differ only in header and checksum trailer."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_RLE)
    zeros = bytes(MB)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    deflated = first + block * 1022 + compressor.compress(zeros) + compressor.flush()
    crc, adler = 0, 1
    for _ in range(1024):
        crc, adler = zlib.crc32(zeros, crc), zlib.adler32(zeros, adler)
    if kind == "gzip":
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
        return header + deflated + struct.pack("<II", crc, 1024 * MB % 2**32)
    return b"\x78\xda" + deflated + struct.pack(">I", adler)


def test_the_bombs_inflate_far_past_the_limit():
    for kind, wbits in (("gzip", zlib.MAX_WBITS | 16), ("deflate", zlib.MAX_WBITS)):
        data = bomb(kind)
        assert len(data) < 1.1 * MB
        assert zlib.decompressobj(wbits).decompress(data[: len(data) // 8], 8 * MB + 1) == bytes(8 * MB + 1)
    assert struct.unpack("<I", bomb("gzip")[-4:]) == (1024 * MB % 2**32,)  # gzip's size trailer: 1 GiB


def test_a_gzip_bomb_is_413_after_inflating_at_most_the_limit(deliver, subtests):
    for kind, encoding in (("gzip", "gzip"), ("gzip", None), ("deflate", "deflate")):  # None: magic bytes
        body = base64.b64encode(bomb(kind)).decode()
        for headers in (AUTH, {}):  # {}: the key would be in the body, so the body is read first
            labelled = {**headers, "content-encoding": encoding} if encoding else headers
            with subtests.test(kind=kind, label=encoding, key="header" if headers else "body"):
                delivery = deliver(http_event("/v1/segment", body, headers=labelled, base64_encoded=True))
                assert (delivery.status, delivery.code) == (413, "payload_too_large")


def test_10_mb_bodies_that_read_or_inflate_past_8_mb_are_413(deliver):
    text = json.dumps([{**GOOD, "properties": {"blob": "x" * (10 * MB - 200)}}])
    assert len(text) <= 10 * MB  # API Gateway's limit
    delivery = deliver(http_event("/v1/segment", text, headers=AUTH))
    assert (delivery.status, delivery.code) == (413, "payload_too_large")

    rng = random.Random(8)
    events = batch(*({**GOOD, "messageId": f"m-{n}", "properties": {"p": rng.random()}} for n in range(4000)))
    inflating = events[:-1] + b" " * (9 * MB) + b"]"  # whitespace: valid JSON, and it compresses well
    body = base64.b64encode(gzip.compress(inflating, mtime=0)).decode()
    assert len(body) <= 10 * MB
    delivery = deliver(
        http_event("/v1/segment", body, headers={**AUTH, "content-encoding": "gzip"}, base64_encoded=True)
    )
    assert (delivery.status, delivery.code) == (413, "payload_too_large")


def test_a_10_mb_base64_body_of_large_events_is_queued_whole(deliver):
    rng = random.Random(7)
    events = [
        {**GOOD, "messageId": f"big-{n}", "properties": {"blob": rng.randbytes(45_000).hex()[:60_000]}}
        for n in range(125)
    ]
    body = base64.b64encode(batch(*events)).decode()
    assert 9 * MB < len(body) <= 10 * MB
    delivery = deliver(http_event("/v1/segment", body, headers=AUTH, base64_encoded=True))
    assert delivery.status == 200
    assert_accounted(delivery, events)
    assert delivery.answer.body["accepted"] == 125


# --- regressions: each once answered 500, or was queued for the processor to fail on -------------------


def hostile(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u", "event": "Hostile", "messageId": "bad-1", **fields}


def nesting(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


REFUSED_WHOLE = [
    pytest.param(
        http_event("/v1/segment", "é", headers=AUTH, base64_encoded=True),
        400,
        "invalid_body",
        id="base64-body-beyond-ascii",  # intake.decode_body: ValueError, not binascii.Error
    ),
    pytest.param(
        http_event("/v1/segment", '[{"type":"track","userId":"\ud800","event":"e"}]', headers=AUTH),
        400,
        "invalid_body",
        id="text-body-with-a-raw-lone-surrogate",  # intake.decode_body: UnicodeEncodeError
    ),
    pytest.param(
        http_event("/v1/segment", "[" * 100_000 + "]" * 100_000, headers=AUTH),
        400,
        "invalid_body",
        id="100k-nested-arrays",  # intake.parse_payload: RecursionError
    ),
    pytest.param(
        http_event(
            "/v1/segment",
            '[{"type":"track","userId":"u","event":"e","n":' + "7" * 5000 + "}]",
            headers=AUTH,
        ),
        400,
        "invalid_body",
        id="5000-digit-integer",  # intake.parse_payload: ValueError (int max str digits)
    ),
    pytest.param(
        http_event("/v1/segment", json.dumps([hostile(properties=nesting(938)), GOOD]), headers=AUTH),
        400,
        "invalid_body",
        id="event-nesting-940-levels",  # parsed, then RecursionError deriving its messageId
    ),
    pytest.param(
        http_event("/v1/segment", '{"type":"track","userId":"u","event":"e","writeKey":"\\ud800"}'),
        401,
        "unauthorized",
        id="write-key-with-an-escaped-lone-surrogate",  # auth.hash_key: UnicodeEncodeError
    ),
    pytest.param(
        http_event("/v1/segment", json.dumps([GOOD]), headers={"authorization": "Basic é"}),
        401,
        "unauthorized",
        id="basic-credentials-beyond-ascii",  # auth._from_authorization: ValueError
    ),
]


def test_inputs_that_once_answered_500_are_refused_whole(deliver, subtests):
    for case in REFUSED_WHOLE:  # subtests: one moto setup for the table (CI time), one report per row
        event, status, code = case.values
        with subtests.test(case.id):
            delivery = deliver(event)
            assert (delivery.status, delivery.code) == (status, code)


REJECTED_ALONE = [
    pytest.param(hostile(type=[]), "type", id="type-an-array"),  # spec: unhashable type, was 500
    pytest.param(hostile(type={}), "type", id="type-an-object"),
    pytest.param(hostile(properties={"name": "\ud800"}), "Unicode", id="escaped-lone-surrogate"),
    pytest.param(hostile(properties={"\udfff": 1}), "Unicode", id="escaped-lone-surrogate-key"),
    # (a skew correction before year 1, once a 500, then rejected, is now skipped and the event accepted
    # at its own time: sentAt is a field it is applied without; test_lenient_ingest.py, issue 25)
    pytest.param(hostile(timestamp="0001-01-01T00:00:00+01:00"), "timestamp", id="year-0-in-utc"),
    pytest.param(hostile(timestamp="9999-12-31T23:59:59-05:00"), "timestamp", id="year-10000-in-utc"),
    pytest.param(hostile(properties=nesting(32)), "nests", id="33-levels"),  # DynamoDB holds 32
    pytest.param(hostile(properties={"n": float("nan")}), "number", id="NaN"),  # was queued as NaN
    pytest.param(hostile(properties={"n": float("inf")}), "number", id="Infinity"),
    pytest.param(hostile(properties={"n": 10**38}), "number", id="39-digit-integer"),
    pytest.param(hostile(traits={"n": -(10**40)}, type="identify"), "number", id="41-digit-trait"),
    pytest.param(hostile(properties={"n": [1e300]}), "number", id="1e300"),
    pytest.param(hostile(context={"n": 1e-300}), "number", id="1e-300"),
]


def test_events_that_once_answered_500_or_could_not_be_stored_are_rejected_alone(deliver, subtests):
    for case in REJECTED_ALONE:
        event, reason = case.values
        with subtests.test(case.id):
            delivery = deliver(http_event("/v1/segment", json.dumps([event, GOOD]), headers=AUTH))
            assert delivery.status == 200
            (rejected,) = delivery.answer.body["rejected"]
            assert (rejected["index"], rejected["messageId"]) == (0, "bad-1")
            assert reason in rejected["reason"]
            assert [e["messageId"] for e in delivery.queued] == ["good-1"]
            assert delivery.kept[0]["event"]["messageId"] == "bad-1"


def test_32_levels_of_nesting_and_the_largest_numbers_dynamodb_holds_are_accepted(deliver):
    edge = hostile(
        properties={"deep": nesting(30), "big": 10**38 - 1, "huge": 9.99e125, "tiny": 1e-130, "zero": 0.0}
    )
    delivery = deliver(http_event("/v1/segment", json.dumps([edge, GOOD]), headers=AUTH))
    assert delivery.answer.body["rejected"] == []
    assert [e["messageId"] for e in delivery.queued] == ["bad-1", "good-1"]


@pytest.mark.parametrize(
    "properties",
    [{"n": 10**38}, {"n": 1e300}, {"n": float("nan"), "m": 2**64}],
    ids=["39-digits", "1e300", "NaN-beside-a-65-bit-integer"],  # the last took json.dumps' path: NaN queued
)
def test_a_number_the_store_cannot_hold_no_longer_takes_its_neighbours_to_the_dead_letter_queue(
    ingest, aws, workspaces, properties
):
    """Before: accepted (200), then the processor failed the whole queue message, GOOD included, on
    every receive until the IngestDLQ."""
    from bridge_dev.runtime import lambda_sqs_event
    from tests.conftest import lambda_function
    from tests.functional.helpers import receive_all

    body = json.dumps([hostile(properties=properties), GOOD])
    assert ingest(http_event("/v1/segment", body, headers=AUTH)).status == 200
    messages = receive_all(aws.queue_urls["IngestQueue"])
    processor = lambda_function("ProcessorFunction")
    answer = processor.invoke(lambda_sqs_event(aws.queue_arns["IngestQueue"], messages))
    assert answer == {"batchItemFailures": []}
    assert [h["name"] for h in workspaces.read_history("ws_demo", "U", "user-1")] == ["Still Here"]
