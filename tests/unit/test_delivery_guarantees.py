"""Sent or parked whole, always: a property over outbox items and change rules of any shape.

Each outbox item (any DynamoDB value types, up to 400 KB, any timestamp text, missing and extra fields)
and each change a rule fires on (rules with JMESPath functions over records of any shape) is either sent
exactly once or parked whole with its reason; no invocation raises; nothing is left to the stream.
"""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeSerializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segment_bridge.destinations import ChangeRule, Destination
from segment_bridge.outbound.delivery import Sending, deliver, stream_changes
from segment_bridge.outbound.egress import Answer
from segment_bridge.outbound.track import outbound_message_id
from segment_bridge.store.parked import as_json

OUTBOX = "OutboxTable"
APP = "Flows"
_serializer = TypeSerializer()


class RecordingSender:
    def __init__(self) -> None:
        self.received: list[str] = []

    def send(self, url: str, write_key: str, body: bytes, seconds_left: float) -> Answer:
        assert seconds_left > 0
        batch = json.loads(gzip.decompress(body))["batch"]
        self.received += [event["messageId"] for event in batch]
        return Answer(200, {}, "{}")


class RecordingParking:
    def __init__(self) -> None:
        self.parked: list[tuple[str, dict[str, Any], str | None]] = []

    def park_outbound(
        self,
        reason: str,
        record: dict[str, Any],
        response: dict[str, Any] | None = None,
        workspace_id: str | None = None,
        written_at: float | None = None,
    ) -> str:
        json.dumps(as_json(record), allow_nan=False)  # what the bucket keeps must be JSON
        assert reason
        self.parked.append((reason, record, workspace_id))
        return f"parked/{len(self.parked)}"


def sending(sender: RecordingSender, parking: RecordingParking) -> Sending:
    return Sending(
        destination=lambda ws: (
            Destination("https://api.segment.io/v1/batch", "wk") if ws != "nokey" else None
        ),
        sender=sender,
        parking=parking,
        deadline=1e12,
        clock=lambda: 1_767_225_600.0,
        sleep=lambda _: None,
    )


def stream_record(table: str, n: int, keys: dict[str, Any], new: Any, old: Any = None) -> dict[str, Any]:
    dynamodb: dict[str, Any] = {
        "Keys": {name: _serializer.serialize(value) for name, value in keys.items()},
        "SequenceNumber": f"{n:021d}",
        "ApproximateCreationDateTime": 1_767_225_600,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        dynamodb["NewImage"] = {name: _serializer.serialize(value) for name, value in new.items()}
    if old is not None:
        dynamodb["OldImage"] = {name: _serializer.serialize(value) for name, value in old.items()}
    return {
        "eventID": str(n),
        "eventName": "INSERT" if old is None else "MODIFY",
        "eventSource": "aws:dynamodb",
        "eventSourceARN": f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/2026-01-01T00:00:00",
        "dynamodb": dynamodb,
    }


# --- DynamoDB values of every type ---------------------------------------------------------------

numbers = st.one_of(
    st.integers(-(10**30), 10**30).map(Decimal),
    st.decimals(min_value=-(10**9), max_value=10**9, places=6, allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(
    st.text(max_size=40),
    numbers,
    st.booleans(),
    st.none(),
    st.binary(max_size=20).map(Binary),
    st.sets(st.text(min_size=1, max_size=10), min_size=1, max_size=4),
    st.sets(st.integers(-1000, 1000).map(Decimal), min_size=1, max_size=4),
    st.sets(st.binary(min_size=1, max_size=8), min_size=1, max_size=3),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
timestamps = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59.999999-23:59",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:00",
            "2026-02-30T10:00:00Z",
            "2026-01-01",
            "",
        ]
    ),
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    values,
)
sizes = st.one_of(st.just(0), st.integers(0, 2_000), st.sampled_from([31_000, 33_000, 260_000, 399_000]))


@st.composite
def outbox_items(draw: st.DrawFn, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = {"pk": draw(st.sampled_from(["WS#ws1", "WS#ws2", "WS#nokey", "WS#", "ws1"])), "sk": f"EVT#{n}"}
    item: dict[str, Any] = dict(keys)
    for name, strategy in (
        ("event", st.one_of(st.text(max_size=30), values)),
        ("userId", st.one_of(st.text(max_size=30), values)),
        ("anonymousId", st.one_of(st.text(max_size=30), values)),
        ("properties", st.one_of(st.dictionaries(st.text(max_size=8), values, max_size=5), values)),
        ("context", st.one_of(st.dictionaries(st.text(max_size=8), values, max_size=3), values)),
        ("timestamp", timestamps),
    ):
        if draw(st.booleans()):
            item[name] = draw(strategy)
    item |= draw(
        st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in item), values, max_size=3)
    )
    size = draw(sizes)
    if size:
        where = draw(st.sampled_from(["properties", "context", "extra"]))
        if where == "extra" or not isinstance(item.get(where), dict):
            item["blob"] = "x" * size
        else:
            item[where]["blob"] = "x" * size
    return keys, item


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.data())
def test_every_outbox_item_is_sent_once_or_parked_whole_with_its_reason(data: st.DataObject) -> None:
    count = data.draw(st.integers(1, 6))
    drawn = [data.draw(outbox_items(n)) for n in range(count)]
    event = {"Records": [stream_record(OUTBOX, n, keys, item) for n, (keys, item) in enumerate(drawn)]}
    images = [change.new_image for change in stream_changes(event, lambda: 0.0)]
    sender, parking = RecordingSender(), RecordingParking()

    report = deliver(
        stream_changes(event, lambda: 0.0),
        outbox_table=OUTBOX,
        own_tables=frozenset({"ProfilesTable"}),
        sending=sending(sender, parking),
    )

    assert report.failed == []  # nothing left only to the stream
    for (keys, _), image in zip(drawn, images, strict=True):
        message_id = outbound_message_id(OUTBOX, keys)
        sent = sender.received.count(message_id)
        # parked whole: the item as the stream gave it, or (once valid) its whole track call
        parked = [
            reason
            for reason, record, _ in parking.parked
            if record == image or record.get("messageId") == message_id
        ]
        assert (sent, len(parked)) in ((1, 0), (0, 1)), (sent, parked)
    assert report.sent + report.parked == count


RULE_EXPRESSIONS = [
    "new.status == 'DONE'",
    "length(new.items) > `0`",
    "contains(new.tags, 'x')",
    "starts_with(new.name, 'a')",
    "abs(new.n) > `1`",
    "to_number(new.n) > `1`",
    "sort(new.items)[0] == 'a'",
    "max(new.xs) > `0`",
    "sum(new.xs) > `1`",
    "keys(new) != `[]`",
    "`true`",
    "new.a.b.c",
    "ends_with(old.name, 'z') || join(',', new.tags) == 'x'",
]
PATHS = [
    "new.workspace_id",
    "new.userId",
    "new.n",
    "to_string(new.n)",
    "length(new.name)",
    "new",
    "old.items[0]",
]
json_values = st.recursive(
    st.one_of(st.text(max_size=10), numbers, st.booleans(), st.none()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
record_fields = st.fixed_dictionaries(
    {},
    optional={
        "workspace_id": st.one_of(st.sampled_from(["ws1", "nokey", ""]), json_values),
        "userId": st.one_of(st.text(max_size=10), json_values),
        "status": st.one_of(st.just("DONE"), json_values),
        "items": json_values,
        "tags": json_values,
        "name": json_values,
        "n": json_values,
        "xs": json_values,
        "a": json_values,
    },
)
rules = st.builds(
    ChangeRule,
    name=st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    table=st.just(APP),
    when=st.sampled_from(RULE_EXPRESSIONS),
    event=st.just("Changed"),
    workspace=st.sampled_from(PATHS),
    user_id=st.sampled_from([*PATHS, None]),
    properties=st.dictionaries(st.text(min_size=1, max_size=5), st.sampled_from(PATHS), max_size=3),
    timestamp=st.sampled_from([None, "new.name", "new.n"]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(rules, min_size=1, max_size=3, unique_by=lambda rule: rule.name),
    st.lists(record_fields, max_size=4),
    st.lists(record_fields, max_size=4),
)
def test_change_rules_with_functions_over_records_of_any_shape_send_or_park_never_crash(
    change_rules: list[ChangeRule], news: list[dict[str, Any]], olds: list[dict[str, Any]]
) -> None:
    news = [new | {"_id": f"r{n}"} for n, new in enumerate(news)]  # tells the records apart
    records = [
        stream_record(APP, n, {"id": f"r{n}"}, new, olds[n] if n < len(olds) else None)
        for n, new in enumerate(news)
    ]
    sender, parking = RecordingSender(), RecordingParking()

    report = deliver(
        stream_changes({"Records": records}, lambda: 0.0),
        outbox_table=OUTBOX,
        own_tables=frozenset(),
        sending=sending(sender, parking),
        rules=change_rules,
    )

    assert report.failed == []
    for n, change in enumerate(stream_changes({"Records": records}, lambda: 0.0)):
        document = {
            "eventName": change.event_name,
            "old": change.old_image or {},
            "new": change.new_image or {},
        }
        for rule in change_rules:
            keys = {"rule": rule.name, "record": change.record_id, "id": f"r{n}"}
            message_id = outbound_message_id(APP, keys)
            sent = sender.received.count(message_id)
            parked = [
                reason
                for reason, record, _ in parking.parked
                if (record.get("rule") == rule.name and record["change"]["new"].get("_id") == f"r{n}")
                or record.get("sk") == f"RULE#{rule.name}#{change.record_id}"
                or record.get("messageId") == message_id
            ]
            try:
                fires = rule.fires(document)
            except Exception:  # the rule cannot be evaluated on this record: parked, with the rule named
                assert (sent, len(parked)) == (0, 1)
                assert f"change rule {rule.name}" in parked[0]
                continue
            expected = [(1, 0), (0, 1)] if fires else [(0, 0)]
            assert (sent, len(parked)) in expected, (rule, sent, parked)
