"""Writes the sample events in events/ and env.json: what `sam local invoke` and the tests run.

- ingest_*.json: API Gateway HTTP API (v2) requests to the IngestFunction;
- processor_sqs_batch.json: an SQS batch for the ProcessorFunction, its bodies intake's own envelopes;
- emitter_*.json: DynamoDB stream batches for the EmitterFunction, shaped by the local stream poller;
- env.json: each function's environment (template.yaml's) aimed at `make dev`'s embedded AWS as a Docker
  container reaches it.

They are committed. Run `make events` (`python -m bridge_dev.events`) to write them again after changing
this file or the template; a test fails if a committed file differs from what this writes.

The keys below are for the local stack and tests only: the local stack seeds these workspaces.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from bridge_dev.runtime import lambda_sqs_event, lambda_stream_record
from bridge_dev.template import (
    DEFAULT_BUCKET_NAME,
    LOCAL_AWS_PORT,
    LOCAL_PARAMETERS,
    PSEUDO_PARAMETERS,
    TEMPLATE_PATH,
    LocalResources,
    load_template,
)
from segment_bridge.destinations import ChangeRule
from segment_bridge.envelope import pack
from segment_bridge.ingest.auth import sign
from segment_bridge.ingest.intake import Limits, delivery_source, iso, prepare, serialise

ROOT = TEMPLATE_PATH.parent
EVENTS_DIR = ROOT / "events"
ENV_FILE = ROOT / "env.json"

DEMO_WORKSPACE_ID = "ws_demo"
DEMO_API_KEY = "sbk_demo_Zq3xkP0vN7aR2mT8wY5cL1fH6jB9dG4s"
SIGNED_WORKSPACE_ID = "ws_signed"
SIGNED_API_KEY = "sbk_signed_Vb8nK2pX5qW9eR3tY7uI1oP4aS6dF0gH"
SIGNED_SHARED_SECRET = "demo-shared-secret-7f3a9c"  # noqa: S105  # nosec B105  # a documented local-only secret

RECEIVED_EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: API Gateway's requestContext.timeEpoch


def http_event(
    path: str,
    body: str,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    base64_encoded: bool = False,
    request_id: str = "req-0001",
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event for POST `path`."""
    all_headers = {"content-type": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com"}
    all_headers.update({name.lower(): value for name, value in (headers or {}).items()})
    raw_query = "&".join(f"{name}={value}" for name, value in (query or {}).items())
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": all_headers["host"],
            "domainPrefix": "abc123",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": all_headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": f"POST {path}",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": RECEIVED_EPOCH_MS,
        },
        "body": body,
        "isBase64Encoded": base64_encoded,
    }
    if query:
        event["queryStringParameters"] = query
    return event


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def basic(key: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


WEBHOOK_HEADERS = {"user-agent": "Segment (Actions)"}


def _relayed(kind: str, n: int, **fields: Any) -> dict[str, Any]:
    """An event as Segment relays it to a webhook: Segment's ids and timestamps already set."""
    return {
        "type": kind,
        "messageId": f"api-2f8Tq{n:03d}",
        "userId": "user-42",
        "anonymousId": "anon-7c1",
        "timestamp": f"2025-12-31T23:59:{n:02d}.000Z",
        "originalTimestamp": f"2025-12-31T23:59:{n:02d}.000Z",
        "sentAt": f"2025-12-31T23:59:{n:02d}.100Z",
        "receivedAt": f"2025-12-31T23:59:{n:02d}.200Z",
        "context": {"library": {"name": "analytics.js", "version": "next-1.74.0"}, "ip": "198.51.100.7"},
        "integrations": {},
        **fields,
    }


def _webhook_batch() -> list[dict[str, Any]]:
    return [
        _relayed("identify", 1, traits={"email": "ada@example.com", "plan": "premium", "language": "en"}),
        _relayed("track", 2, event="Signed Up", properties={"source": "landing"}),
        _relayed("group", 3, groupId="org-9", traits={"name": "Acme", "employees": 120}),
        _relayed("page", 4, name="Pricing", properties={"path": "/pricing"}),
    ]


def _sdk_batch() -> dict[str, Any]:
    """What segment-analytics-python sends to /v1/batch: client timestamps and a batch-level sentAt."""
    return {
        "batch": [
            {
                "type": "identify",
                "userId": "user-7",
                "traits": {"email": "grace@example.com"},
                "messageId": "5f3c1a2e-0b7d-4e1f-9a8c-2d6e4b1f0a01",
                "timestamp": "2025-12-31T23:58:00+00:00",
                "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
            },
            {
                "type": "track",
                "userId": "user-7",
                "event": "Report Exported",
                "properties": {"format": "csv"},
                "messageId": "5f3c1a2e-0b7d-4e1f-9a8c-2d6e4b1f0a02",
                "timestamp": "2025-12-31T23:58:30+00:00",
                "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
            },
        ],
        "sentAt": "2025-12-31T23:59:00+00:00",
    }


def _mixed_batch() -> list[Any]:
    good = _relayed("track", 10, event="Flow Started")
    return [
        good,
        {**_relayed("track", 11), "event": ""},
        {
            key: value
            for key, value in _relayed("identify", 12).items()
            if key not in ("userId", "anonymousId")
        },
        {**_relayed("identify", 13), "type": "purchase"},
        "not an event",
        _relayed("alias", 14, previousId="anon-7c1"),
        {**_relayed("group", 15), "groupId": None},
    ]


def _echo_batch() -> list[dict[str, Any]]:
    echo = _relayed("track", 20, event="Flow Completed")
    echo["context"] = {**echo["context"], "integration": {"name": "segment-bridge", "version": "0.1.0"}}
    return [echo, _relayed("track", 21, event="Checklist Viewed")]


def _compact(document: Any) -> str:
    """JSON as JavaScript's JSON.stringify writes it (what Segment sends and signs)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def build() -> dict[str, dict[str, Any]]:
    webhook_batch = _compact(_webhook_batch())
    signed_batch = _webhook_batch()
    single = _compact(
        _relayed("track", 5, event="Checklist Completed", properties={"checklist": "onboarding"})
    )
    sdk_batch = _sdk_batch()
    sdk_batch_with_key = {**sdk_batch, "writeKey": DEMO_API_KEY}
    gzipped = base64.b64encode(gzip.compress(_compact(sdk_batch_with_key).encode(), mtime=0)).decode()
    return {
        "ingest_webhook_batch.json": http_event(
            "/v1/segment", webhook_batch, headers={**WEBHOOK_HEADERS, **bearer(DEMO_API_KEY)}
        ),
        "ingest_webhook_single.json": http_event(
            "/v1/segment", single, headers={**WEBHOOK_HEADERS, **bearer(DEMO_API_KEY)}
        ),
        "ingest_webhook_signed_batch.json": http_event(
            "/v1/segment",
            _compact(signed_batch),
            headers={
                **WEBHOOK_HEADERS,
                **bearer(SIGNED_API_KEY),
                "x-signature": sign(SIGNED_SHARED_SECRET, _compact(signed_batch[0]).encode()),
            },
        ),
        "ingest_webhook_signed_single.json": http_event(
            "/v1/segment",
            single,
            headers={
                **WEBHOOK_HEADERS,
                **bearer(SIGNED_API_KEY),
                "x-signature": sign(SIGNED_SHARED_SECRET, single.encode()),
            },
        ),
        "ingest_webhook_query_writekey.json": http_event(
            "/v1/segment", webhook_batch, headers=WEBHOOK_HEADERS, query={"writeKey": DEMO_API_KEY}
        ),
        "ingest_sdk_batch_basic.json": http_event(
            "/v1/batch",
            _compact(sdk_batch),
            headers={"user-agent": "analytics-python/2.4.0", **basic(DEMO_API_KEY)},
        ),
        "ingest_sdk_batch_gzip_writekey.json": http_event(
            "/v1/batch",
            gzipped,
            headers={"user-agent": "analytics-python/2.3.0", "content-encoding": "gzip"},
            base64_encoded=True,
        ),
        "ingest_sdk_track.json": http_event(
            "/v1/track",
            _compact(
                {
                    "userId": "user-7",
                    "event": "Invite Sent",
                    "properties": {"count": 2},
                    "timestamp": "2025-12-31T23:59:50Z",
                    "sentAt": "2025-12-31T23:59:55Z",
                }
            ),
            headers=basic(DEMO_API_KEY),
        ),
        "ingest_mixed_batch.json": http_event(
            "/v1/segment", _compact(_mixed_batch()), headers=bearer(DEMO_API_KEY)
        ),
        "ingest_echo_batch.json": http_event(
            "/v1/segment", _compact(_echo_batch()), headers=bearer(DEMO_API_KEY)
        ),
        "ingest_unreadable.json": http_event(
            "/v1/segment", '[{"type": "track",', headers=bearer(DEMO_API_KEY)
        ),
        "ingest_wrong_key.json": http_event(
            "/v1/segment",
            webhook_batch,
            headers={**WEBHOOK_HEADERS, **bearer("sbk_not_a_real_key_000000000000000")},
        ),
    }


# ---------------------------------------------------------------------------------------------- processor

INGEST_QUEUE_ARN = f"arn:aws:sqs:us-east-1:{PSEUDO_PARAMETERS['AWS::AccountId']}:IngestQueue"


def queue_message(request: dict[str, Any], workspace_id: str, number: int) -> dict[str, Any]:
    """The queue message intake writes for a sample HTTP request (its envelope, exactly as packed), as
    boto3's ReceiveMessage returns it."""
    received_at = datetime.fromtimestamp(request["requestContext"]["timeEpoch"] / 1000, tz=UTC)
    accepted, _ = prepare(request["body"].encode(), workspace_id, received_at, request["rawPath"])
    [body] = pack(
        [serialise(event) for event in accepted],
        workspace_id=workspace_id,
        request_id=request["requestContext"]["requestId"],
        received_at=iso(received_at),
        max_bytes=Limits().queue_message_bytes,
        source=delivery_source({name.lower(): value for name, value in request["headers"].items()}),
    )
    sent_ms = str(RECEIVED_EPOCH_MS + number)
    return {
        "MessageId": f"4d3c2b1a-0000-4000-8000-00000000000{number}",
        "ReceiptHandle": f"AQEBsampleReceiptHandle{number}==",
        "MD5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "Body": body,
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": sent_ms,
            "SenderId": "AROAEXAMPLEINGEST:IngestFunction",
            "ApproximateFirstReceiveTimestamp": sent_ms,
        },
    }


def processor_sqs_batch(ingest_events: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Two messages of the demo workspace: the webhook batch (user-42) and the SDK batch (user-7)."""
    return lambda_sqs_event(
        INGEST_QUEUE_ARN,
        [
            queue_message(ingest_events["ingest_webhook_batch.json"], DEMO_WORKSPACE_ID, 1),
            queue_message(ingest_events["ingest_sdk_batch_basic.json"], DEMO_WORKSPACE_ID, 2),
        ],
    )


# ---------------------------------------------------------------------------------------------- emitter

OUTBOX_ITEM = {
    "pk": f"WS#{DEMO_WORKSPACE_ID}",
    "sk": "EVT#7f1c0d2e-flow-completed",
    "event": "Flow Completed",
    "userId": "user-42",
    "properties": {"flowId": "onboarding"},
    "timestamp": "2026-01-01T10:00:00Z",
    "context": {},
}
"""The outbox item docs/outbound.md's "The outbox" writes."""

APP_TABLE = "FlowStates"
FLOW_COMPLETED_RULE = ChangeRule(
    name="flow-completed",
    table=APP_TABLE,
    event="Flow Completed",
    when="new.status == 'COMPLETED' && old.status != 'COMPLETED'",
    workspace="new.workspace_id",
    user_id="new.userId",
    properties={"flowId": "new.flowId"},
)
"""The change rule of docs/outbound.md (examples/flow-completed.yaml): emitter_change_rule_modify.json is
a change of its table that it fires on."""

CHANGED_AT = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
_serializer = TypeSerializer()


def _image(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in item.items()}


def stream_record(
    table: str, event_name: str, keys: list[str], new: dict[str, Any], old: dict[str, Any] | None, number: int
) -> dict[str, Any]:
    """A change of `table` as boto3's dynamodbstreams GetRecords returns it, shaped by the local stream
    poller (`lambda_stream_record`) as Lambda hands it to the function."""
    account = PSEUDO_PARAMETERS["AWS::AccountId"]
    stream_arn = f"arn:aws:dynamodb:us-east-1:{account}:table/{table}/stream/2026-01-01T00:00:00.000"
    change: dict[str, Any] = {
        "ApproximateCreationDateTime": CHANGED_AT,
        "Keys": _image({name: new[name] for name in keys}),
        "NewImage": _image(new),
        "SequenceNumber": f"{number:021d}",
        "SizeBytes": len(json.dumps(new)),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if old is not None:
        change["OldImage"] = _image(old)
    record = {
        "eventID": f"c81e728d9d4c2f636f067f89cc14862{number}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": change,
    }
    return lambda_stream_record(record, stream_arn)


def emitter_outbox_insert() -> dict[str, Any]:
    return {"Records": [stream_record("OutboxTable", "INSERT", ["pk", "sk"], OUTBOX_ITEM, None, 1)]}


def emitter_change_rule_modify() -> dict[str, Any]:
    old = {
        "workspace_id": DEMO_WORKSPACE_ID,
        "flowId": "onboarding",
        "userId": "user-42",
        "status": "STARTED",
    }
    return {
        "Records": [
            stream_record(
                APP_TABLE, "MODIFY", ["workspace_id", "flowId"], {**old, "status": "COMPLETED"}, old, 2
            )
        ]
    }


# ---------------------------------------------------------------------------------------------- env.json

DOCKER_AWS_ENDPOINT = f"http://host.docker.internal:{LOCAL_AWS_PORT}"
"""make dev's embedded AWS as a `sam local invoke` container reaches it."""


def sam_local_environment() -> dict[str, dict[str, str]]:
    """Each function's environment in template.yaml (Globals and its own), resolved for the resources
    `make dev` creates and with AwsEndpointUrl set, so every AWS client of the function goes there."""
    template = load_template()
    names = {
        kind: [name for name, resource in template["Resources"].items() if resource["Type"] == kind]
        for kind in (
            "AWS::DynamoDB::Table",
            "AWS::SQS::Queue",
            "AWS::S3::Bucket",
            "AWS::Serverless::Function",
        )
    }
    account = PSEUDO_PARAMETERS["AWS::AccountId"]
    resources = LocalResources(
        tables={name: name for name in names["AWS::DynamoDB::Table"]},
        queue_urls={name: f"{DOCKER_AWS_ENDPOINT}/{account}/{name}" for name in names["AWS::SQS::Queue"]},
        queue_arns={name: f"arn:aws:sqs:us-east-1:{account}:{name}" for name in names["AWS::SQS::Queue"]},
        buckets={name: DEFAULT_BUCKET_NAME for name in names["AWS::S3::Bucket"]},
        template=template,
        parameters=LOCAL_PARAMETERS | {"AwsEndpointUrl": DOCKER_AWS_ENDPOINT},
    )
    shared = resources.environment()
    environments = {}
    for function in names["AWS::Serverless::Function"]:
        own = template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
        environments[function] = shared | {name: str(resources.resolve(value)) for name, value in own.items()}
    return environments


# ---------------------------------------------------------------------------------------------- writing


def build_all() -> dict[Path, Any]:
    """Every generated file, by path."""
    ingest = build()
    files: dict[Path, Any] = {EVENTS_DIR / name: event for name, event in ingest.items()}
    files[EVENTS_DIR / "processor_sqs_batch.json"] = processor_sqs_batch(ingest)
    files[EVENTS_DIR / "emitter_outbox_insert.json"] = emitter_outbox_insert()
    files[EVENTS_DIR / "emitter_change_rule_modify.json"] = emitter_change_rule_modify()
    files[ENV_FILE] = sam_local_environment()
    return files


def as_text(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    for path, document in build_all().items():
        path.write_text(as_text(document), encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
