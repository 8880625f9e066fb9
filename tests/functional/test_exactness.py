"""Exact over time and under races (issue 21; docs/exactness.md): history that DynamoDB's TTL removes, old
events imported, a delete between a writer's profile write and its history write, a mapping that tries
to turn deletes off, and a mapping change while processors are warm. One deterministic test per finding;
each failed on main f71d171.

moto never expires items: `ttl_sweep` does what DynamoDB's TTL does (deletes every item whose
`expires_at` has passed), at a moment the test chooses."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr

from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from segment_bridge.mapping import Mapping
from tests.functional.conftest import event
from tests.functional.helpers import before_call

T1, T2 = "2026-01-01T10:00:00.000Z", "2026-01-02T10:00:00.000Z"
DAY = 86_400


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ttl_sweep(aws: Any, now: float) -> int:
    """What DynamoDB's TTL does by `now` (epoch seconds): every item of both tables whose `expires_at` is
    at or before it is deleted. The number deleted."""
    dynamodb = boto3.resource("dynamodb")
    gone = 0
    for name in (aws.tables["ProfilesTable"], aws.tables["EventsTable"]):
        table = dynamodb.Table(name)
        page: dict[str, Any] = {"FilterExpression": Attr("expires_at").lte(int(now))}
        while True:
            answer = table.scan(**page)
            with table.batch_writer() as batch:
                for found in answer["Items"]:
                    batch.delete_item(Key={"pk": found["pk"], "sk": found["sk"]})
                    gone += 1
            if "LastEvaluatedKey" not in answer:
                break
            page["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
    return gone


def pending(store: Any, key: str = "U#user-1") -> dict[str, Any]:
    return dict(store.profiles.read_entities(WS, [key]).get(key).pending)


def counts(store: Any, user: str = "user-1") -> dict[str, int]:
    profile = store.read_profile(WS, "U", user)
    return dict(profile.counts) if profile else {}


# --- (1) history expiry never locks a returning user out ----------------------------------------------


def test_a_user_returning_after_their_history_expired_is_applied_every_visit_and_pending_stays_small(
    processor, workspaces, aws
):
    """history_days 7, a visit every 10 days of 200 events with long messageIds, the TTL sweep between
    visits: main kept every expired item's pending entry (they are never seen again), passed 60 KB by
    the fourth visit and failed every later message with "too many pending records"."""
    workspaces.set_mapping(WS, Mapping(history_days=7))
    start = datetime.now(UTC) - timedelta(days=80)
    for visit in range(8):
        when = start + timedelta(days=10 * visit)
        events = [
            event("track", f"v{visit}-{n:03}".ljust(90, "x"), iso(when), event="Opened") for n in range(200)
        ]
        assert processor(events, message_id=f"visit-{visit}") == {"batchItemFailures": []}, visit
        assert counts(workspaces) == {"Opened": 200 * (visit + 1)}
        assert len(pending(workspaces)) <= 200, visit  # the last visit's: they leave with the next write
        ttl_sweep(aws, (when + timedelta(days=10)).timestamp() - 1)
    assert len(pending(workspaces)) <= 200


def test_an_import_of_events_older_than_the_history_window_counts_them_and_writes_no_expired_history(
    processor, workspaces
):
    """Events whose history window had closed when they were received (timestamp + history_days before
    receipt) are counted once; their history items would be born expired, so none is written."""
    received = iso(datetime.now(UTC))
    old = [
        event("track", f"old-{n}", "2024-03-01T10:00:00.000Z", event="Order Completed")
        | {"receivedAt": received}
        for n in range(5)
    ]
    assert processor(old) == {"batchItemFailures": []}
    assert counts(workspaces) == {"Order Completed": 5}
    assert workspaces.read_history(WS, "U", "user-1") == []
    wanted = {"U#user-1": {e["messageId"] for e in old}}
    assert workspaces.existing_history(WS, wanted) == wanted  # each known as counted


# --- (2) replay, redelivery and re-drive after expiry count nothing again -----------------------------


def test_replaying_imported_old_events_after_the_ttl_sweep_counts_them_once(processor, workspaces, aws):
    """The issue's example: 5 events stamped 2024-03-01 imported, then the same message delivered again
    (a replay of its receipt day, a redelivery, a re-drive) twice, the TTL sweep between: 5, not 10, 15."""
    received = datetime.now(UTC)
    old = [
        event("track", f"imp-{n}", "2024-03-01T10:00:00.000Z", event="Order Completed")
        | {"receivedAt": iso(received)}
        for n in range(5)
    ]
    assert processor(old, message_id="import") == {"batchItemFailures": []}
    for again in range(2):
        later = received + timedelta(days=30 * (again + 1))
        # the user's own traffic meanwhile (its write sees what is written and clears `pending`)
        visit = event("track", f"visit-{again}", iso(later), event="Visited")
        assert processor([visit], message_id=f"visit-{again}") == {"batchItemFailures": []}
        ttl_sweep(aws, later.timestamp())
        assert processor(old, message_id=f"replay-{again}") == {"batchItemFailures": []}
        assert counts(workspaces) == {"Order Completed": 5, "Visited": again + 1}


def test_an_event_whose_history_item_expired_is_not_counted_again_when_redelivered(
    processor, workspaces, aws
):
    """Received in its window (history_days 7), counted, its item removed by TTL, then the same message
    delivered again: main counted it a second time (no history item and not pending)."""
    workspaces.set_mapping(WS, Mapping(history_days=7))
    when = datetime.now(UTC) - timedelta(days=1)
    tracks = [event("track", f"t{n}", iso(when), event="Clicked") for n in range(3)]
    assert processor(tracks, message_id="first") == {"batchItemFailures": []}
    assert len(workspaces.read_history(WS, "U", "user-1")) == 3
    # the user's next event: its write sees the three items and clears them from `pending`
    assert processor([event("track", "t9", iso(when), event="Other")], message_id="next") == {
        "batchItemFailures": []
    }
    assert pending(workspaces) == {} or set(pending(workspaces)) == {"t9"}
    assert ttl_sweep(aws, (when + timedelta(days=8)).timestamp()) >= 3
    assert [h["sk"] for h in workspaces.read_history(WS, "U", "user-1")] == []
    assert processor(tracks, message_id="again") == {"batchItemFailures": []}
    assert counts(workspaces) == {"Clicked": 3, "Other": 1}


def test_pending_entries_of_messages_that_never_finish_are_settled_and_never_fail_a_message(
    processor, workspaces
):
    """Messages that counted their records and then died before their history write (after 5 receives
    the DLQ holds them) leave pending entries that nothing clears. Main failed the next large message of
    the user ("too many pending records", a ServiceUnavailable: 5 receives, then the DLQ, and a re-drive
    fails the same way); now the orphaned entries are settled (a counted marker each) and the re-drive of
    the dead letters counts nothing twice."""
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    from segment_bridge.errors import ServiceUnavailable

    def batch(name: str) -> list[dict[str, Any]]:
        return [event("track", f"{name}-{k:03}".ljust(100, "y"), T1, event="Paid") for k in range(100)]

    real = workspaces.profiles.record

    def crash(*args: Any, **kwargs: Any) -> None:
        raise ServiceUnavailable("the process died here")

    dead = [batch(f"dead{n}") for n in range(6)]
    workspaces.profiles.record = crash
    try:
        for n, letter in enumerate(dead):
            with contextlib.suppress(BatchProcessingError):
                processor(letter, message_id=f"dead-{n}")
    finally:
        workspaces.profiles.record = real
    assert counts(workspaces)["Paid"] >= 400  # counted, their history never written
    assert len(pending(workspaces)) >= 400

    assert processor(batch("fresh"), message_id="fresh") == {"batchItemFailures": []}
    for n, letter in enumerate(dead):  # the dead letters re-driven
        assert processor(letter, message_id=f"redrive-{n}") == {"batchItemFailures": []}
    assert counts(workspaces) == {"Paid": 700}
    assert len(workspaces.read_history(WS, "U", "user-1")) == 700


# --- (3) a delete between a writer's profile write and its history write -------------------------------


def test_a_delete_between_a_writers_profile_write_and_its_history_write_leaves_nothing_at_or_before_it(
    processor, workspaces, aws
):
    """The writer's events are all at or before the delete, so the erase removes the profile it wrote;
    then its history and memberships land. Main's step 6 saw the deletion time rise and called the erase,
    which returned at once ("an entity without a profile has nothing left to erase")."""
    from segment_bridge.processor.unit import apply_batch

    interleaved: list[str] = []

    def delete_first(operation: str, body: dict[str, Any]) -> None:
        items = [
            r["PutRequest"]["Item"] for t in body["RequestItems"].values() for r in t if "PutRequest" in r
        ]
        if not interleaved and any(i["sk"]["S"].startswith(("MSG#", "MEMBER#")) for i in items):
            interleaved.append(operation)
            apply_batch(WS, [event("delete", "d", T2)], Mapping(), workspaces)

    writer = [
        event("identify", "i1", T1, anonymousId="anon-1", traits={"plan": "pro"}),
        event("track", "t1", T1, event="Signed Up"),
        event("track", "t2", T1, user=None, anonymousId="anon-1", event="Browsed"),
        event("group", "g1", T1, groupId="acme"),
    ]
    with before_call(workspaces, ("BatchWriteItem",), delete_first):
        assert processor(writer, message_id="racing") == {"batchItemFailures": []}

    assert interleaved
    assert workspaces.read_profile(WS, "U", "user-1") is None
    assert workspaces.read_history(WS, "U", "user-1") == []
    assert workspaces.read_history(WS, "A", "anon-1") == []
    assert workspaces.group_members(WS, "acme") == []
    events_table = boto3.resource("dynamodb").Table(aws.tables["EventsTable"])
    left = [i for i in events_table.scan()["Items"] if i["pk"].endswith(("#U#user-1", "#A#anon-1"))]
    assert left == []
    # and the delete, re-delivered, still has nothing to do
    assert processor([event("delete", "d", T2)], message_id="again") == {"batchItemFailures": []}


# --- (4) deletes are not a mapping option; stats count skipped events as skipped ----------------------


def test_a_mapping_listing_only_identify_and_track_still_applies_deletes(processor, workspaces):
    workspaces.set_mapping(WS, Mapping(event_types=frozenset({"identify", "track"})))
    assert processor([event("identify", "i", T1, traits={"email": "ada@example.com"})]) == {
        "batchItemFailures": []
    }
    assert processor([event("delete", "d", T2)], message_id="del") == {"batchItemFailures": []}
    assert workspaces.read_profile(WS, "U", "user-1") is None
    assert workspaces.profiles.read_entities(WS, ["U#user-1"])["U#user-1"].deleted_at == T2
    assert "delete" in workspaces.get_mapping(WS).event_types


def test_mapping_validate_and_set_say_plainly_that_a_delete_cannot_be_turned_off(sb, tmp_path):
    file = tmp_path / "m.yaml"
    file.write_text("event_types: [identify, track]\n", encoding="utf-8")
    checked = sb("mapping", "validate", str(file))
    assert checked.status == 0
    assert "delete" in checked.json["mapping"]["event_types"]
    assert any("delete" in note for note in checked.json["notes"])
    text = sb("mapping", "set", WS, str(file), json_flag=False)
    assert "delete" in text.out
    assert "cannot be turned off" in text.out


def test_stats_count_skipped_events_as_skipped_not_applied(processor, workspaces, sb):
    workspaces.set_mapping(WS, Mapping(event_types=frozenset({"identify", "delete"})))
    today = iso(datetime.now(UTC))
    events = [event("track", f"t{n}", today, event="Clicked") for n in range(3)]
    events.append(event("identify", "i", today, traits={"plan": "pro"}))
    assert processor(events) == {"batchItemFailures": []}
    # the processor fixture's envelope is received on 2026-01-01 (the day it is counted under)
    day = datetime(2026, 1, 1, tzinfo=UTC).date()
    assert workspaces.daily_counts(WS, day, day)["2026-01-01"] | {"duplicates": 0} == {
        "applied": 1,
        "skipped": 3,
        "duplicates": 0,
    }
    (row,) = sb("stats", WS, "--days", "1").json
    assert "skipped" in row


# --- (5) a mapping change has one moment ---------------------------------------------------------------


def test_a_warm_processor_applies_the_new_mapping_to_the_next_message_after_mapping_set(
    processor, workspaces, sb, tmp_path
):
    """A warm processor's cache held the previous mapping for AuthCacheSeconds: a type just turned off
    was still applied after `mapping set` answered."""
    assert processor([event("track", "t0", T1, event="Warm")], message_id="warm") == {"batchItemFailures": []}
    file = tmp_path / "m.yaml"
    file.write_text("event_types: [identify]\n", encoding="utf-8")
    answer = sb("mapping", "set", WS, str(file))
    assert answer.status == 0
    assert processor([event("track", "t1", T1, event="After")], message_id="after") == {
        "batchItemFailures": []
    }
    assert counts(workspaces) == {"Warm": 1}
    assert [h["sk"] for h in workspaces.read_history(WS, "U", "user-1")] == ["MSG#t0"]


def test_mapping_set_says_exactly_from_when_the_new_version_applies(sb, tmp_path):
    file = tmp_path / "m.yaml"
    file.write_text("history_days: 30\n", encoding="utf-8")
    answer = sb("mapping", "set", WS, str(file), json_flag=False)
    assert answer.status == 0
    assert "every message the processor starts from now on" in answer.out
    data = sb("mapping", "set", WS, str(file)).json
    assert data["applies_to"] == "every message the processor starts from now on"
    assert data["in_flight_seconds"] == 150


def test_a_history_longer_than_the_archive_is_its_own_counted_record_and_still_counts_once(
    processor, workspaces, aws
):
    """history_days 3650 outlives every marker (receipt + 430 days): no marker is written (one write
    unit an event saved), the history item says "counted", and a redelivery counts nothing again."""
    workspaces.set_mapping(WS, Mapping(history_days=3650))
    tracks = [event("track", f"t{n}", T1, event="Clicked") for n in range(3)]
    assert processor(tracks, message_id="first") == {"batchItemFailures": []}
    events_table = boto3.resource("dynamodb").Table(aws.tables["EventsTable"])
    assert sorted(i["sk"] for i in events_table.scan()["Items"]) == ["MSG#t0", "MSG#t1", "MSG#t2"]
    assert processor([event("track", "t9", T2, event="Other")], message_id="next") == {
        "batchItemFailures": []
    }
    assert processor(tracks, message_id="again") == {"batchItemFailures": []}
    assert counts(workspaces) == {"Clicked": 3, "Other": 1}
