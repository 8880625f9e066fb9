"""Intake: from one HTTP delivery to events durably on the queue, judged one by one.

Pure logic over two small ports (a key directory and a sink), so it runs the same in Lambda, in the
local stack and in unit tests. The body is read in `body`, its events judged in `judging`; what a
delivery is (request, limits, outcome) is in `delivery`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Protocol

from segment_bridge.envelope import pack
from segment_bridge.errors import NoValidEvents, PayloadTooLarge
from segment_bridge.ingest.auth import (
    SIGNATURE_HEADER,
    credential_from_request,
    needs_body_for_credentials,
    unauthorized,
    verify_signature,
)
from segment_bridge.ingest.body import Payload, decode_body, parse_payload
from segment_bridge.ingest.delivery import HttpRequest, Limits, Outcome, Rejection
from segment_bridge.ingest.judging import derived_message_id, enrich, iso, judge, serialise
from segment_bridge.ingest.spec import EVENT_TYPES
from segment_bridge.keys import WorkspaceAuth
from segment_bridge.stats import count_day

__all__ = [
    "HttpRequest",
    "KeyDirectory",
    "Limits",
    "Outcome",
    "Payload",
    "Rejection",
    "Sink",
    "decode_body",
    "derived_message_id",
    "enrich",
    "iso",
    "judge",
    "parse_payload",
    "prepare",
    "receive",
    "serialise",
]

SINGLE_CALL_PATHS = {f"/v1/{kind}": kind for kind in EVENT_TYPES - {"delete"}}
"""Segment's HTTP API: /v1/identify, /v1/track, ... take one event whose type the path decides."""


class KeyDirectory(Protocol):
    def workspace_for_key(self, key: str) -> WorkspaceAuth | None: ...


class Sink(Protocol):
    def enqueue(self, bodies: list[str], workspace_id: str) -> None: ...

    def keep_rejected(
        self, workspace_id: str, request_id: str, received_at: datetime, records: list[dict[str, Any]]
    ) -> None: ...

    def add_daily_counts(self, workspace_id: str, day: date, counts: dict[str, int]) -> None: ...


def receive(request: HttpRequest, *, directory: KeyDirectory, sink: Sink, limits: Limits) -> Outcome:
    """Authenticate, read and judge a delivery; queue what is valid and keep what is not.

    Returns only once every accepted event is on the queue (the sink raises otherwise).
    Raises a BridgeError for a delivery that cannot be taken as a whole.
    """
    call_type = SINGLE_CALL_PATHS.get(request.path)
    workspace = None
    if not needs_body_for_credentials(request.headers, request.query):
        workspace = _authenticate(credential_from_request(request.headers, request.query), directory)
    raw = decode_body(
        request.body, request.is_base64_encoded, request.headers.get("content-encoding"), limits
    )
    payload = parse_payload(raw, call_type)
    if workspace is None:
        workspace = _authenticate(
            credential_from_request(request.headers, request.query, payload.write_key), directory
        )
    if workspace.shared_secret:
        verify_signature(
            workspace.shared_secret, payload.signed_bytes(), request.headers.get(SIGNATURE_HEADER)
        )
    if len(payload.events) > limits.max_events:
        raise PayloadTooLarge(
            f"A request holds at most {limits.max_events} events; this one holds {len(payload.events)}."
        )

    outcome = Outcome(workspace_id=workspace.workspace_id)
    accepted, kept = judge(payload, workspace.workspace_id, request.received_at, call_type, limits, outcome)
    if kept:
        sink.keep_rejected(workspace.workspace_id, request.request_id, request.received_at, kept)
    if accepted:
        bodies = pack(
            accepted,
            workspace_id=workspace.workspace_id,
            request_id=request.request_id,
            received_at=iso(request.received_at),
            max_bytes=limits.queue_message_bytes,
            source=delivery_source(request.headers),
        )
        sink.enqueue(bodies, workspace.workspace_id)
        outcome.messages = len(bodies)
    count_day(
        sink,
        workspace.workspace_id,
        request.received_at,
        accepted=outcome.accepted,
        rejected=len(outcome.rejected),
        echoes=outcome.echoes,
    )
    if outcome.rejected and not outcome.accepted:
        raise NoValidEvents(
            f"None of the {len(outcome.rejected)} events is valid; they were kept for inspection.",
            details=[rejection.as_dict() for rejection in outcome.rejected],
        )
    return outcome


FUNCTION_USER_AGENT = "Segment (Function) segment-bridge"
"""The User-Agent the Segment Destination Function shipped in segment/ sends (segment/bridge-function.js):
matched before Segment's own, which it starts like."""


def delivery_source(headers: Mapping[str, str]) -> str:
    """Where a delivery came from, as a privacy request's receipt says it (privacy/receipts.py): Segment
    itself (its webhook destinations' User-Agent: "Segment (Actions)", "Segment.io/1.0"), our Destination
    Function (FUNCTION_USER_AGENT), or anything else that holds the workspace's key (the product's
    backend: "api"). A label only: what a delete may do does not depend on it."""
    agent = headers.get("user-agent", "").strip().lower()
    if agent.startswith(FUNCTION_USER_AGENT.lower()):
        return "function"
    if agent.startswith("segment"):
        return "segment"
    return "api"


def prepare(
    raw: bytes, workspace_id: str, received_at: datetime, path: str | None = None
) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """A body's events as intake would queue them (validated and enriched), and the rejections, with no
    authentication and nothing stored: what `segment-bridge mapping preview` runs a file through."""
    call_type = SINGLE_CALL_PATHS.get(path or "")
    limits = Limits()
    outcome = Outcome(workspace_id=workspace_id)
    accepted, _ = judge(parse_payload(raw, call_type), workspace_id, received_at, call_type, limits, outcome)
    return [json.loads(chunk) for chunk in accepted], outcome.rejected


def _authenticate(key: str | None, directory: KeyDirectory) -> WorkspaceAuth:
    workspace = directory.workspace_for_key(key) if key else None
    if workspace is None:
        raise unauthorized()
    return workspace
