"""EmitterFunction on real stream records read from moto, against a local Segment stand-in."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from bridge_dev.events import http_event
from bridge_dev.segment_api import Scripted
from tests.conftest import SECONDS_LEFT
from tests.functional.conftest import WRITE_KEY, stream_lambda_event
from tests.functional.helpers import receive_all

LITTLE_TIME_LEFT = 6
"""An invocation with little time left: 1 s once the emitter's reserve is kept."""


def publish(aws, sk: str, **fields: Any) -> None:
    item = {
        "pk": f"WS#{WS}",
        "sk": sk,
        "event": "Flow Completed",
        "userId": "user-42",
        "properties": {"flowId": "onboarding", "step": 3},
        "timestamp": "2026-01-01T10:00:00Z",
    } | fields
    boto3.resource("dynamodb").Table(aws.tables["OutboxTable"]).put_item(Item=item)


def run(emitter, aws) -> dict:
    return emitter.invoke(stream_lambda_event(aws.tables["OutboxTable"]), seconds_left=SECONDS_LEFT)


def parked(aws) -> list[dict]:
    return [json.loads(m["Body"]) for m in receive_all(aws.queue_urls["EmitterDLQ"])]


def test_outbox_items_reach_segment_once_as_marked_track_calls(emitter, aws, segment):
    publish(aws, "EVT#1")
    publish(aws, "EVT#2", userId=None, anonymousId="anon-1", event="Checklist Viewed", properties={})
    assert run(emitter, aws) == {"batchItemFailures": []}
    assert run(emitter, aws) == {"batchItemFailures": []}  # the stream retries the same records

    assert len(segment.events) == 2
    assert set(segment.deliveries.values()) == {2}  # sent twice, kept once: deterministic messageIds
    first = next(e for e in segment.events.values() if e["event"] == "Flow Completed")
    assert first["type"] == "track"
    assert first["userId"] == "user-42"
    assert first["properties"] == {"flowId": "onboarding", "step": 3}
    assert first["timestamp"] == "2026-01-01T10:00:00.000Z"
    assert first["context"]["integration"]["name"] == "segment-bridge"
    assert first["messageId"].startswith("sbo-")
    assert all(r.write_key == WRITE_KEY for r in segment.requests)
    assert len(segment.requests) == 2  # one request per invocation for both events


def test_what_we_send_comes_back_as_an_echo_and_is_not_ingested(emitter, aws, segment, ingest):
    publish(aws, "EVT#1")
    run(emitter, aws)
    (sent,) = segment.events.values()
    answer = ingest(
        http_event("/v1/segment", json.dumps([sent]), headers={"authorization": f"Bearer {_demo_key()}"})
    )
    assert (answer.status, answer.body["accepted"], answer.body["echoes"]) == (200, 0, 1)


def _demo_key() -> str:
    from bridge_dev.events import DEMO_API_KEY

    return DEMO_API_KEY


def test_429_with_retry_after_is_honoured_then_delivered(emitter, aws, segment):
    segment.answer_next(Scripted(429, {"Retry-After": "1"}))
    publish(aws, "EVT#1")
    started = time.monotonic()
    assert run(emitter, aws) == {"batchItemFailures": []}
    assert time.monotonic() - started >= 1.0
    assert [r.status for r in segment.requests] == [429, 200]
    assert len(segment.events) == 1


def test_500_is_retried_with_backoff_and_delivered_once(emitter, aws, segment):
    segment.answer_next(Scripted(500), Scripted(503))
    publish(aws, "EVT#1")
    assert run(emitter, aws) == {"batchItemFailures": []}
    assert [r.status for r in segment.requests] == [500, 503, 200]
    assert list(segment.deliveries.values()) == [1]


def test_a_timeout_is_retried(emitter, aws, segment):
    from segment_bridge.outbound.egress import HttpSender

    emitter.module.sender = lambda: HttpSender(timeout=(1.0, 0.5), policy="local")
    segment.answer_next(Scripted(200, delay=1.0))
    publish(aws, "EVT#1")
    assert run(emitter, aws) == {"batchItemFailures": []}
    assert len(segment.events) == 1


def test_400_is_permanent_and_parked_with_the_answer(emitter, aws, segment):
    segment.answer_next(Scripted(400))
    publish(aws, "EVT#1")
    assert run(emitter, aws) == {"batchItemFailures": []}
    assert segment.events == {}
    (item,) = parked(aws)
    assert "400" in item["reason"]
    assert item["response"]["status"] == 400
    assert item["record"]["event"] == "Flow Completed"
    assert item["record"]["messageId"].startswith("sbo-")


def test_out_of_time_records_are_set_aside_for_retry_and_the_shard_moves_on(
    emitter, aws, segment, retry_queue
):
    segment.answer_next(*[Scripted(500)] * 20)
    for n in range(3):
        publish(aws, f"EVT#{n}")
    event = stream_lambda_event(aws.tables["OutboxTable"])
    response = emitter.invoke(event, seconds_left=LITTLE_TIME_LEFT)
    assert response == {"batchItemFailures": []}  # nothing handed back: later records are not held
    assert parked(aws) == []
    assert segment.events == {}
    (message,) = retry_queue.messages()
    assert message["kind"] == "outbound retry"
    assert (message["workspace_id"], message["attempt"]) == (WS, 1)
    assert "500" in message["reason"]
    assert sorted(e["payload"]["properties"]["step"] for e in message["events"]) == [3, 3, 3]
    assert 15 <= retry_queue.delays()[0] <= 30  # the first pause: 30 s, jittered over its upper half


def after_the_pause(emitter, retry_queue) -> dict[str, Any]:
    """The retry queue's messages as Lambda hands them once their delay is over; by then the
    container's hold on the workspace (its retry pause) is over too."""
    emitter.module.pacer.cache_clear()
    return retry_queue.lambda_event()


def test_a_retry_message_is_sent_once_due_and_counted_once(emitter, aws, segment, retry_queue, workspaces):
    segment.answer_for(WRITE_KEY, Scripted(503))
    publish(aws, "EVT#1")
    emitter.invoke(stream_lambda_event(aws.tables["OutboxTable"]), seconds_left=LITTLE_TIME_LEFT)
    assert segment.events == {}
    segment.answer_for(WRITE_KEY, None)  # Segment is back
    assert emitter.invoke(after_the_pause(emitter, retry_queue), seconds_left=SECONDS_LEFT) == {
        "batchItemFailures": []
    }
    assert list(segment.deliveries.values()) == [1]
    assert retry_queue.messages() == []
    assert parked(aws) == []
    day = datetime.now(UTC).date()
    assert workspaces.daily_counts(WS, day, day)[day.isoformat()]["sent"] == 1


def test_a_retry_still_refused_is_set_aside_again_with_a_longer_pause(emitter, aws, segment, retry_queue):
    segment.answer_next(*[Scripted(503)] * 30)
    publish(aws, "EVT#1")
    emitter.invoke(stream_lambda_event(aws.tables["OutboxTable"]), seconds_left=LITTLE_TIME_LEFT)
    event = after_the_pause(emitter, retry_queue)
    assert emitter.invoke(event, seconds_left=LITTLE_TIME_LEFT) == {"batchItemFailures": []}
    (message,) = retry_queue.messages()
    assert message["attempt"] == 2
    assert 30 <= retry_queue.delays()[0] <= 60
    assert segment.events == {}
    assert parked(aws) == []


def test_records_segment_has_not_taken_by_the_retry_horizon_are_parked_for_an_operator(
    emitter, aws, segment, retry_queue
):
    segment.answer_next(*[Scripted(503)] * 20)
    publish(aws, "EVT#old")
    publish(aws, "EVT#recent")
    event = stream_lambda_event(aws.tables["OutboxTable"])
    event["Records"][0]["dynamodb"]["ApproximateCreationDateTime"] = int(time.time()) - 73 * 3600
    event["Records"][1]["dynamodb"]["ApproximateCreationDateTime"] = int(time.time()) - 6 * 3600
    assert emitter.invoke(event, seconds_left=LITTLE_TIME_LEFT) == {"batchItemFailures": []}
    (item,) = parked(aws)
    assert "503" in item["reason"]
    assert "72 h" in item["reason"]
    (message,) = retry_queue.messages()  # six hours old: still retried
    assert len(message["events"]) == 1


def test_oversized_invalid_and_keyless_items_are_parked_the_rest_sent(emitter, aws, segment, workspaces):
    publish(aws, "EVT#big", properties={"blob": "x" * 40_000})
    publish(aws, "EVT#nobody", userId=None)
    publish(aws, "EVT#ok")
    workspaces.create_workspace("No key", workspace_id="ws_nokey")
    publish(aws, "EVT#other", pk="WS#ws_nokey")
    assert run(emitter, aws) == {"batchItemFailures": []}
    assert [e["event"] for e in segment.events.values()] == ["Flow Completed"]
    reasons = sorted(item["reason"] for item in parked(aws))
    assert len(reasons) == 3
    assert any("32768" in r for r in reasons)
    assert any("userId or anonymousId" in r for r in reasons)
    assert any("no Segment write key" in r for r in reasons)


def test_changes_to_existing_outbox_items_send_nothing(emitter, aws, segment):
    publish(aws, "EVT#1")
    run(emitter, aws)
    table = boto3.resource("dynamodb").Table(aws.tables["OutboxTable"])
    table.update_item(
        Key={"pk": f"WS#{WS}", "sk": "EVT#1"},
        UpdateExpression="SET note = :n",
        ExpressionAttributeValues={":n": "edited"},
    )
    table.delete_item(Key={"pk": f"WS#{WS}", "sk": "EVT#1"})
    run(emitter, aws)
    assert list(segment.deliveries.values()) == [2]  # the INSERT again (stream retry of it), nothing else
    assert len(segment.events) == 1


def test_a_stream_batch_is_packed_within_segments_500_kb_limit(emitter, aws, segment):
    from bridge_dev.template import load_template

    batch_size = load_template()["Resources"]["EmitterFunction"]["Properties"]["Events"]["Outbox"][
        "Properties"
    ]["BatchSize"]
    table = boto3.resource("dynamodb").Table(aws.tables["OutboxTable"])
    with table.batch_writer() as batch:
        for n in range(batch_size):
            batch.put_item(
                Item={
                    "pk": f"WS#{WS}",
                    "sk": f"EVT#{n:05d}",
                    "event": "Item Viewed",
                    "userId": f"u{n}",
                    "properties": {"n": n, "blob": "y" * 6000},
                }
            )
    assert run(emitter, aws) == {"batchItemFailures": []}
    assert len(segment.events) == batch_size
    assert len(segment.requests) == 2  # 100 events of ~6 KB: more than one request may carry
    assert all(r.status == 200 and r.body_bytes <= 475_000 for r in segment.requests)


FLOW_RULE = {
    "name": "flow-completed",
    "table": "FlowStates",
    "when": "new.status == 'COMPLETED' && old.status != 'COMPLETED'",
    "event": "Flow Completed",
    "workspace": "new.workspace_id",
    "user_id": "new.userId",
    "properties": {"flowId": "new.flowId", "steps": "new.steps"},
}


@pytest.fixture
def app_table(aws):
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="FlowStates",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return boto3.resource("dynamodb").Table("FlowStates")


def test_a_change_rule_turns_an_app_table_change_into_one_track_call(
    emitter, aws, segment, workspaces, app_table
):
    from segment_bridge.destinations import ChangeRule

    workspaces.put_change_rule(ChangeRule.model_validate(FLOW_RULE))
    state = {"id": "flow-1", "workspace_id": WS, "userId": "user-42", "flowId": "onboarding", "steps": 3}
    app_table.put_item(Item=state | {"status": "STARTED"})
    app_table.put_item(Item=state | {"status": "COMPLETED"})
    app_table.put_item(Item=state | {"status": "COMPLETED", "note": "touched again"})

    event = stream_lambda_event("FlowStates")
    assert emitter.invoke(event, seconds_left=SECONDS_LEFT) == {"batchItemFailures": []}
    assert emitter.invoke(event, seconds_left=SECONDS_LEFT) == {"batchItemFailures": []}  # a stream retry

    (sent,) = segment.events.values()
    assert (sent["event"], sent["userId"], sent["properties"]) == (
        "Flow Completed",
        "user-42",
        {"flowId": "onboarding", "steps": 3},
    )
    assert sent["context"]["integration"]["name"] == "segment-bridge"
    assert list(segment.deliveries.values()) == [2]


def test_a_stored_rule_that_no_longer_validates_parks_its_records_and_the_rest_are_sent(
    emitter, aws, segment, workspaces, app_table
):
    from segment_bridge.destinations import ChangeRule

    # Given a valid rule, and two stored rules that no longer validate: one whose table can still be read
    # (a bad expression), one that cannot be read at all
    workspaces.put_change_rule(ChangeRule.model_validate(FLOW_RULE))
    rules = boto3.resource("dynamodb").Table(aws.tables["WorkspacesTable"])
    broken = FLOW_RULE | {"name": "broken", "when": "new.secret_value =="}
    rules.put_item(Item={"pk": "RULES", "sk": "RULE#broken", "config": json.dumps(broken)})
    rules.put_item(Item={"pk": "RULES", "sk": "RULE#garbled", "config": "{not json"})
    state = {"id": "flow-1", "workspace_id": WS, "userId": "user-42", "flowId": "onboarding", "steps": 3}
    app_table.put_item(Item=state | {"status": "STARTED"})
    app_table.put_item(Item=state | {"status": "COMPLETED"})
    publish(aws, "EVT#1")  # an outbox item: no rule applies to it

    # When the emitter runs over both streams
    records = stream_lambda_event("FlowStates")["Records"]
    records += stream_lambda_event(aws.tables["OutboxTable"])["Records"]
    answer = emitter.invoke({"Records": records}, seconds_left=SECONDS_LEFT)

    # Then nothing crashes: the valid rule's call and the outbox item are sent; each app-table record is
    # parked whole once per invalid rule, with a reason naming the rule and its field, not the values
    assert answer == {"batchItemFailures": []}
    assert sorted(sent["event"] for sent in segment.events.values()) == ["Flow Completed", "Flow Completed"]
    signals = parked(aws)
    assert len(signals) == 4  # 2 records x 2 invalid rules
    assert sorted({s["reason"].split(" is stored")[0] for s in signals}) == [
        "change rule broken",
        "change rule garbled",
    ]
    assert all("no longer valid" in s["reason"] and "secret_value" not in s["reason"] for s in signals)
    assert all(s["record"]["change"]["new"]["id"] == "flow-1" for s in signals)  # whole


def test_changes_in_tables_the_processor_writes_are_never_sent(emitter, aws, segment, workspaces):
    from segment_bridge.destinations import ChangeRule

    workspaces.put_change_rule(
        ChangeRule.model_validate(FLOW_RULE | {"table": aws.tables["ProfilesTable"], "when": "`true`"})
    )
    publish(aws, "EVT#1")
    event = stream_lambda_event(aws.tables["OutboxTable"])
    record = event["Records"][0]
    echo = json.loads(json.dumps(record))
    echo["eventSourceARN"] = record["eventSourceARN"].replace(
        aws.tables["OutboxTable"], aws.tables["ProfilesTable"]
    )
    echo["dynamodb"]["SequenceNumber"] = "9" + record["dynamodb"]["SequenceNumber"]
    assert emitter.invoke({"Records": [echo]}, seconds_left=SECONDS_LEFT) == {"batchItemFailures": []}
    assert segment.requests == []


def test_the_deployments_integration_name_is_sent_and_recognised_as_an_echo(
    emitter, aws, segment, ingest, monkeypatch
):
    monkeypatch.setenv("INTEGRATION_NAME", "acme-onboarding")
    publish(aws, "EVT#1")
    run(emitter, aws)
    (sent,) = segment.events.values()
    assert sent["context"]["integration"]["name"] == "acme-onboarding"
    headers = {"authorization": f"Bearer {_demo_key()}"}
    answer = ingest(http_event("/v1/segment", json.dumps([sent]), headers=headers))
    assert (answer.status, answer.body["accepted"], answer.body["echoes"]) == (200, 0, 1)
    # another deployment's (or the default) name is not ours: that event is ingested
    other = sent | {"messageId": "other-1", "context": {"integration": {"name": "segment-bridge"}}}
    answer = ingest(http_event("/v1/segment", json.dumps([other]), headers=headers))
    assert (answer.status, answer.body["accepted"], answer.body["echoes"]) == (200, 1, 0)


def test_an_outbox_user_id_stored_as_a_number_is_sent_as_text(emitter, aws, segment):
    from decimal import Decimal

    publish(aws, "EVT#1", userId=Decimal(12345))
    assert run(emitter, aws) == {"batchItemFailures": []}
    (sent,) = segment.events.values()
    assert sent["userId"] == "12345"
    assert parked(aws) == []


def test_each_request_carries_the_write_key_in_the_body_and_as_basic_auth(emitter, aws, segment):
    publish(aws, "EVT#1")
    run(emitter, aws)
    assert [(r.write_key, r.body_write_key) for r in segment.requests] == [(WRITE_KEY, WRITE_KEY)]


def test_a_poisoned_event_is_parked_alone_with_segments_answer_and_its_neighbours_delivered(
    emitter, aws, segment
):
    from segment_bridge.outbound.track import outbound_message_id

    for n in range(100):
        publish(aws, f"EVT#{n:03d}")
    poisoned = outbound_message_id(aws.tables["OutboxTable"], {"pk": f"WS#{WS}", "sk": "EVT#042"})
    segment.refuse_events.add(poisoned)
    assert run(emitter, aws) == {"batchItemFailures": []}
    assert len(segment.events) == 99
    assert poisoned not in segment.events
    (item,) = parked(aws)
    assert item["record"]["messageId"] == poisoned
    assert item["response"]["status"] == 400
    assert "invalid_event" in item["response"]["body"]
