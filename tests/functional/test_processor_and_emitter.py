"""ProcessorFunction and EmitterFunction on moto, fed as their event source mappings would feed them."""

from __future__ import annotations

import json
from datetime import date

import boto3

from bridge_dev.events import DEMO_WORKSPACE_ID
from tests.conftest import load_handler
from tests.functional.conftest import FakeContext, sample, sqs_lambda_event


def receive_all(queue_url: str) -> list[dict]:
    sqs = boto3.client("sqs")
    messages = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        messages.extend(batch)
    return messages


def test_queued_events_are_archived_and_a_malformed_message_alone_fails(ingest, aws, workspaces):
    assert ingest(sample("ingest_webhook_batch.json")).status == 200
    queue_url, queue_arn = aws.queue_urls["IngestQueue"], aws.queue_arns["IngestQueue"]
    boto3.client("sqs").send_message(QueueUrl=queue_url, MessageBody='{"not": "an envelope"}')
    messages = receive_all(queue_url)
    assert len(messages) == 2

    response = load_handler("processor").lambda_handler(sqs_lambda_event(queue_arn, messages), FakeContext())

    bad = next(m["MessageId"] for m in messages if "not" in m["Body"])
    assert response == {"batchItemFailures": [{"itemIdentifier": bad}]}
    archived = list(workspaces.list_archived(DEMO_WORKSPACE_ID, date(2026, 1, 1)))  # the day we received them
    sent = json.loads(sample("ingest_webhook_batch.json")["body"])
    assert [e["messageId"] for e in archived] == [e["messageId"] for e in sent]


def test_redelivered_message_is_archived_once(ingest, aws, workspaces):
    ingest(sample("ingest_webhook_single.json"))
    messages = receive_all(aws.queue_urls["IngestQueue"])
    event = sqs_lambda_event(aws.queue_arns["IngestQueue"], messages)
    processor = load_handler("processor")
    processor.lambda_handler(event, FakeContext())
    processor.lambda_handler(event, FakeContext())
    assert len(list(workspaces.list_archived(DEMO_WORKSPACE_ID, date(2026, 1, 1)))) == 1
