"""ProcessorFunction on moto against its clock: a message it has no time left for goes back untouched."""

from __future__ import annotations

import boto3

from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from bridge_dev.runtime import LambdaContext, lambda_sqs_event
from segment_bridge.envelope import pack
from segment_bridge.ingest.intake import serialise
from tests.conftest import SECONDS_LEFT, lambda_function
from tests.functional.conftest import event

T1 = "2026-01-01T10:00:00.000Z"


class RunningOut(LambdaContext):
    """An invocation whose time runs out after its first message: plenty left at the first look, then
    less than any message needs."""

    def __init__(self) -> None:
        super().__init__("ProcessorFunction", 1769, 60, "req-running-out")
        self.looks = 0

    def get_remaining_time_in_millis(self) -> int:
        self.looks += 1
        return 60_000 if self.looks == 1 else 100


def messages_of_three_users() -> list[dict[str, str]]:
    """Three queue messages, one user each, as intake packs them."""
    return [
        {
            "MessageId": f"msg-{user}",
            "ReceiptHandle": f"rh-{user}",
            "Body": pack(
                [serialise(event("track", f"{user}-{n}", T1, user=user, event="Viewed")) for n in range(3)],
                workspace_id=WS,
                request_id=f"req-{user}",
                received_at=T1,
                max_bytes=262_144,
            )[0],
            "MD5OfBody": "x",
        }
        for user in ("user-a", "user-b", "user-c")
    ]


def archived(aws) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=aws.buckets["ArchiveBucket"], Prefix="raw/")
    return [obj["Key"] for obj in listed.get("Contents", [])]


def test_messages_the_invocation_has_no_time_for_are_not_touched_and_apply_once_when_received_again(
    aws, workspaces
):
    function = lambda_function("ProcessorFunction")
    messages = messages_of_three_users()
    queue = aws.queue_arns["IngestQueue"]

    # Given an invocation whose time runs out after its first message
    answer = function.handler(lambda_sqs_event(queue, messages), RunningOut())

    # Then the other two are deferred (tests/functional/test_deferral.py: back on the queue, not failed),
    # and nothing of them was read into the tables or archive
    assert answer["batchItemFailures"] == []
    assert workspaces.read_profile(WS, "U", "user-a").counts == {"Viewed": 3}
    assert workspaces.read_profile(WS, "U", "user-b") is None
    assert workspaces.read_profile(WS, "U", "user-c") is None
    assert len(archived(aws)) == 1

    # When they are received again by an invocation with time
    again = function.invoke(lambda_sqs_event(queue, messages[1:]), seconds_left=SECONDS_LEFT)

    # Then they are applied, once
    assert again["batchItemFailures"] == []
    for user in ("user-a", "user-b", "user-c"):
        assert workspaces.read_profile(WS, "U", user).counts == {"Viewed": 3}
        assert len(workspaces.read_history(WS, "U", user)) == 3
    assert len(archived(aws)) == 3
