"""Segment's three documented delete payloads, each applied end to end on moto (issue 25): the
IngestFunction takes it over HTTP as Segment sends it, the queue carries it, the ProcessorFunction
tombstones the user as of the delete's time and erases what it had."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from bridge_dev.events import DEMO_API_KEY, http_event
from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from bridge_dev.runtime import lambda_sqs_event
from segment_bridge.envelope import unpack
from tests.conftest import ROOT, lambda_function

DELETES = json.loads((ROOT / "tests" / "data" / "segment_deletes.json").read_text(encoding="utf-8"))
AUTH = {"authorization": f"Bearer {DEMO_API_KEY}", "user-agent": "Segment.io/1.0"}
DELETED_AT = {
    "webhook": "2025-12-31T10:00:00.000Z",
    "partner": "2020-05-09T23:54:49.209Z",
    "empty_arrays": "2025-12-31T11:00:00.000Z",
}
"""Each delete's time: its timestamp (Segment's, for the shapes Segment relays with a receivedAt)."""
BEFORE = {
    "webhook": "2025-12-01T00:00:00Z",
    "partner": "2020-05-01T00:00:00Z",
    "empty_arrays": "2025-12-01T00:00:00Z",
}


def _drain(aws: Any) -> list[dict[str, Any]]:
    sqs, url = boto3.client("sqs"), aws.queue_urls["IngestQueue"]
    messages = []
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            messages.append({**message, "MD5OfBody": "x"})
    return messages


def _through(aws: Any, ingest: Any, processor: Any, body: Any, path: str = "/v1/segment") -> dict[str, Any]:
    answer = ingest.invoke(http_event(path, json.dumps(body), headers=AUTH))
    assert answer["statusCode"] == 200, answer["body"]
    applied = processor.invoke(lambda_sqs_event(aws.queue_arns["IngestQueue"], _drain(aws)))
    assert applied == {"batchItemFailures": []}
    return json.loads(answer["body"])


@pytest.fixture
def functions(aws, workspaces):
    return lambda_function("IngestFunction"), lambda_function("ProcessorFunction")


@pytest.mark.parametrize("shape", sorted(DELETES.keys() - {"_about"}))
def test_each_documented_segment_delete_erases_its_user_through_ingest_queue_and_processor(
    shape, aws, workspaces, functions
):
    ingest, processor = functions
    user = DELETES[shape]["userId"]
    _through(
        aws,
        ingest,
        processor,
        [
            {"type": "identify", "userId": user, "traits": {"plan": "pro"}, "timestamp": BEFORE[shape]},
            {"type": "track", "userId": user, "event": "Signed Up", "timestamp": BEFORE[shape]},
        ],
    )
    assert workspaces.read_profile(WS, "U", user) is not None

    answer = _through(aws, ingest, processor, DELETES[shape])  # alone: a refusal would be a 400, final

    assert (answer["accepted"], answer["rejected"]) == (1, [])
    assert workspaces.profiles.read_entities(WS, [f"U#{user}"])[f"U#{user}"].deleted_at == DELETED_AT[shape]
    assert workspaces.read_profile(WS, "U", user) is None
    assert workspaces.read_history(WS, "U", user) == []


def test_a_redelivered_delete_without_a_message_id_is_the_same_request(aws, workspaces, functions):
    """Segment retries a delivery it got no 2xx for: the second copy derives the same messageId and
    changes nothing."""
    ingest, _ = functions
    ids = []
    for sent_at in ("2025-12-31T10:00:01Z", "2025-12-31T10:00:09Z"):
        answer = ingest.invoke(
            http_event("/v1/segment", json.dumps({**DELETES["webhook"], "sentAt": sent_at}), headers=AUTH)
        )
        assert answer["statusCode"] == 200
        ids += [event["messageId"] for message in _drain(aws) for event in unpack(message["Body"])[1]]
    assert len(ids) == 2
    assert ids[0] == ids[1]
