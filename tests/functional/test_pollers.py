"""The local stack's event source mappings follow the template's batching settings, as Lambda's do."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from bridge_dev.pollers import StreamPoller

SETTINGS = {"StartingPosition": "TRIM_HORIZON", "BatchSize": 3, "MaximumBatchingWindowInSeconds": 1}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def outbox_poller(
    aws: Any, clock: Clock, batches: list[list[str]], settings: dict[str, Any] = SETTINGS
) -> StreamPoller:
    def invoke(event: dict[str, Any], request_id: str) -> dict[str, Any]:
        batches.append([record["dynamodb"]["Keys"]["sk"]["S"] for record in event["Records"]])
        return {"batchItemFailures": []}

    return StreamPoller(invoke, aws.tables["OutboxTable"], settings, None, None, clock=clock)


def write(aws: Any, *sks: str) -> None:
    table = boto3.resource("dynamodb").Table(aws.tables["OutboxTable"])
    for sk in sks:
        table.put_item(Item={"pk": "WS#ws_demo", "sk": sk, "event": "Flow Completed", "userId": "u-1"})


def test_records_wait_for_the_batching_window_then_go_together(aws):
    clock, batches = Clock(), []
    poller = outbox_poller(aws, clock, batches)
    write(aws, "EVT#1", "EVT#2")

    assert poller.poll_once() == 0.2  # gathering: the next read in one idle interval
    clock.now += 0.9
    assert poller.poll_once() == pytest.approx(0.1)  # never waits past the window
    assert batches == []
    write(aws, "EVT#3")
    assert poller.poll_once() == 0.0  # a full batch goes at once
    assert batches == [["EVT#1", "EVT#2", "EVT#3"]]

    write(aws, "EVT#4")
    assert poller.poll_once() == 0.2
    clock.now += 0.95
    assert poller.poll_once() == pytest.approx(0.05)
    clock.now += 0.05
    assert poller.poll_once() == 0.0
    assert batches[1:] == [["EVT#4"]]


def test_without_a_batching_window_records_go_as_soon_as_they_are_read(aws):
    clock, batches = Clock(), []
    poller = outbox_poller(aws, clock, batches, {**SETTINGS, "MaximumBatchingWindowInSeconds": 0})
    write(aws, "EVT#1")
    assert poller.poll_once() == 0.0
    assert batches == [["EVT#1"]]
    assert poller.poll_once() == 0.2  # nothing new: idle


def test_a_noisy_message_group_is_served_after_the_quiet_ones_as_an_sqs_fair_queue_serves_it(aws):
    """SQS fair queues deliver a quiet tenant's messages first once another tenant has taken more than
    10% of the consumers' recent processing time: a live message queued behind a replay's is in the
    first batch, first; before the replay has been busy, the oldest group goes first."""
    from bridge_dev.pollers import SqsPoller

    sqs = boto3.client("sqs")
    url, arn = aws.queue_urls["IngestQueue"], aws.queue_arns["IngestQueue"]

    def send(group: str, body: str) -> None:
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group)

    poller = SqsPoller(lambda event, request_id: {"batchItemFailures": []}, url, arn, 2, None)
    try:
        for n in range(3):
            send("ws_demo/replay", f"replay-{n}")
        send("ws_demo", "live-0")
        assert [m["Body"] for m in poller._take_fair_batch()] == ["replay-0", "live-0"]  # nobody busy yet

        poller._shared.charge(["ws_demo/replay", "ws_demo/replay"], 20.0)  # the replay's invocation
        poller._shared.charge(["ws_demo"], 1.0)
        send("ws_demo", "live-1")
        assert [m["Body"] for m in poller._take_fair_batch()] == ["live-1", "replay-1"]
    finally:
        SqsPoller._received.pop(url, None)
