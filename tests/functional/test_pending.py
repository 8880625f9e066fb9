"""The profile's `pending` list (processing.py's write-ahead log of counted history records) converges
and stays bounded (issue 12): a history item DynamoDB refuses leaves it, with its event parked and its
count taken back; one message with thousands of events of one user never lists more than MAX_PENDING_BYTES."""

from __future__ import annotations

from typing import Any

from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from segment_bridge.profiles import MAX_PENDING_BYTES, PENDING_ROUND_BYTES, pending_entry_bytes
from tests.functional.conftest import event
from tests.functional.helpers import Pipeline, before_call, refusing_history_item

T1 = "2026-01-01T10:00:00.000Z"


def pending(store: Any) -> dict[str, str]:
    return dict(store.profiles.read_entities(WS, ["U#user-1"])["U#user-1"].pending)


def test_a_history_item_dynamodb_refuses_leaves_pending_with_its_event_parked_and_its_count_taken_back(
    processor, workspaces, aws
):
    events = [event("track", f"t{n}", T1, event="Clicked") for n in range(3)]

    with before_call(workspaces, ("BatchWriteItem",), refusing_history_item("t1")):
        assert processor(events) == {"batchItemFailures": []}
        assert "t1" not in pending(workspaces)
        assert workspaces.read_profile(WS, "U", "user-1").counts == {"Clicked": 2}
        assert processor(events, message_id="again") == {"batchItemFailures": []}  # a redelivery

    assert pending(workspaces) == {}  # the redelivery saw t0's and t2's items: they left too
    assert workspaces.read_profile(WS, "U", "user-1").counts == {"Clicked": 2}
    assert len(workspaces.read_history(WS, "U", "user-1")) == 2
    # parked once: the redelivery of the same message keeps its unapplied events under the same name
    assert [r["event"]["messageId"] for r in Pipeline(aws, workspaces).unapplied()] == ["t1"]


def test_a_message_with_thousands_of_events_of_one_user_keeps_pending_within_its_cap(processor, workspaces):
    listed: list[int] = []

    def measure(operation: str, body: dict[str, Any]) -> None:
        if body["Item"]["sk"]["S"] == "PROFILE":
            entries = body["Item"].get("pending", {}).get("M", {}).items()
            listed.append(sum(pending_entry_bytes(mid, name["S"]) for mid, name in entries))

    events = [event("track", f"t{n:04}".ljust(100, "x"), T1, event=f"Clicked {n % 3}") for n in range(1500)]
    with before_call(workspaces, ("PutItem",), measure):
        assert processor(events) == {"batchItemFailures": []}

    assert len(listed) > 10  # in rounds
    assert max(listed) <= PENDING_ROUND_BYTES <= MAX_PENDING_BYTES
    assert 0 < len(pending(workspaces)) < 1500 // 10  # the last round's: they leave with the next write
    assert workspaces.read_profile(WS, "U", "user-1").counts == {f"Clicked {n}": 500 for n in range(3)}
    assert len(workspaces.read_history(WS, "U", "user-1")) == 1500
