"""ProcessorFunction and EmitterFunction on moto, fed as their event source mappings would feed them."""

from __future__ import annotations

import json
from datetime import date

import boto3

from bridge_dev.events import DEMO_WORKSPACE_ID
from bridge_dev.runtime import lambda_sqs_event
from tests.conftest import lambda_function
from tests.functional.conftest import sample
from tests.functional.helpers import receive_all


def test_queued_events_are_archived_and_a_malformed_message_alone_fails(ingest, aws, workspaces):
    assert ingest(sample("ingest_webhook_batch.json")).status == 200
    queue_url, queue_arn = aws.queue_urls["IngestQueue"], aws.queue_arns["IngestQueue"]
    boto3.client("sqs").send_message(QueueUrl=queue_url, MessageBody='{"not": "an envelope"}')
    messages = receive_all(queue_url)
    assert len(messages) == 2

    response = lambda_function("ProcessorFunction").invoke(lambda_sqs_event(queue_arn, messages))

    bad = next(m["MessageId"] for m in messages if "not" in m["Body"])
    assert response == {"batchItemFailures": [{"itemIdentifier": bad}]}
    archived = list(workspaces.list_archived(DEMO_WORKSPACE_ID, date(2026, 1, 1)))  # the day we received them
    sent = json.loads(sample("ingest_webhook_batch.json")["body"])
    assert [e["messageId"] for e in archived] == [e["messageId"] for e in sent]


def test_redelivered_message_is_archived_once(ingest, aws, workspaces):
    ingest(sample("ingest_webhook_single.json"))
    messages = receive_all(aws.queue_urls["IngestQueue"])
    event = lambda_sqs_event(aws.queue_arns["IngestQueue"], messages)
    processor = lambda_function("ProcessorFunction")
    processor.invoke(event)
    processor.invoke(event)
    assert len(list(workspaces.list_archived(DEMO_WORKSPACE_ID, date(2026, 1, 1)))) == 1
