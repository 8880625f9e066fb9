"""IngestFunction on moto, driven by the committed events/*.json."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import date

import boto3
import pytest

from bridge_dev.events import (
    DEMO_API_KEY,
    DEMO_WORKSPACE_ID,
    SIGNED_API_KEY,
    SIGNED_SHARED_SECRET,
    SIGNED_WORKSPACE_ID,
    http_event,
)
from segment_bridge.envelope import unpack
from segment_bridge.ingest.auth import sign
from segment_bridge.keys import new_api_key
from tests.functional.conftest import sample

RECEIVED_DAY = date(2026, 1, 1)


def body_events(event):
    return json.loads(event["body"])


def assert_error(answer, status, code):
    assert answer.status == status
    assert set(answer.body) >= {"code", "message"}
    assert answer.body["code"] == code
    assert answer.body["message"]


# --- every auth mode and payload shape -------------------------------------------------------------


def test_webhook_batch_with_bearer_key_lands_on_the_queue(ingest, queue):
    event = sample("ingest_webhook_batch.json")
    answer = ingest(event)
    assert answer.status == 200
    assert answer.body == {"success": True, "accepted": 4, "rejected": [], "echoes": 0}
    messages = queue.messages()
    envelope, events = unpack(messages[0])
    assert envelope.workspaceId == DEMO_WORKSPACE_ID
    assert [e["messageId"] for e in events] == [e["messageId"] for e in body_events(event)]
    assert events[0]["traits"]["email"] == "ada@example.com"


def test_single_webhook_event_lands_on_the_queue(ingest, queue):
    answer = ingest(sample("ingest_webhook_single.json"))
    assert (answer.status, answer.body["accepted"]) == (200, 1)
    assert [e["event"] for e in queue.events()] == ["Checklist Completed"]


def test_write_key_in_the_query_string_authenticates(ingest, queue):
    answer = ingest(sample("ingest_webhook_query_writekey.json"))
    assert (answer.status, answer.body["accepted"]) == (200, 4)
    assert len(queue.events()) == 4


def test_sdk_batch_with_basic_auth_gets_skew_corrected_timestamps(ingest, queue):
    answer = ingest(sample("ingest_sdk_batch_basic.json"))
    assert (answer.status, answer.body["accepted"]) == (200, 2)
    identify, track = queue.events()
    # sentAt 23:59:00, received 00:00:00 (+60 s): every client timestamp moves forward by 60 s.
    assert identify["timestamp"] == "2025-12-31T23:59:00.000Z"
    assert track["timestamp"] == "2025-12-31T23:59:30.000Z"
    assert track["receivedAt"] == "2026-01-01T00:00:00.000Z"


def test_gzip_batch_with_write_key_only_in_the_body_is_accepted_and_the_key_not_kept(ingest, queue):
    event = sample("ingest_sdk_batch_gzip_writekey.json")
    assert event["isBase64Encoded"] is True
    answer = ingest(event)
    assert (answer.status, answer.body["accepted"]) == (200, 2)
    messages = queue.messages()
    assert DEMO_API_KEY not in "".join(json.dumps(unpack(body)[1]) for body in messages)


def test_single_call_paths_take_one_event_of_their_type(ingest, queue):
    answer = ingest(sample("ingest_sdk_track.json"))
    assert answer.status == 200
    (event,) = queue.events()
    assert (event["type"], event["event"], event["timestamp"]) == (
        "track",
        "Invite Sent",
        "2025-12-31T23:59:55.000Z",
    )


def test_single_call_paths_refuse_batches(ingest):
    event = sample("ingest_sdk_track.json")
    event["body"] = json.dumps([json.loads(event["body"])])
    assert_error(ingest(event), 400, "invalid_payload")


# --- authentication ------------------------------------------------------------------------------


def test_wrong_key_is_401_without_hinting_at_workspaces(ingest, queue):
    answer = ingest(sample("ingest_wrong_key.json"))
    assert_error(answer, 401, "unauthorized")
    assert "workspace" not in answer.body["message"].lower()
    assert queue.messages() == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer"}, {"authorization": "Basic %%%"}, {"authorization": "Digest abc"}],
)
def test_missing_or_malformed_credentials_are_401(ingest, headers):
    event = http_event(
        "/v1/segment", json.dumps({"type": "track", "userId": "u", "event": "A"}), headers=headers
    )
    assert_error(ingest(event), 401, "unauthorized")


def test_unknown_key_and_unknown_workspace_get_the_same_answer(ingest):
    event = sample("ingest_wrong_key.json")
    first = ingest(event)
    event["headers"]["authorization"] = "Bearer " + new_api_key()
    second = ingest(event)
    assert (first.status, first.body) == (second.status, second.body)


def test_rotation_keeps_two_live_keys_then_revocation_locks_the_old_one_out(ingest, workspaces):
    from segment_bridge.errors import Conflict

    new_key = new_api_key()
    issued = workspaces.issue_key(DEMO_WORKSPACE_ID, new_key)
    with pytest.raises(Conflict):
        workspaces.issue_key(DEMO_WORKSPACE_ID, new_api_key())

    old = sample("ingest_webhook_single.json")
    new = sample("ingest_webhook_single.json")
    new["headers"]["authorization"] = f"Bearer {new_key}"
    assert ingest(old).status == 200
    assert ingest(new).status == 200

    old_key_id = next(k for k in workspaces.get_workspace(DEMO_WORKSPACE_ID).key_ids if k != issued.key_id)
    workspaces.revoke_key(DEMO_WORKSPACE_ID, old_key_id)
    fresh = load_fresh_ingest()  # a new container: nothing cached
    assert fresh(old).status == 401
    assert fresh(new).status == 200


def load_fresh_ingest():
    from tests.conftest import lambda_function
    from tests.functional.conftest import Answer

    function = lambda_function("IngestFunction")

    def call(event):
        response = function.invoke(event)
        return Answer(response["statusCode"], json.loads(response["body"]), response.get("headers", {}))

    return call


def test_keys_are_stored_only_as_hashes(ingest, aws):
    items = boto3.client("dynamodb").scan(TableName=aws.tables["WorkspacesTable"])["Items"]
    assert items
    assert DEMO_API_KEY not in json.dumps(items)


# --- signatures ----------------------------------------------------------------------------------


def test_signed_batch_verifies_against_the_first_elements_raw_bytes(ingest, queue):
    answer = ingest(sample("ingest_webhook_signed_batch.json"))
    assert (answer.status, answer.body["accepted"]) == (200, 4)
    envelope, _ = unpack(queue.messages()[0])
    assert envelope.workspaceId == SIGNED_WORKSPACE_ID


def test_tampered_first_element_fails_the_signature(ingest, queue):
    event = sample("ingest_webhook_signed_batch.json")
    event["body"] = event["body"].replace('"plan":"premium"', '"plan":"enterprise"', 1)
    assert_error(ingest(event), 401, "invalid_signature")
    assert queue.messages() == []


def test_batch_signature_covers_only_the_first_element_as_segment_signs(ingest):
    event = sample("ingest_webhook_signed_batch.json")
    event["body"] = event["body"].replace('"name":"Pricing"', '"name":"Home"', 1)
    assert ingest(event).status == 200


def test_signed_single_event_verifies_and_tampering_fails(ingest):
    event = sample("ingest_webhook_signed_single.json")
    assert ingest(event).status == 200
    event["body"] = event["body"].replace("Checklist Completed", "Checklist Skipped")
    assert_error(ingest(event), 401, "invalid_signature")


def test_missing_signature_for_a_workspace_with_a_secret_is_401(ingest):
    event = sample("ingest_webhook_signed_batch.json")
    del event["headers"]["x-signature"]
    assert_error(ingest(event), 401, "invalid_signature")


def test_signature_is_checked_on_the_decompressed_body(ingest):
    raw = json.dumps([{"type": "track", "userId": "u", "event": "Zipped"}], separators=(",", ":"))
    first = raw[1:-1]
    event = http_event(
        "/v1/segment",
        base64.b64encode(gzip.compress(raw.encode())).decode(),
        headers={
            "authorization": f"Bearer {SIGNED_API_KEY}",
            "content-encoding": "gzip",
            "x-signature": sign(SIGNED_SHARED_SECRET, first.encode()),
        },
        base64_encoded=True,
    )
    assert ingest(event).status == 200


# --- judging a batch event by event ----------------------------------------------------------------


def test_batch_with_invalid_events_accepts_the_rest_and_keeps_the_rejected(ingest, queue, workspaces):
    event = sample("ingest_mixed_batch.json")
    answer = ingest(event)
    assert answer.status == 200
    assert answer.body["accepted"] == 2
    rejected = answer.body["rejected"]
    assert [r["index"] for r in rejected] == [1, 2, 3, 4, 6]
    assert rejected[0]["messageId"] == "api-2f8Tq011"
    assert all(r["reason"] for r in rejected)
    assert [e["type"] for e in queue.events()] == ["track", "alias"]

    kept = list(workspaces.list_rejected(DEMO_WORKSPACE_ID, RECEIVED_DAY))
    assert [k["index"] for k in kept] == [1, 2, 3, 4, 6]
    assert kept[3]["event"] == "not an event"
    assert kept[0]["event"]["messageId"] == "api-2f8Tq011"
    assert kept[0]["reason"] == rejected[0]["reason"]


def test_batch_with_only_invalid_events_is_400_and_still_kept(ingest, queue, workspaces):
    event = sample("ingest_mixed_batch.json")
    events = body_events(event)
    event["body"] = json.dumps([events[1], events[2]])
    answer = ingest(event)
    assert_error(answer, 400, "invalid_events")
    assert [r["index"] for r in answer.body["details"]] == [0, 1]
    assert queue.messages() == []
    assert len(list(workspaces.list_rejected(DEMO_WORKSPACE_ID, RECEIVED_DAY))) == 2


def test_echoes_of_our_own_outbound_events_are_not_ingested(ingest, queue):
    answer = ingest(sample("ingest_echo_batch.json"))
    assert (answer.status, answer.body["accepted"], answer.body["echoes"]) == (200, 1, 1)
    assert [e["event"] for e in queue.events()] == ["Checklist Viewed"]


def test_unreadable_body_is_400(ingest):
    assert_error(ingest(sample("ingest_unreadable.json")), 400, "invalid_body")


# --- size limits ---------------------------------------------------------------------------------


def track(n, **extra):
    return {
        "type": "track",
        "userId": f"user-{n % 50}",
        "event": "Item Viewed",
        "messageId": f"m-{n}",
        "properties": {"sku": f"sku-{n}", "price": n / 100},
        **extra,
    }


def test_4000_event_batch_of_about_4_mb_is_queued_whole(ingest, queue, aws):
    events = [
        track(n, context={"page": {"url": f"https://example.com/items/{n}", "blob": "y" * 900}})
        for n in range(4000)
    ]
    body = json.dumps(events)
    assert len(body) > 4_000_000
    answer = ingest(http_event("/v1/segment", body, headers={"authorization": f"Bearer {DEMO_API_KEY}"}))
    assert (answer.status, answer.body["accepted"]) == (200, 4000)
    messages = queue.messages()
    limit = int(aws.environment()["QUEUE_MESSAGE_BYTES"])
    assert all(len(m.encode()) <= limit for m in messages)
    queued = [e for m in messages for e in unpack(m)[1]]
    assert sorted(e["messageId"] for e in queued) == sorted(f"m-{n}" for n in range(4000))
    assert len(messages) < 40  # many events per message, never one message per event


def test_more_events_than_segment_ever_sends_is_413(ingest, queue):
    body = json.dumps([track(n) for n in range(4001)])
    answer = ingest(http_event("/v1/segment", body, headers={"authorization": f"Bearer {DEMO_API_KEY}"}))
    assert_error(answer, 413, "payload_too_large")
    assert queue.messages() == []


def test_body_over_the_limit_is_413(ingest):
    body = json.dumps([track(0, properties={"blob": "z" * (9 * 1024 * 1024)})])
    answer = ingest(http_event("/v1/segment", body, headers={"authorization": f"Bearer {DEMO_API_KEY}"}))
    assert_error(answer, 413, "payload_too_large")


def test_one_oversized_event_is_rejected_and_kept_the_rest_queued(ingest, queue, workspaces):
    body = json.dumps([track(1, properties={"blob": "z" * 70_000}), track(2)])
    answer = ingest(http_event("/v1/segment", body, headers={"authorization": f"Bearer {DEMO_API_KEY}"}))
    assert answer.status == 200
    assert answer.body["accepted"] == 1
    assert answer.body["rejected"][0]["messageId"] == "m-1"
    assert [e["messageId"] for e in queue.events()] == ["m-2"]
    assert next(workspaces.list_rejected(DEMO_WORKSPACE_ID, RECEIVED_DAY))["event"]["messageId"] == "m-1"


# --- the queue failing ---------------------------------------------------------------------------


def test_queue_unavailable_is_503_so_segment_retries(ingest, workspaces, aws):
    workspaces.sleep = lambda seconds: None
    boto3.client("sqs").delete_queue(QueueUrl=aws.queue_urls["IngestQueue"])
    answer = ingest(sample("ingest_webhook_batch.json"))
    assert_error(answer, 503, "service_unavailable")


def test_entries_the_queue_fails_are_retried_until_every_event_is_on_it(ingest, queue, workspaces):
    workspaces.sleep = lambda seconds: None
    real = workspaces.clients.sqs.send_message_batch
    calls = []

    def flaky(QueueUrl, Entries):
        calls.append(len(Entries))
        if len(calls) > 1:
            return real(QueueUrl=QueueUrl, Entries=Entries)
        sent = real(QueueUrl=QueueUrl, Entries=Entries[1:]) if len(Entries) > 1 else {"Successful": []}
        failed = [{"Id": Entries[0]["Id"], "SenderFault": False, "Code": "InternalError"}]
        return {**sent, "Failed": failed}

    workspaces.clients.sqs.send_message_batch = flaky
    body = json.dumps(
        [
            track(n, properties={"blob": base64.b64encode(bytes(range(256)) * 40).decode() + str(n)})
            for n in range(60)
        ]
    )
    answer = ingest(http_event("/v1/segment", body, headers={"authorization": f"Bearer {DEMO_API_KEY}"}))
    assert (answer.status, answer.body["accepted"]) == (200, 60)
    assert len(calls) >= 2
    assert sorted(e["messageId"] for e in queue.events()) == sorted(f"m-{n}" for n in range(60))


def test_a_queue_that_keeps_failing_entries_is_503(ingest, workspaces):
    workspaces.sleep = lambda seconds: None

    def always_failing(QueueUrl, Entries):
        return {
            "Successful": [],
            "Failed": [{"Id": e["Id"], "SenderFault": False, "Code": "ServiceUnavailable"} for e in Entries],
        }

    workspaces.clients.sqs.send_message_batch = always_failing
    assert_error(ingest(sample("ingest_webhook_batch.json")), 503, "service_unavailable")


def test_rejected_events_that_cannot_be_kept_make_the_delivery_retryable(ingest, workspaces, aws):
    s3 = boto3.client("s3")
    for obj in s3.list_objects_v2(Bucket=aws.buckets["ArchiveBucket"]).get("Contents", []):
        s3.delete_object(Bucket=aws.buckets["ArchiveBucket"], Key=obj["Key"])
    s3.delete_bucket(Bucket=aws.buckets["ArchiveBucket"])
    assert_error(ingest(sample("ingest_mixed_batch.json")), 503, "service_unavailable")


def test_unexpected_failures_answer_500_with_code_and_message(ingest, workspaces):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    workspaces.enqueue = broken
    answer = ingest(sample("ingest_webhook_batch.json"))
    assert_error(answer, 500, "internal_error")
    assert "boom" not in answer.body["message"]


# --- logs ----------------------------------------------------------------------------------------


def test_logs_carry_no_traits_emails_or_keys(ingest, caplog):
    caplog.set_level("DEBUG")
    ingest(sample("ingest_webhook_batch.json"))
    ingest(sample("ingest_mixed_batch.json"))
    ingest(sample("ingest_wrong_key.json"))
    records = [json.dumps(record.__dict__, default=str) for record in caplog.records]
    assert any('"accepted": 4' in record for record in records)
    assert '"workspace_id": "ws_demo"' not in records[-1]  # a refused request names no workspace
    logs = "\n".join(records)
    for secret in ("ada@example.com", DEMO_API_KEY, "premium", "Bearer"):
        assert secret not in logs
