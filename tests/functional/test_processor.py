"""ProcessorFunction on moto: the documented state, exact under redelivery, late and reordered events."""

from __future__ import annotations

import json
from datetime import date

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from bridge_dev.runtime import lambda_sqs_event
from segment_bridge.mapping import Mapping
from tests.conftest import lambda_function
from tests.functional.conftest import event, sample
from tests.functional.helpers import receive_all

T1, T2, T3 = "2026-01-01T10:00:00.000Z", "2026-01-02T10:00:00.000Z", "2026-01-03T10:00:00.000Z"


def test_ingested_webhook_batch_becomes_the_documented_state(ingest, aws, workspaces):
    assert ingest(sample("ingest_webhook_batch.json")).status == 200
    messages = receive_all(aws.queue_urls["IngestQueue"])
    response = lambda_function("ProcessorFunction").invoke(
        lambda_sqs_event(aws.queue_arns["IngestQueue"], messages)
    )
    assert response == {"batchItemFailures": []}

    user = workspaces.read_profile(WS, "U", "user-42")
    assert user.traits == {"email": "ada@example.com", "plan": "premium", "language": "en"}
    assert user.channels == {"email": {"ada@example.com": "2025-12-31T23:59:01.000Z"}}
    assert user.preferences == {"language": "en"}
    assert user.groups == {"org-9": "2025-12-31T23:59:03.000Z"}
    assert user.counts == {"Signed Up": 1, "Viewed Pricing Page": 1}
    assert (user.first_seen, user.last_seen) == ("2025-12-31T23:59:01.000Z", "2025-12-31T23:59:04.000Z")
    assert [h["name"] for h in workspaces.read_history(WS, "U", "user-42")] == [
        "Signed Up",
        "Viewed Pricing Page",
    ]
    assert workspaces.read_profile(WS, "G", "org-9").traits == {"name": "Acme", "employees": 120}
    assert workspaces.group_members(WS, "org-9") == ["U#user-42"]
    assert workspaces.linked_ids(WS, "user-42") == ["anon-7c1"]


def test_a_redelivered_message_changes_nothing(processor, workspaces):
    events = [event("track", f"m{n}", T1, event="Signed Up") for n in range(3)]
    events.append(event("identify", "m9", T1, traits={"plan": "pro"}))
    processor(events)
    before = workspaces.read_profile(WS, "U", "user-1")
    processor(events)
    processor(events[1:2] + events[:1])
    after = workspaces.read_profile(WS, "U", "user-1")
    assert after.counts == {"Signed Up": 3}
    assert after == before
    assert len(workspaces.read_history(WS, "U", "user-1")) == 3


def test_an_older_identify_arriving_late_only_fills_traits_the_newer_one_lacked(processor, workspaces):
    processor([event("identify", "new", T2, traits={"plan": "premium"})])
    processor([event("identify", "old", T1, traits={"plan": "free", "company": "Acme"})])
    assert workspaces.read_profile(WS, "U", "user-1").traits == {"plan": "premium", "company": "Acme"}


def test_a_changed_email_is_appended_never_overwritten(processor, workspaces):
    processor([event("identify", "a", T1, traits={"email": "old@example.com"})])
    processor([event("identify", "b", T2, traits={"email": "new@example.com"})])
    channels = workspaces.read_profile(WS, "U", "user-1").channels
    assert channels == {"email": {"old@example.com": T1, "new@example.com": T2}}


def test_an_invalid_language_is_ignored_and_counted(processor, workspaces, caplog):
    caplog.set_level("INFO")
    processor(
        [
            event("identify", "a", T1, traits={"language": "de"}),
            event("identify", "b", T2, traits={"language": "klingon"}),
        ]
    )
    assert workspaces.read_profile(WS, "U", "user-1").preferences == {"language": "de"}
    figures = [r.__dict__ for r in caplog.records if r.getMessage() == "message applied"]
    assert figures[-1]["ignored_preferences"] == 1


def test_the_workspace_mapping_decides_names_filters_channels_and_version(processor, workspaces):
    stored = workspaces.set_mapping(
        WS,
        Mapping(
            event_prefix="segment : ",
            exclude_events={"Heartbeat"},
            channels={"email": "contact.email"},
            event_types={"identify", "track"},
        ),
    )
    assert stored.version == 1
    processor(
        [
            event("track", "t1", T1, event="Signed Up"),
            event("track", "t2", T1, event="Heartbeat"),
            event("page", "p1", T1, name="Pricing"),
            event("identify", "i1", T1, traits={"contact": {"email": "c@x.io"}, "email": "ignored@x.io"}),
        ]
    )
    profile = workspaces.read_profile(WS, "U", "user-1")
    assert profile.counts == {"segment : Signed Up": 1}
    assert profile.channels == {"email": {"c@x.io": T1}}
    history = workspaces.read_history(WS, "U", "user-1")
    assert [(h["name"], h["mapping_version"]) for h in history] == [("segment : Signed Up", 1)]
    item = boto3.client("dynamodb").get_item(
        TableName=workspaces.settings.profiles_table,
        Key={"pk": {"S": f"WS#{WS}#U#user-1"}, "sk": {"S": "PROFILE"}},
    )["Item"]
    assert item["mapping_version"] == {"N": "1"}


def test_a_mapping_change_is_a_new_whole_version(workspaces):
    first = workspaces.set_mapping(WS, Mapping(event_prefix="a : "))
    second = workspaces.set_mapping(WS, Mapping(channels={"email": "mail"}))
    current = workspaces.get_mapping(WS)
    assert (first.version, second.version, current.version) == (1, 2, 2)
    assert current.event_prefix == ""  # the second version replaced the first whole
    assert current.channels == {"email": "mail"}


def test_alias_links_an_anonymous_history_to_the_known_user(processor, workspaces):
    processor([event("track", "a1", T1, user=None, anonymousId="anon-1", event="Viewed Pricing")])
    processor([event("alias", "al", T2, previousId="anon-1")])
    assert workspaces.linked_ids(WS, "user-1") == ["anon-1"]
    linked = workspaces.linked_ids(WS, "user-1")[0]
    assert [h["name"] for h in workspaces.read_history(WS, "A", linked)] == ["Viewed Pricing"]


def test_delete_removes_the_user_everywhere_and_older_late_events_stay_out(processor, workspaces):
    processor(
        [
            event("identify", "i", T1, anonymousId="anon-9", traits={"email": "gone@example.com"}),
            event("group", "g", T1, groupId="org-1", traits={"name": "Org"}),
            event("track", "t", T1, event="Signed Up"),
            event("track", "ta", T1, user=None, anonymousId="anon-9", event="Browsed"),
        ]
    )
    processor([event("delete", "d", T2)])
    assert workspaces.read_profile(WS, "U", "user-1") is None
    assert workspaces.read_history(WS, "U", "user-1") == []
    assert workspaces.read_history(WS, "A", "anon-9") == []
    assert workspaces.linked_ids(WS, "user-1") == []
    assert workspaces.group_members(WS, "org-1") == []
    assert workspaces.read_profile(WS, "G", "org-1") is not None  # the organisation is not the user's data

    processor([event("track", "late", T1, event="Signed Up")], message_id="late")
    assert workspaces.read_profile(WS, "U", "user-1") is None
    (kept,) = workspaces.list_unapplied(WS, date(2026, 1, 1))
    assert kept["event"]["messageId"] == "late"
    assert "deleted" in kept["reason"]

    processor([event("track", "new", T3, event="Came Back")])
    assert workspaces.read_profile(WS, "U", "user-1").counts == {"Came Back": 1}


def test_one_message_of_many_users_costs_one_read_and_about_one_write_per_user(processor, workspaces):
    calls = []
    client = workspaces.clients.dynamodb
    keys_read = []
    written = ("transact_write_items", "put_item", "update_item", "batch_write_item")
    for name in ("batch_get_item", "get_item", *written):
        real = getattr(client, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            if _name != "get_item" or kwargs["Key"]["pk"]["S"].endswith("#DELETED_IDS"):
                calls.append(_name)  # (not the mapping's read: its cache's, once a minute)
            if _name == "batch_get_item":
                keys_read.extend(k["sk"]["S"] for r in kwargs["RequestItems"].values() for k in r["Keys"])
            return _real(*args, **kwargs)

        setattr(client, name, counted)
    events = [
        event("track", f"u{u}-m{n}", T1, user=f"user-{u}", event="Viewed")
        for u in range(5)
        for n in range(20)
    ]
    events += [event("identify", f"u{u}-id", T1, user=f"user-{u}", traits={"plan": "pro"}) for u in range(5)]
    processor(events)
    # the workspace's index of deleted ids (before the entities, and again after the writes: no delete
    # came in meanwhile), the profiles, which history already exists and which was counted (a history
    # item and a counted marker per event, docs/exactness.md: 200 keys, 100 a call); no tombstone,
    # since the index says nobody here was deleted
    assert calls.count("get_item") == 2
    assert calls.count("batch_get_item") == 3
    assert "DELETED" not in keys_read
    assert keys_read.count("PROFILE") == 5
    assert calls.count("put_item") == 5  # one profile write per user, not one per event
    assert calls.count("batch_write_item") == 8  # 100 history items and 100 markers, 25 per call
    assert calls.count("update_item") == 1  # the workspace's daily counts: one write per message
    assert len(calls) == 19
    assert all(workspaces.read_profile(WS, "U", f"user-{u}").counts == {"Viewed": 20} for u in range(5))


def test_more_history_than_one_transaction_holds_is_counted_exactly(processor, workspaces):
    events = [event("track", f"m{n:03d}", T1, event="Clicked") for n in range(250)]
    processor(events)
    processor(events[100:])
    assert workspaces.read_profile(WS, "U", "user-1").counts == {"Clicked": 250}


def test_a_poisoned_message_reaches_the_dead_letter_queue_after_the_receive_count(aws):
    from bridge_dev.template import load_template

    sqs = boto3.client("sqs")
    queue = aws.queue_urls["IngestQueue"]
    sqs.send_message(QueueUrl=queue, MessageBody="not an envelope")
    processor = lambda_function("ProcessorFunction")
    max_receives = load_template()["Resources"]["IngestQueue"]["Properties"]["RedrivePolicy"][
        "maxReceiveCount"
    ]
    for _ in range(max_receives):
        (message,) = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0)["Messages"]
        # Every record failed: Powertools fails the invocation, so Lambda returns the whole batch.
        with pytest.raises(BatchProcessingError):
            processor.invoke(lambda_sqs_event(aws.queue_arns["IngestQueue"], [message]))
    assert sqs.receive_message(QueueUrl=queue).get("Messages", []) == []
    (dead,) = receive_all(aws.queue_urls["IngestDLQ"])
    assert dead["Body"] == "not an envelope"


@pytest.mark.parametrize("name", ["ingest_sdk_batch_basic.json", "ingest_sdk_batch_gzip_writekey.json"])
def test_sdk_samples_land_as_profiles(ingest, aws, workspaces, name):
    assert ingest(sample(name)).status == 200
    messages = receive_all(aws.queue_urls["IngestQueue"])
    lambda_function("ProcessorFunction").invoke(lambda_sqs_event(aws.queue_arns["IngestQueue"], messages))
    profile = workspaces.read_profile(WS, "U", "user-7")
    assert profile.traits == {"email": "grace@example.com"}
    assert profile.counts == {"Report Exported": 1}
    assert json.dumps(profile.channels)


def test_a_crash_between_profile_and_history_writes_counts_once_on_redelivery(processor, workspaces):
    from segment_bridge.errors import ServiceUnavailable

    events = [event("track", f"m{n}", T1, event="Signed Up") for n in range(4)]
    real = workspaces.profiles.record

    def crash(*args, **kwargs):
        raise ServiceUnavailable("the process died here")

    workspaces.profiles.record = crash
    with pytest.raises(BatchProcessingError):
        processor(events)
    assert workspaces.read_profile(WS, "U", "user-1").counts == {"Signed Up": 4}  # counted, history pending
    assert workspaces.read_history(WS, "U", "user-1") == []

    workspaces.profiles.record = real
    assert processor(events) == {"batchItemFailures": []}  # the queue redelivers the message
    assert workspaces.read_profile(WS, "U", "user-1").counts == {"Signed Up": 4}
    assert len(workspaces.read_history(WS, "U", "user-1")) == 4
    processor([event("track", "m9", T2, event="Signed Up")])
    item = boto3.client("dynamodb").get_item(
        TableName=workspaces.settings.profiles_table,
        Key={"pk": {"S": f"WS#{WS}#U#user-1"}, "sk": {"S": "PROFILE"}},
    )["Item"]
    assert set(item["pending"]["M"]) == {"m9"}  # confirmed entries are dropped on the next write
