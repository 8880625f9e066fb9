"""Messages the processor has not finished for a reason of time are deferred, never failed (issue 13):
sent to the IngestQueue again as fresh messages and reported done, so waiting never spends a receive
and never reaches the IngestDLQ; only a deferral the queue refuses fails its message. On moto with the
template's queues (IngestQueue's redrive policy included), the ProcessorFunction fed as Lambda's SQS
event source feeds it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.exceptions import ClientError

from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from bridge_dev.runtime import LambdaContext, LocalFunction, lambda_sqs_event
from segment_bridge.envelope import pack
from segment_bridge.ingest.intake import serialise
from segment_bridge.privacy.deletion import LINKS_PER_CHUNK
from tests.conftest import SECONDS_LEFT, lambda_function
from tests.functional.conftest import event, seed_links
from tests.functional.helpers import (
    RunningOut,
    archived,
    aws_error,
    before_call,
    exactly_once,
    links_past_the_receive_count,
    messages_of_three_users,
    refusing_history_item,
    take,
)

T1, T2 = "2026-01-01T10:00:00.000Z", "2026-01-02T10:00:00.000Z"


def done(aws: Any, messages: list[dict[str, Any]], answer: dict[str, Any]) -> None:
    """What Lambda's event source mapping does after an invocation: delete what did not fail."""
    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    sqs = boto3.client("sqs")
    for message in messages:
        if message["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=aws.queue_urls["IngestQueue"], ReceiptHandle=message["ReceiptHandle"])


def dead_letters(aws: Any) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=aws.queue_urls["IngestDLQ"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


@contextmanager
def queue_refuses(store: Any) -> Iterator[None]:
    """The store's SQS client fails every SendMessage (an SQS outage, for the deferral only)."""
    client = store.clients.sqs

    def refuse(model: Any, **_: Any) -> Any:
        if model.name == "SendMessage":
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessage")
        return None

    client.meta.events.register("before-call.sqs", refuse, unique_id="refuse")
    try:
        yield
    finally:
        client.meta.events.unregister("before-call.sqs", unique_id="refuse")


def test_messages_the_budget_refuses_are_deferred_with_a_fresh_receive_count_and_applied_next_time(
    aws, workspaces
):
    function = lambda_function("ProcessorFunction")
    messages = messages_of_three_users()

    # Given an invocation whose time runs out after its first message
    answer = function.handler(lambda_sqs_event(aws.queue_arns["IngestQueue"], messages), RunningOut())

    # Then no message failed: the two it had no time for are on the queue again, as fresh messages of
    # their workspace's group, untouched
    assert answer["batchItemFailures"] == []
    deferred = take(aws)
    assert sorted(m["Body"] for m in deferred) == sorted(m["Body"] for m in messages[1:])
    assert {m["Attributes"]["MessageGroupId"] for m in deferred} == {WS}
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in deferred} == {"1"}
    assert workspaces.read_profile(WS, "U", "user-b") is None
    assert len(archived(aws)) == 1

    # When the next invocation receives them
    again = function.invoke(
        lambda_sqs_event(aws.queue_arns["IngestQueue"], deferred), seconds_left=SECONDS_LEFT
    )

    # Then they are applied, once, and nothing is left anywhere
    assert again["batchItemFailures"] == []
    done(aws, deferred, again)
    for user in ("user-a", "user-b", "user-c"):
        exactly_once(workspaces, user, {"Viewed": 3})
    assert len(archived(aws)) == 3
    assert take(aws) == []
    assert dead_letters(aws) == 0


def test_a_deferred_message_and_a_duplicate_delivery_of_its_original_apply_once(aws, workspaces):
    function = lambda_function("ProcessorFunction")
    messages = messages_of_three_users()
    function.handler(lambda_sqs_event(aws.queue_arns["IngestQueue"], messages), RunningOut())
    copies = take(aws)

    # When SQS delivers the originals again (their delete was lost) as well as the deferred copies
    originals = function.invoke(
        lambda_sqs_event(aws.queue_arns["IngestQueue"], messages[1:]), seconds_left=SECONDS_LEFT
    )
    deferred = function.invoke(
        lambda_sqs_event(aws.queue_arns["IngestQueue"], copies), seconds_left=SECONDS_LEFT
    )

    # Then each event is applied once, and each message archived once
    assert originals["batchItemFailures"] == deferred["batchItemFailures"] == []
    for user in ("user-a", "user-b", "user-c"):
        exactly_once(workspaces, user, {"Viewed": 3})
    assert len(archived(aws)) == 3


def test_the_first_message_of_an_invocation_is_always_started_so_a_slow_message_is_never_deferred_forever(
    aws, workspaces
):
    function = lambda_function("ProcessorFunction")
    function.module.budget.slowest_seconds = 10 * function.timeout_seconds  # no message "fits" any more
    messages = messages_of_three_users()

    answer = function.invoke(lambda_sqs_event(aws.queue_arns["IngestQueue"], messages))

    assert answer["batchItemFailures"] == []
    exactly_once(workspaces, "user-a", {"Viewed": 3})
    assert len(take(aws)) == 2  # the other two deferred


def test_a_deferral_the_queue_refuses_fails_the_message_as_an_aws_fault_does(aws, workspaces):
    function = lambda_function("ProcessorFunction")
    messages = messages_of_three_users()

    with queue_refuses(workspaces):
        answer = function.handler(lambda_sqs_event(aws.queue_arns["IngestQueue"], messages), RunningOut())

    assert [f["itemIdentifier"] for f in answer["batchItemFailures"]] == ["msg-user-b", "msg-user-c"]
    assert take(aws) == []
    exactly_once(workspaces, "user-a", {"Viewed": 3})


def run_queue(aws: Any, function: LocalFunction, context: type[LambdaContext] | None = None) -> int:
    """Lambda's SQS event source mapping, one invocation at a time (BatchSize as the template has it
    does not matter here), until the IngestQueue is empty; the number of invocations."""
    invocations = 0
    while messages := take(aws):
        invocations += 1
        assert invocations < 300
        answer = function.invoke(lambda_sqs_event(aws.queue_arns["IngestQueue"], messages))
        done(aws, messages, answer)
    return invocations


def test_a_delete_needing_more_receives_than_the_dlq_allows_completes_through_deferrals(
    aws, workspaces, monkeypatch
):
    """Each receive erases one chunk of 25 linked ids (the invocation's share of time is spent at once)
    and defers the message; maxReceiveCount + 2 receives, and no message fails. (A user with 3,000 links
    takes 121 receives the same way: that the receives outnumber maxReceiveCount is what is proved.)"""
    links = links_past_the_receive_count()
    seed_links(aws, "user-1", links, at=T1)
    body = pack(
        [
            serialise(e)
            for e in (
                event("track", "ta", T1, user=None, anonymousId=f"anon-{links - 1:04d}", event="Browsed"),
                event("delete", "d", T2),
                event("track", "n", T2, user="user-2", event="Neighbour"),
            )
        ],
        workspace_id=WS,
        request_id="req-delete",
        received_at=T2,
        max_bytes=262_144,
    )
    workspaces.enqueue(body, WS)
    function = lambda_function("ProcessorFunction")
    monkeypatch.setattr(LambdaContext, "get_remaining_time_in_millis", lambda self: 5_000)  # no share

    invocations = run_queue(aws, function)

    assert invocations == links // LINKS_PER_CHUNK + 1  # one chunk each, then the rest of the message
    assert dead_letters(aws) == 0
    assert workspaces.linked_ids(WS, "user-1") == []
    assert workspaces.read_history(WS, "A", f"anon-{links - 1:04d}") == []
    exactly_once(workspaces, "user-2", {"Neighbour": 1})
    assert len(archived(aws)) == 1  # each receive archives the same message under the same name


def test_a_profile_that_keeps_changing_defers_its_message_after_a_pause_and_it_applies_once(
    processor, aws, workspaces, monkeypatch
):
    """Writers of one hot profile outnumber WRITE_ATTEMPTS: contention, not a failure of AWS or of the
    message. The message is deferred with a delay (its writers spread out), never failed."""
    import segment_bridge.retry as processing

    monkeypatch.setattr(processing, "CONFLICT_PAUSE_SECONDS", 0.0)
    events = [event("track", f"h{n}", T1, event="Hot") for n in range(3)]

    def someone_else_wrote_first(operation: str, body: dict[str, Any]) -> Any:
        if body.get("Item", {}).get("sk", {}).get("S") == "PROFILE":
            return aws_error("ConditionalCheckFailedException")
        return None

    with before_call(workspaces, ("PutItem",), someone_else_wrote_first):
        assert processor(events, message_id="hot") == {"batchItemFailures": []}

    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=aws.queue_urls["IngestQueue"], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"  # back after a pause, not at once
    assert workspaces.read_profile(WS, "U", "user-1") is None

    assert processor(events, message_id="hot-again") == {"batchItemFailures": []}
    exactly_once(workspaces, "user-1", {"Hot": 3})
    assert dead_letters(aws) == 0


def delayed(aws: Any) -> str:
    return boto3.client("sqs").get_queue_attributes(
        QueueUrl=aws.queue_urls["IngestQueue"], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]["ApproximateNumberOfMessagesDelayed"]


def test_a_profile_that_keeps_changing_under_its_erase_defers_the_delete_and_it_applies_once(
    processor, aws, workspaces, monkeypatch
):
    """A delete's erase loses every conditional write of the profile (other invocations keep writing the
    user): deferred after a pause like any hot profile, never failed (no receive spent, no DLQ)."""
    import segment_bridge.retry as retry

    monkeypatch.setattr(retry, "CONFLICT_PAUSE_SECONDS", 0.0)
    processor([event("track", "t1", T1, event="Old")], message_id="old")

    def someone_else_wrote_first(operation: str, body: dict[str, Any]) -> Any:
        if body.get("Key", {}).get("sk", {}).get("S") == "PROFILE":
            return aws_error("ConditionalCheckFailedException")
        return None

    with before_call(workspaces, ("DeleteItem",), someone_else_wrote_first):
        assert processor([event("delete", "d", T2)], message_id="del") == {"batchItemFailures": []}
    assert delayed(aws) == "1"  # back after a pause, not failed
    assert workspaces.read_profile(WS, "U", "user-1") is not None  # the erase did not finish

    assert processor([event("delete", "d", T2)], message_id="del-again") == {"batchItemFailures": []}
    assert workspaces.read_profile(WS, "U", "user-1") is None
    assert workspaces.read_history(WS, "U", "user-1") == []
    assert dead_letters(aws) == 0


def test_a_profile_that_keeps_changing_while_a_refused_count_is_taken_back_defers_its_message(
    processor, aws, workspaces, monkeypatch
):
    """DynamoDB refuses one history item; taking its count back loses every conditional write of the
    profile (other invocations keep writing the user): deferred after a pause, never failed; the message
    applies once when it comes back."""
    import segment_bridge.retry as retry

    monkeypatch.setattr(retry, "CONFLICT_PAUSE_SECONDS", 0.0)
    events = [event("track", "t1", T1, event="Hot"), event("track", "t2", T1, event="Hot")]
    profile_writes: list[str] = []

    def refuse_t2_then_lose_every_later_profile_write(operation: str, body: dict[str, Any]) -> Any:
        if operation == "BatchWriteItem":
            return refusing_history_item("t2")(operation, body)
        if body.get("Item", {}).get("sk", {}).get("S") == "PROFILE":
            profile_writes.append(operation)
            if len(profile_writes) > 1:  # the first is step 4's, which counted both
                return aws_error("ConditionalCheckFailedException")
        return None

    with before_call(
        workspaces, ("PutItem", "BatchWriteItem"), refuse_t2_then_lose_every_later_profile_write
    ):
        assert processor(events, message_id="hot") == {"batchItemFailures": []}
    assert delayed(aws) == "1"  # back after a pause, not failed
    assert len(profile_writes) > 2  # the take-back was tried again, not given up at once

    assert processor(events, message_id="hot-again") == {"batchItemFailures": []}
    exactly_once(workspaces, "user-1", {"Hot": 2})
    assert dead_letters(aws) == 0


def test_a_deferred_replay_message_goes_back_into_its_replay_group(aws, workspaces):
    """A replay job's messages the budget refuses are deferred into the workspace's replay group
    (`<ws>/replay`), not its live group: the live traffic keeps its place in the fair queue."""
    function = lambda_function("ProcessorFunction")
    messages = messages_of_three_users()
    for message in messages:
        envelope = json.loads(message["Body"])
        message["Body"] = json.dumps(envelope | {"job": "20260101T000000-replay-00000000"})

    answer = function.handler(lambda_sqs_event(aws.queue_arns["IngestQueue"], messages), RunningOut())

    assert answer["batchItemFailures"] == []
    deferred = take(aws)
    assert sorted(m["Body"] for m in deferred) == sorted(m["Body"] for m in messages[1:])
    assert {m["Attributes"]["MessageGroupId"] for m in deferred} == {f"{WS}/replay"}
    assert archived(aws) == []  # a replay's message is archived already: not again
