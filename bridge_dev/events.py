"""Writes the sample events in events/ (API Gateway HTTP API v2 requests to the IngestFunction).

They are committed: `sam local invoke IngestFunction -e events/<file>.json` and the tests use them.
Run `python -m bridge_dev.events` to write them again after changing this file.

The keys below are for the local stack and tests only: the local stack seeds these workspaces.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

from segment_bridge.auth import sign

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"

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


def main() -> None:
    for name, event in build().items():
        (EVENTS_DIR / name).write_text(
            json.dumps(event, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        print(f"wrote events/{name}")


if __name__ == "__main__":
    main()
