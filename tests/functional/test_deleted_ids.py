"""The workspace's index of deleted ids (deleted_ids.py; docs/privacy.md): the processor reads the
tombstones of the keys the index may hold only, and no order of a delete and a processor lets an event
the delete covers stay, whichever side of the index read the delete's writes fall on."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from tests.functional.conftest import event
from tests.functional.helpers import aws_error, before_call

T1, T2, T3 = "2026-01-01T10:00:00.000Z", "2026-01-02T10:00:00.000Z", "2026-01-03T10:00:00.000Z"


def tombstones_read(store: Any) -> tuple[list[str], Any]:
    """The tombstone keys (pk) the store's BatchGetItem calls ask for, and a before_call hook filling it."""
    asked: list[str] = []

    def note(operation: str, body: dict[str, Any]) -> None:
        asked.extend(
            key["pk"]["S"].split("#", 2)[2]
            for request in body["RequestItems"].values()
            for key in request["Keys"]
            if key["sk"]["S"] == "DELETED"
        )

    return asked, note


def names(store: Any, user: str) -> list[str]:
    return sorted(h["name"] for h in store.read_history(WS, "U", user))


def test_after_a_delete_only_the_deleted_users_tombstones_are_read(processor, workspaces):
    processor([event("identify", "i1", T1, anonymousId="anon-1", traits={"plan": "free"})])
    processor([event("delete", "d", T2)], message_id="del")
    asked, note = tombstones_read(workspaces)
    with before_call(workspaces, ("BatchGetItem",), note):
        processor(
            [
                event("track", "late", T1, event="Late"),  # at or before the delete: not applied
                event("track", "new", T3, event="Came Back"),
                *[event("track", f"o{n}", T1, user=f"other-{n}", event="Viewed") for n in range(20)],
            ],
            message_id="after",
        )
    assert set(asked) == {"U#user-1"}  # the 20 others were never deleted: no read for them
    assert names(workspaces, "user-1") == ["Came Back"]
    assert all(names(workspaces, f"other-{n}") == ["Viewed"] for n in range(20))


def test_a_delete_indexed_before_a_writers_read_and_tombstoned_after_it_leaves_nothing_it_covers(
    processor, workspaces
):
    """The index already holds user-1 when the processor reads it, but the tombstone comes only after
    the processor read the entities: step 6 reads the tombstones of what the index held, and erases."""
    from segment_bridge.mapping import Mapping
    from segment_bridge.privacy.deletion import index_before_tombstones
    from segment_bridge.processor.unit import apply_batch

    steps: list[str] = []

    def delete_around_the_read(operation: str, body: dict[str, Any]) -> None:
        if operation == "GetItem" and body["Key"]["pk"]["S"].endswith("#DELETED_IDS") and not steps:
            steps.append("indexing")  # (its own calls come through here too)
            index_before_tombstones(WS, ["U#user-1"], workspaces.profiles)
            steps[:] = ["indexed"]
        elif operation in ("PutItem", "BatchWriteItem") and steps == ["indexed"]:
            steps.append("deleted")
            apply_batch(WS, [event("delete", "d", T2)], Mapping(), workspaces)

    late = [
        event("identify", "i1", T1, traits={"email": "ada@example.com"}),
        event("track", "t1", T1, event="Signed Up"),
        event("track", "t3", T3, event="Came Back"),
    ]
    with before_call(workspaces, ("GetItem", "PutItem", "BatchWriteItem"), delete_around_the_read):
        assert processor(late, message_id="racing") == {"batchItemFailures": []}
    assert steps == ["indexed", "deleted"]
    profile = workspaces.read_profile(WS, "U", "user-1")
    assert (profile.traits, profile.counts) == ({}, {"Came Back": 1})
    assert names(workspaces, "user-1") == ["Came Back"]


def test_a_workspace_without_an_index_reads_every_tombstone_and_deletes_stay_exact(processor, workspaces):
    """A workspace created before the index (or whose index item is gone) is read as unknown."""
    workspaces.clients.dynamodb.delete_item(
        TableName=workspaces.settings.profiles_table,
        Key={"pk": {"S": f"WS#{WS}#DELETED_IDS"}, "sk": {"S": "INDEX"}},
    )
    processor([event("track", "t1", T1, event="Old")])
    processor([event("delete", "d", T2)], message_id="del")
    assert workspaces.profiles.deleted_ids(WS).known is False  # a delete does not start one
    asked, note = tombstones_read(workspaces)
    with before_call(workspaces, ("BatchGetItem",), note):
        processor(
            [event("track", "late", T1, event="Late"), event("track", "o", T1, user="other", event="Late")],
            message_id="after",
        )
    assert {"U#user-1", "U#other"} <= set(asked)
    assert names(workspaces, "user-1") == []
    assert names(workspaces, "other") == ["Late"]


def test_a_delete_stopped_between_its_index_and_its_tombstone_is_finished_by_its_redelivery(
    processor, workspaces
):
    """Indexed, not yet tombstoned: a wasted read for the processor, nothing applied wrongly; the
    redelivered delete finishes."""

    def no_tombstone(operation: str, body: dict[str, Any]) -> Any:
        if body.get("Item", {}).get("sk", {}).get("S") == "DELETED":
            return aws_error("InternalServerError")
        return None

    processor([event("track", "t1", T1, event="Old")])
    with before_call(workspaces, ("PutItem",), no_tombstone), pytest.raises(BatchProcessingError):
        processor([event("delete", "d", T2)], message_id="del")  # its only message failed: retried
    assert workspaces.profiles.deleted_ids(WS).may_be_deleted("U#user-1")
    processor([event("track", "t3", T3, event="Came Back")], message_id="meanwhile")
    assert names(workspaces, "user-1") == ["Came Back", "Old"]

    assert processor([event("delete", "d", T2)], message_id="del") == {"batchItemFailures": []}
    assert names(workspaces, "user-1") == ["Came Back"]


def test_concurrent_deletes_each_keep_their_keys_in_the_index(processor, workspaces):
    """Another delete writes the index between this delete's read of it and its write: the conditional
    write loses, is tried again, and both deletes' keys are held."""
    from segment_bridge.privacy.deletion import index_before_tombstones

    raced: list[str] = []

    def other_delete_first(operation: str, body: dict[str, Any]) -> None:
        if body.get("Item", {}).get("sk", {}).get("S") == "INDEX" and not raced:
            raced.append(operation)
            index_before_tombstones(WS, ["U#someone-else"], workspaces.profiles)

    with before_call(workspaces, ("PutItem",), other_delete_first):
        assert processor([event("delete", "d", T2)], message_id="del") == {"batchItemFailures": []}
    index = workspaces.profiles.deleted_ids(WS)
    assert raced
    assert index.may_be_deleted("U#user-1")
    assert index.may_be_deleted("U#someone-else")
    assert not index.may_be_deleted("U#never-deleted")


def test_an_index_past_its_limit_becomes_unknown_and_every_tombstone_is_read(
    processor, workspaces, monkeypatch: pytest.MonkeyPatch
):
    import segment_bridge.deleted_ids

    monkeypatch.setattr(segment_bridge.deleted_ids, "MAX_FINGERPRINTS", 2)
    for n in range(3):
        processor([event("delete", f"d{n}", T2, user=f"gone-{n}")], message_id=f"del-{n}")
    assert workspaces.profiles.deleted_ids(WS).known is False
    asked, note = tombstones_read(workspaces)
    with before_call(workspaces, ("BatchGetItem",), note):
        processor(
            [event("track", f"t{n}", T1, user=f"gone-{n}", event="Late") for n in range(3)], message_id="late"
        )
    assert {f"U#gone-{n}" for n in range(3)} <= set(asked)
    assert all(names(workspaces, f"gone-{n}") == [] for n in range(3))


def test_deletes_that_keep_changing_the_index_defer_their_message_and_it_applies_once(
    processor, aws, workspaces, monkeypatch: pytest.MonkeyPatch
):
    """Concurrent deletes outnumber INDEX_ATTEMPTS: contention, not a failure; deferred after a pause."""
    import boto3

    import segment_bridge.privacy.deletion as deletion

    monkeypatch.setattr(deletion, "INDEX_PAUSE_SECONDS", 0.0)
    processor([event("track", "t1", T1, event="Old")])

    def another_delete_wrote_first(operation: str, body: dict[str, Any]) -> Any:
        if body.get("Item", {}).get("sk", {}).get("S") == "INDEX":
            return aws_error("ConditionalCheckFailedException")
        return None

    with before_call(workspaces, ("PutItem",), another_delete_wrote_first):
        assert processor([event("delete", "d", T2)], message_id="del") == {"batchItemFailures": []}
    delayed = boto3.client("sqs").get_queue_attributes(
        QueueUrl=aws.queue_urls["IngestQueue"], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]["ApproximateNumberOfMessagesDelayed"]
    assert delayed == "1"  # back after a pause, not failed
    assert names(workspaces, "user-1") == ["Old"]  # nothing tombstoned before its key was indexed

    assert processor([event("delete", "d", T2)], message_id="del-again") == {"batchItemFailures": []}
    assert names(workspaces, "user-1") == []
    assert workspaces.profiles.deleted_ids(WS).may_be_deleted("U#user-1")
