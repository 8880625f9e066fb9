"""Every event ingest accepts is applied or parked on its own (issue 12): the dead-letter queue is for
infrastructure failures only.

A property (hypothesis) drives the IngestFunction and then the ProcessorFunction on moto with events drawn
from what the Spec models accept — ids of any length and script (with `#`, our own key prefixes, astral
characters), every timestamp form, all seven types, traits of any shape and number, mappings with
JMESPath functions — and asserts: every accepted event is applied or kept in `unapplied/` with its reason;
no message fails for an event's own reason; with a DynamoDB outage injected at the boundary (a botocore
hook on the store's client, failing every write from a drawn one on, past botocore's own retries) a
message fails only if the outage reached it, and the failed messages' redelivery applies them; and
delivering every message again changes no table item (exactly once).
Example counts are small; `make fuzz` (HYPOTHESIS_PROFILE=long) runs 20x as many.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key
from hypothesis import HealthCheck, given, settings
from hypothesis import event as tally
from hypothesis import strategies as st

from bridge_dev.events import DEMO_API_KEY
from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from segment_bridge.limits import MAX_ID_BYTES
from segment_bridge.mapping import Mapping
from segment_bridge.profiles import COUNTED_DAYS
from tests.functional.conftest import event
from tests.functional.helpers import Pipeline, aws_error, before_call, refusing_history_item, state

SCALE = settings.default.max_examples / 100
AUTH = {"authorization": f"Bearer {DEMO_API_KEY}"}
WRITES = ("PutItem", "BatchWriteItem")
T1 = "2026-01-01T10:00:00.000Z"


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=max(1, round(examples * SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- what the Spec accepts ---------------------------------------------------------------------------

SCRIPTS = st.sampled_from(["a", "é", "ж", "中", "\U0001f600", "#", "U#", "A#", "G#", "LINK#", "MEMBER#", " "])


def ids() -> st.SearchStrategy[str]:
    """Ids from a small pool (so events meet), and ids of any script and length around the key budget."""
    short = st.sampled_from(["u1", "u2", "#", "U#u1", "LINK#u1", "WS#x#U#y", "\U0001f600"])
    long = st.builds(lambda part, n: (part * n)[:1024], SCRIPTS, st.integers(200, 1024))
    return st.one_of(short, short, long)


TIMESTAMPS = st.one_of(
    st.just(T1),
    st.sampled_from(
        [
            "2026-01-01t10:00:00z",
            "2026-01-01 09:00:00",
            "2026-01-01T12:00:00+02:00",
            "1767261600",
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:30:00-01:00",
            "2026-13-01T00:00:00Z",
        ]
    ),
    st.integers(-(10**11), 10**13),
    st.floats(0, 2e10, allow_nan=False),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
TRAITS = st.one_of(
    st.dictionaries(st.text(max_size=8), JSON, max_size=6),
    st.builds(lambda n, v: {f"t{i}": v for i in range(n)}, st.integers(90, 130), st.text(max_size=4)),
    st.fixed_dictionaries({"email": JSON, "tags": JSON, "bio": st.text(min_size=900, max_size=1200)}),
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["identify", "track", "page", "screen", "group", "alias", "delete"]))
    out: dict[str, Any] = {"type": kind, "userId": draw(ids())}
    if draw(st.booleans()):
        out["anonymousId"] = draw(st.one_of(st.just(out["userId"]), ids()))  # self-links included
    if draw(st.booleans()):
        out["messageId"] = draw(st.text(min_size=1, max_size=100))
    for name in ("timestamp", "originalTimestamp", "sentAt", "receivedAt"):
        if draw(st.integers(0, 5)) == 0:
            out[name] = draw(TIMESTAMPS)
    if kind in ("identify", "group"):
        out["traits"] = draw(TRAITS)
    if kind == "track":
        out["event"] = draw(st.text(min_size=1, max_size=30))
    if kind in ("track", "page", "screen"):
        out["properties"] = draw(st.dictionaries(st.text(max_size=5), JSON, max_size=4))
    if kind == "group":
        out["groupId"] = draw(ids())
    if kind == "alias":
        out["previousId"] = draw(st.one_of(st.just(out["userId"]), ids()))
    return out


MAPPINGS = st.sampled_from(
    [
        Mapping(),
        Mapping(channels={"email": "join(', ', email)", "sms": "length(tags)"}),
        Mapping(channels={"email": "tags[?length(@) > `3`]"}, preferences={"language": "to_string(email)"}),
        Mapping(channels={"email": "sort(tags)", "whatsapp": "max_by(tags, &a)"}),
    ]
)


# --- driving the pipeline ----------------------------------------------------------------------------


def queued(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from segment_bridge.envelope import unpack

    return [e for m in messages for e in unpack(m["Body"])[1]]


def deleted(store: Any, event: dict[str, Any]) -> bool:
    """Whether a delete (its own, or one that took its id with a linked user) covers the event: a
    tombstone on its entity at or after its time (for an alias, on its previousId too: the delete took
    the link)."""
    from segment_bridge.timestamps import event_time

    keys = [f"U#{event['userId']}" if event.get("userId") else f"A#{event['anonymousId']}"]
    if event["type"] == "alias":
        keys += [f"A#{event['previousId']}", f"U#{event['previousId']}"]
    found = store.profiles.read_entities(WS, keys)
    when, _ = event_time(event.get("timestamp"), event.get("receivedAt") or event.get("timestamp"))
    times = [found[key].deleted_at for key in keys if key in found]
    return any(at is not None and when <= at for at in times)


def applied(store: Any, event: dict[str, Any]) -> bool:
    """What the event left in the tables (its history item, its profile, its group, its link), or the
    delete that removed it; as merge protection applies it (a blocked userId: under its anonymousId)."""
    from segment_bridge.identity import MergeProtection, screen

    screened = screen(event, MergeProtection())
    if screened.reason is not None:  # nothing of it may be applied: it must be parked
        return False
    event = screened.event
    kind, user = event["type"], event.get("userId")
    entity = ("U", user) if user else ("A", event["anonymousId"])
    if deleted(store, event):
        return True
    if kind in ("track", "page", "screen"):  # counted (its marker), and its history item if kept
        key = f"{entity[0]}#{entity[1]}"
        seen = store.profiles.seen_history(WS, {key: {event["messageId"]}}).get(key)
        return seen is not None and event["messageId"] in seen.markers
    if kind == "group":
        return store.read_profile(WS, "G", event["groupId"]) is not None
    if kind == "alias":  # its link, or a later one of the same previousId
        return bool(store.profiles.link_stamps(WS, [event["previousId"]])) and (
            store.read_profile(WS, *entity) is not None
        )
    return store.read_profile(WS, *entity) is not None


def counted_markers(store: Any, kind: str, entity_id: str) -> list[dict[str, Any]]:
    """The entity's counted markers (COUNTED#<messageId>: the event was counted; docs/exactness.md)."""
    table = boto3.resource("dynamodb").Table(store.settings.events_table)
    return table.query(
        KeyConditionExpression=Key("pk").eq(f"WS#{WS}#{kind}#{entity_id}") & Key("sk").begins_with("COUNTED#")
    )["Items"]


def assert_counts_exact(store: Any, history_days: int = 365) -> None:
    """Each profile's count of a name equals its history items of that name (nothing counted twice),
    where every item has been kept: an event whose history window had closed at its receipt is counted
    with a counted marker and no item. So: count == counted markers of the name, every history item has
    its marker, and every marker without an item is of such an event."""
    table = boto3.resource("dynamodb").Table(store.settings.profiles_table)
    for profile in table.scan()["Items"]:
        if profile["sk"] != "PROFILE":
            continue
        history = store.read_history(WS, profile["kind"], profile["id"])
        markers = counted_markers(store, profile["kind"], profile["id"])
        items = {h["sk"].removeprefix("MSG#"): h for h in history}
        assert set(items) <= {m["sk"].removeprefix("COUNTED#") for m in markers}
        for marker in markers:
            mid = marker["sk"].removeprefix("COUNTED#")
            if mid not in items:  # born expired: timestamp + history_days at or before its receipt
                receipt = int(marker["expires_at"]) - COUNTED_DAYS * 86_400
                stamped = datetime.fromisoformat(str(marker["timestamp"])).timestamp()
                assert stamped + history_days * 86_400 <= receipt, mid
        for name, count in profile.get("counts", {}).items():
            assert count == sum(1 for m in markers if m["name"] == name), name


@pytest.fixture
def pipeline(aws, workspaces):
    return Pipeline(aws, workspaces)


@fuzz(60)
@given(batch=st.lists(events(), min_size=1, max_size=12), mapping=MAPPINGS, outage_from=st.integers(0, 30))
def test_every_accepted_event_is_applied_or_parked_and_only_aws_faults_fail_a_message(
    pipeline, batch, mapping, outage_from
):
    pipeline.forget_everything()
    pipeline.store.set_mapping(WS, mapping)
    messages = pipeline.send(batch)
    accepted = queued(messages)

    # A DynamoDB outage from the `outage_from`-th write on (every write after it throttled, through
    # botocore's own retries): a message fails only if the outage reached it (infrastructure), never for
    # an event's own reason.
    writes, outage = iter(range(10**6)), []
    failing = before_call(
        pipeline.store,
        WRITES,
        lambda op, body: (
            (outage.append(op), aws_error("ThrottlingException"))[1] if next(writes) >= outage_from else None
        ),
    )
    with failing:
        failed = pipeline.process(messages)
    tally("a message failed in the outage" if failed else "no message failed")
    assert failed == [] if not outage else len(failed) >= 1

    # The failed messages' redelivery, on healthy AWS, applies them: every accepted event is applied or
    # parked with its reason, and nothing is counted twice.
    redelivered = [m for m in messages if m["MessageId"] in failed]
    assert pipeline.process(redelivered) == []
    parked = {json.dumps(r["event"], sort_keys=True) for r in pipeline.unapplied() if r.get("reason")}
    for one in accepted:  # deletes and self-links included: what a delete removed is accounted for by it
        assert applied(pipeline.store, one) or json.dumps(one, sort_keys=True) in parked, one["type"]
    assert_counts_exact(pipeline.store)

    # Every message delivered once more (SQS at-least-once): exactly once, so the tables do not change.
    tables = [pipeline.store.settings.profiles_table, pipeline.store.settings.events_table]
    before = state(WS, tables)
    assert pipeline.process(messages) == []
    assert state(WS, tables) == before


# --- regression tests, one per class -----------------------------------------------------------------


def test_a_group_of_a_user_whose_id_is_too_long_for_a_member_key_is_refused_at_ingest(pipeline):
    long_id = "\U0001f600" * 300  # 300 characters (the Spec's 1,024 allow it), 1,200 UTF-8 bytes
    messages = pipeline.send(
        [
            {"type": "group", "userId": long_id, "groupId": "g1", "messageId": "m1"},
            {"type": "track", "userId": "u1", "event": "Still Here", "messageId": "m2"},
        ]
    )
    assert [e["messageId"] for e in queued(messages)] == ["m2"]


def test_ids_at_the_byte_budget_with_our_own_key_prefixes_are_applied(pipeline):
    user = ("U#LINK#" + "\U0001f600" * 300)[: MAX_ID_BYTES // 4]
    messages = pipeline.send(
        [
            {"type": "group", "userId": user, "groupId": "G#" + "é" * 500, "messageId": "m1"},
            {"type": "alias", "userId": user, "previousId": "LINK#" + "ж" * 505, "messageId": "m2"},
        ]
    )
    assert len(queued(messages)) == 2
    assert pipeline.process(messages) == []
    assert pipeline.store.read_profile(WS, "G", "G#" + "é" * 500) is not None
    assert pipeline.store.linked_ids(WS, user) == ["LINK#" + "ж" * 505]


def test_an_archived_event_with_an_id_too_long_for_its_keys_is_parked_and_its_neighbours_apply(
    processor, workspaces, aws
):
    """Events queued before today's limits (or replayed from raw/): the processor parks them alone."""
    too_long = "\U0001f600" * 600
    events = [
        event("group", "m1", T1, user=too_long, groupId="g1"),
        event("alias", "m2", T1, previousId=too_long),
        event("track", "m3", T1, event="Clicked"),
    ]
    assert processor(events) == {"batchItemFailures": []}
    assert workspaces.read_profile(WS, "U", "user-1").counts == {"Clicked": 1}
    pipeline = Pipeline(aws, workspaces)
    assert sorted(r["event"]["messageId"] for r in pipeline.unapplied()) == ["m1", "m2"]


@pytest.mark.parametrize(
    "form", ["2026-01-01t10:00:00z", 1767261600, "1767261600", "2026-01-01 10:00:00+00:00"]
)
def test_every_timestamp_form_the_spec_accepts_is_applied_by_the_processor(processor, workspaces, form):
    relayed = event("track", "m1", T1, event="Clicked") | {"timestamp": form, "receivedAt": form}
    assert processor([relayed]) == {"batchItemFailures": []}
    (history,) = workspaces.read_history(WS, "U", "user-1")
    assert history["timestamp"] == T1


def test_an_identify_stamped_in_year_9999_is_clamped_to_its_receipt_and_does_not_pin_traits(
    processor, workspaces
):
    future = event("identify", "m1", T1, traits={"plan": "pinned"}) | {"timestamp": "9999-12-31T23:59:59Z"}
    later = event("identify", "m2", "2026-01-02T10:00:00.000Z", traits={"plan": "pro"})
    assert processor([future, later]) == {"batchItemFailures": []}
    profile = workspaces.read_profile(WS, "U", "user-1")
    assert profile.traits == {"plan": "pro"}
    assert profile.last_seen == "2026-01-02T10:00:00.000Z"


def test_a_year_1_timestamp_with_an_offset_is_refused_at_ingest(pipeline):
    messages = pipeline.send(
        [
            {
                "type": "track",
                "userId": "u",
                "event": "e",
                "timestamp": "0001-01-01T00:00:00+01:00",
                "receivedAt": T1,
            }
        ]
    )
    assert messages == []


def test_many_distinct_traits_keep_the_profile_bounded_and_history_and_counts_applying(
    processor, workspaces, aws
):
    identifies = [
        event("identify", f"i{n}", T1, traits={f"trait_{n}_{k}": "x" * 900 for k in range(40)})
        for n in range(10)
    ]
    tracks = [event("track", f"t{n}", T1, event="Clicked") for n in range(3)]
    assert processor(identifies + tracks) == {"batchItemFailures": []}
    profile = workspaces.read_profile(WS, "U", "user-1")
    assert len(profile.traits) == 100
    assert profile.counts == {"Clicked": 3}
    assert processor([event("track", "t9", T1, event="Clicked")]) == {"batchItemFailures": []}
    assert workspaces.read_profile(WS, "U", "user-1").counts == {"Clicked": 4}
    reasons = {r["reason"] for r in Pipeline(aws, workspaces).unapplied()}
    assert any("budget" in reason for reason in reasons)


def test_a_mapping_path_failing_on_a_record_applies_the_rest_and_logs_no_trait_value(
    processor, workspaces, capsys
):
    workspaces.set_mapping(WS, Mapping(channels={"email": "join(', ', email)"}))
    events = [
        event("identify", "m1", T1, traits={"email": "ada@example.com", "plan": "pro"}),
        event("identify", "m2", T1, user="user-2", traits={"email": ["a@x.io", "b@x.io"]}),
    ]
    assert processor(events) == {"batchItemFailures": []}
    assert workspaces.read_profile(WS, "U", "user-1").traits == {"email": "ada@example.com", "plan": "pro"}
    assert workspaces.read_profile(WS, "U", "user-2").channels == {"email": {"a@x.io, b@x.io": T1}}
    logged = capsys.readouterr()
    assert "ada@example.com" not in logged.out + logged.err
    assert '"failed_paths":1' in logged.out.replace(" ", "")


def test_a_workspace_id_with_a_hash_is_refused_where_it_is_chosen(workspaces):
    from segment_bridge.errors import InvalidWorkspaceId

    with pytest.raises(InvalidWorkspaceId):
        workspaces.create_workspace("Bob", workspace_id=f"{WS}#U#bob")
    with pytest.raises(InvalidWorkspaceId):
        workspaces.create_workspace("Long", workspace_id="w" * 65)


def test_a_history_item_dynamodb_refuses_parks_its_event_and_the_message_does_not_fail(
    processor, workspaces, aws
):
    """Defence in depth: if DynamoDB refuses one history item as invalid, only its event is parked."""
    events = [event("track", f"t{n}", T1, event="Clicked") for n in range(3)]

    with before_call(workspaces, ("BatchWriteItem",), refusing_history_item("t1")):
        assert processor(events) == {"batchItemFailures": []}
    assert len(workspaces.read_history(WS, "U", "user-1")) == 2
    assert [r["event"]["messageId"] for r in Pipeline(aws, workspaces).unapplied()] == ["t1"]


# --- over time: history that expires, and events that come back after it (issue 21) ------------------

POOL = [
    {"type": kind, "userId": user, "messageId": f"{user}-{kind}-{n}".ljust(n * 20 + 8, "z"), **named}
    for user in ("u1", "u2")
    for n in range(4)
    for kind, named in (("track", {"event": f"Did {n % 2}"}), ("page", {"name": "Home"}))
]
"""Events of two users, each messageId always the same event (so each is counted once, ever)."""


def counted_name(one: dict[str, Any]) -> str:
    return one["event"] if one["type"] == "track" else f"Viewed {one['name']} Page"


STEPS = st.one_of(
    st.tuples(st.just("send"), st.lists(st.sampled_from(range(len(POOL))), min_size=1, max_size=6)),
    st.tuples(st.just("sweep"), st.integers(0, 12)),
    st.tuples(st.just("redeliver"), st.integers(0, 10)),
    st.tuples(st.just("replay"), st.just(0)),
)


@fuzz(40)
@given(
    history_days=st.integers(1, 4),
    ages=st.lists(st.integers(0, 30), min_size=len(POOL), max_size=len(POOL)),
    steps=st.lists(STEPS, min_size=1, max_size=10),
)
def test_counts_stay_exact_and_no_message_fails_as_history_expires_and_events_come_back(
    pipeline, run_jobs, history_days, ages, steps
):
    """A TTL sweep (what DynamoDB does to items past `expires_at`; history_days drawn small, time moving
    on between steps) between deliveries, and the same events coming back after it (SQS redelivering a
    message, a re-drive of it, a `replay` of the archive, Segment sending a messageId again): every
    profile's counts stay exactly the number of distinct events of each name it was sent, no message
    ever fails, and `pending` stays within its cap."""
    from bridge_dev.events import RECEIVED_EPOCH_MS
    from segment_bridge.jobs.replay import plan_replay
    from segment_bridge.profiles import MAX_PENDING_BYTES
    from tests.functional.test_exactness import iso, ttl_sweep

    pipeline.forget_everything()
    pipeline.store.set_mapping(WS, Mapping(history_days=history_days))
    now = RECEIVED_EPOCH_MS / 1000  # when ingest receives them (API Gateway's timeEpoch in http_event)
    stamped = [
        one | {"timestamp": iso(datetime.fromtimestamp(now - age * 86_400, UTC))}
        for one, age in zip(POOL, ages, strict=True)
    ]
    sent: list[list[dict[str, Any]]] = []
    expected: dict[str, dict[str, set[str]]] = {}
    for kind, arg in steps:
        if kind == "send":
            messages = pipeline.send([stamped[n] for n in arg])
            sent.append(messages)
            for n in arg:
                names = expected.setdefault(stamped[n]["userId"], {})
                names.setdefault(counted_name(stamped[n]), set()).add(stamped[n]["messageId"])
            assert pipeline.process(messages) == []
        elif kind == "sweep":
            now += arg * 86_400
            ttl_sweep(pipeline.aws, now)
        elif kind == "redeliver" and sent:
            assert pipeline.process(sent[arg % len(sent)]) == []
        elif kind == "replay":
            day = datetime.fromtimestamp(RECEIVED_EPOCH_MS / 1000, UTC).date()
            plan_replay(WS, day, day, pipeline.store)  # a replay job, as `segment-bridge replay` plans
            run_jobs()  # its tasks queue the archived events in the workspace's replay group
            replayed = pipeline.taken()  # ... taken off the IngestQueue
            assert pipeline.process(replayed) == []
            run_jobs()
        for user in ("u1", "u2"):
            profile = pipeline.store.read_profile(WS, "U", user)
            want = {name: len(mids) for name, mids in expected.get(user, {}).items()}
            assert (dict(profile.counts) if profile else {}) == want, (kind, user)
            stored = pipeline.store.profiles.read_entities(WS, [f"U#{user}"]).get(f"U#{user}")
            if stored is not None:
                assert sum(len(m) + len(str(v)) + 1 for m, v in stored.pending.items()) <= MAX_PENDING_BYTES
