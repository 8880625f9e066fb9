"""Each committed event in events/ through its function's lambda_handler on moto, with the outcome
docs/testing.md's events table documents for it."""

from __future__ import annotations

import json

import boto3
import pytest

from bridge_dev.events import DEMO_WORKSPACE_ID, FLOW_COMPLETED_RULE, build_all
from tests.conftest import SECONDS_LEFT, lambda_function
from tests.functional.conftest import sample
from tests.functional.helpers import receive_all

INGEST_EVENTS = sorted(path.name for path in build_all() if path.name.startswith("ingest_"))
INGEST_OUTCOMES = {
    # file: (status, accepted, rejected, echoes) or (status, error code)
    "ingest_webhook_batch.json": (200, 4, 0, 0),
    "ingest_webhook_single.json": (200, 1, 0, 0),
    "ingest_webhook_signed_batch.json": (200, 4, 0, 0),
    "ingest_webhook_signed_single.json": (200, 1, 0, 0),
    "ingest_webhook_query_writekey.json": (200, 4, 0, 0),
    "ingest_sdk_batch_basic.json": (200, 2, 0, 0),
    "ingest_sdk_batch_gzip_writekey.json": (200, 2, 0, 0),
    "ingest_sdk_track.json": (200, 1, 0, 0),
    "ingest_mixed_batch.json": (200, 2, 5, 0),
    "ingest_echo_batch.json": (200, 1, 0, 1),
    "ingest_unreadable.json": (400, "invalid_body"),
    "ingest_wrong_key.json": (401, "unauthorized"),
}


def test_every_ingest_event_has_a_documented_outcome():
    assert sorted(INGEST_OUTCOMES) == INGEST_EVENTS


@pytest.mark.parametrize("name", INGEST_EVENTS)
def test_each_ingest_event_gets_its_documented_answer(name, ingest):
    answer = ingest(sample(name))
    expected = INGEST_OUTCOMES[name]
    if answer.status == 200:
        body = answer.body
        assert (200, body["accepted"], len(body["rejected"]), body["echoes"]) == expected
    else:
        assert (answer.status, answer.body["code"]) == expected


def test_the_processor_batch_writes_the_demo_users_profiles(aws, workspaces):
    processor = lambda_function("ProcessorFunction")

    answer = processor.invoke(sample("processor_sqs_batch.json"))

    assert answer == {"batchItemFailures": []}
    table = boto3.resource("dynamodb").Table(aws.tables["ProfilesTable"])
    ada = table.get_item(Key={"pk": f"WS#{DEMO_WORKSPACE_ID}#U#user-42", "sk": "PROFILE"})["Item"]
    assert ada["traits"]["plan"] == "premium"
    assert ada["counts"] == {"Signed Up": 1, "Viewed Pricing Page": 1}
    assert "org-9" in ada["groups"]
    grace = table.get_item(Key={"pk": f"WS#{DEMO_WORKSPACE_ID}#U#user-7", "sk": "PROFILE"})["Item"]
    assert grace["counts"] == {"Report Exported": 1}


def test_the_outbox_insert_reaches_segment_as_one_track_call(emitter, segment):
    answer = emitter.invoke(sample("emitter_outbox_insert.json"), seconds_left=SECONDS_LEFT)

    assert answer == {"batchItemFailures": []}
    (sent,) = segment.events.values()
    assert (sent["type"], sent["event"], sent["userId"]) == ("track", "Flow Completed", "user-42")
    assert sent["properties"] == {"flowId": "onboarding"}


def test_the_outbox_insert_is_parked_while_the_workspace_has_no_destination(emitter, aws, workspaces):
    answer = emitter.invoke(sample("emitter_outbox_insert.json"), seconds_left=SECONDS_LEFT)

    assert answer == {"batchItemFailures": []}
    (parked,) = [json.loads(m["Body"]) for m in receive_all(aws.queue_urls["EmitterDLQ"])]
    assert "Flow Completed" in json.dumps(parked)


def test_the_change_rule_modify_reaches_segment_as_the_rules_track_call(emitter, segment, workspaces):
    workspaces.put_change_rule(FLOW_COMPLETED_RULE)

    answer = emitter.invoke(sample("emitter_change_rule_modify.json"), seconds_left=SECONDS_LEFT)

    assert answer == {"batchItemFailures": []}
    (sent,) = segment.events.values()
    assert (sent["event"], sent["userId"], sent["properties"]) == (
        "Flow Completed",
        "user-42",
        {"flowId": "onboarding"},
    )


def test_the_change_rule_modify_sends_nothing_without_its_rule(emitter, segment):
    answer = emitter.invoke(sample("emitter_change_rule_modify.json"), seconds_left=SECONDS_LEFT)

    assert answer == {"batchItemFailures": []}
    assert segment.events == {}
