"""Intake: from one HTTP delivery to events durably on the queue, judged one by one.

Pure logic over two small ports (a key directory and a sink), so it runs the same in Lambda, in the
local stack and in unit tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol

import orjson

from segment_bridge import PRODUCT_NAME
from segment_bridge.envelope import pack
from segment_bridge.errors import (
    InvalidPayload,
    NoValidEvents,
    PayloadTooLarge,
    UnreadableBody,
    UnsupportedEncoding,
)
from segment_bridge.ingest.auth import (
    SIGNATURE_HEADER,
    credential_from_request,
    needs_body_for_credentials,
    unauthorized,
    verify_signature,
)
from segment_bridge.ingest.spec import EVENT_TYPES, InvalidEvent, validate_event
from segment_bridge.keys import WorkspaceAuth
from segment_bridge.limits import UNSTORABLE_NUMBER, storable_number
from segment_bridge.stats import count_day
from segment_bridge.timestamps import FUTURE_TOLERANCE, InvalidTimestamp
from segment_bridge.timestamps import iso as _iso
from segment_bridge.timestamps import parse as parse_timestamp

SINGLE_CALL_PATHS = {f"/v1/{kind}": kind for kind in EVENT_TYPES - {"delete"}}
"""Segment's HTTP API: /v1/identify, /v1/track, ... take one event whose type the path decides."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 8 * 1024 * 1024
    """Decoded (decompressed) body. Segment's largest webhook batch is about 4 MB."""
    max_events: int = 4000
    """Segment Webhooks (Actions) sends at most 4,000 events per batch."""
    max_event_bytes: int = 64 * 1024
    """One enriched event. Segment caps what a client sends at 32 KB; what it relays to a webhook carries
    Segment's own additions, so we leave headroom rather than refuse events Segment accepted."""
    queue_message_bytes: int = 256 * 1024
    max_event_depth: int = 32
    """Levels of nesting in one event, itself included. DynamoDB holds 32 levels of nested attributes
    and the processor stores traits and properties as they nest in the event."""
    max_body_depth: int = 256
    """An event nesting deeper than this is not even kept: the whole body is refused (400). Nothing
    Segment sends nests so deep, and Python's json modules recurse."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What intake needs of an API Gateway HTTP API (v2) request. Header names are lower-case."""

    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: str | None
    is_base64_encoded: bool
    received_at: datetime
    request_id: str


class KeyDirectory(Protocol):
    def workspace_for_key(self, key: str) -> WorkspaceAuth | None: ...


class Sink(Protocol):
    def enqueue(self, bodies: list[str], workspace_id: str) -> None: ...

    def keep_rejected(
        self, workspace_id: str, request_id: str, received_at: datetime, records: list[dict[str, Any]]
    ) -> None: ...

    def add_daily_counts(self, workspace_id: str, day: date, counts: dict[str, int]) -> None: ...


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    message_id: str | None
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "messageId": self.message_id, "reason": self.reason}


@dataclass(slots=True)
class Outcome:
    """What happened to a delivery: the answer's body, and figures for logs and metrics."""

    workspace_id: str
    accepted: int = 0
    echoes: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    messages: int = 0

    def figures(self) -> dict[str, object]:
        """For logs: counts only, never event content."""
        return {
            "workspace_id": self.workspace_id,
            "accepted": self.accepted,
            "rejected": len(self.rejected),
            "echoes": self.echoes,
            "messages": self.messages,
        }

    def body(self) -> dict[str, object]:
        return {
            "success": True,
            "accepted": self.accepted,
            "rejected": [rejection.as_dict() for rejection in self.rejected],
            "echoes": self.echoes,
        }


@dataclass(slots=True)
class Payload:
    shape: Literal["single", "array", "batch"]
    events: list[Any]
    write_key: object = None
    sent_at: datetime | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    text: str = ""

    def signed_bytes(self) -> bytes:
        """What Segment signs: the whole body for one event, the raw bytes of an array's first element."""
        if self.shape != "array":
            return self.text.encode("utf-8")
        start = self.text.index("[") + 1
        while self.text[start] in " \t\r\n":
            start += 1
        _, end = json.JSONDecoder().raw_decode(self.text, start)
        return self.text[start:end].encode("utf-8")


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


FUNCTION_USER_AGENT = "segment-bridge-function"
"""The User-Agent the Segment Destination Function shipped in segment/ sends (its version after a "/")."""


def delivery_source(headers: Mapping[str, str]) -> str:
    """Where a delivery came from, as a privacy request's receipt says it (privacy/receipts.py): Segment
    itself (its webhook destinations' User-Agent: "Segment (Actions)", "Segment.io/1.0"), our Destination
    Function, or anything else that holds the workspace's key (the product's backend: "api"). A label
    only: what a delete may do does not depend on it."""
    agent = headers.get("user-agent", "").strip().lower()
    if agent.startswith(FUNCTION_USER_AGENT):
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


def decode_body(
    body: str | None, is_base64_encoded: bool, content_encoding: str | None, limits: Limits
) -> bytes:
    """The body's bytes: base64 (API Gateway's binary bodies) and gzip/deflate undone, size bounded."""
    if not body:
        raise UnreadableBody("The request has no body.")
    if is_base64_encoded:
        try:
            data = base64.b64decode(body, validate=True)
        except ValueError:  # binascii.Error, or characters beyond ASCII
            raise UnreadableBody("The body is marked base64 but is not valid base64.") from None
    else:
        try:
            data = body.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that stands for no byte
            raise UnreadableBody("The body is not UTF-8 text.") from None
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("gzip", "x-gzip") or (not encoding and data[:2] == b"\x1f\x8b"):
        data = _inflate(data, zlib.MAX_WBITS | 16, "gzip", limits.max_body_bytes)
    elif encoding == "deflate":
        data = _inflate(data, zlib.MAX_WBITS, "deflate", limits.max_body_bytes)
    elif encoding not in ("", "identity"):
        raise UnsupportedEncoding("Content-Encoding must be gzip, deflate or identity.")
    if len(data) > limits.max_body_bytes:
        raise PayloadTooLarge(f"The body is larger than {limits.max_body_bytes} bytes.")
    return data


def _inflate(data: bytes, wbits: int, name: str, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error:
        raise UnreadableBody(f"The body is not valid {name} data.") from None
    if len(out) > max_bytes:
        raise PayloadTooLarge(f"The decompressed body is larger than {max_bytes} bytes.")
    if not inflater.eof:
        raise UnreadableBody(f"The {name} body is truncated.")
    return out


def parse_payload(raw: bytes, call_type: str | None) -> Payload:
    """One event, an array of events, or `{"batch": [...]}` (Segment's batch API) into a Payload."""
    try:
        text = raw.decode("utf-8")
        document = json.loads(text)
    except UnicodeDecodeError:
        raise UnreadableBody("The body is not UTF-8 text.") from None
    except json.JSONDecodeError as error:
        raise UnreadableBody(
            f"The body is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})."
        ) from None
    except RecursionError:
        raise UnreadableBody("The body nests too deeply to be read.") from None
    except ValueError:  # an integer of more than 4,300 digits (sys.get_int_max_str_digits)
        raise UnreadableBody("The body holds a number too long to be read.") from None

    if isinstance(document, list):
        payload = Payload(shape="array", events=document, text=text)
    elif isinstance(document, dict) and "batch" in document:
        batch = document["batch"]
        if not isinstance(batch, list):
            raise InvalidPayload("`batch` must be an array of events.")
        payload = Payload(
            shape="batch",
            events=batch,
            write_key=document.get("writeKey"),
            sent_at=_optional_datetime(document.get("sentAt")),
            context=_optional_object(document.get("context")),
            integrations=_optional_object(document.get("integrations")),
            text=text,
        )
    elif isinstance(document, dict):
        payload = Payload(shape="single", events=[document], write_key=document.get("writeKey"), text=text)
    else:
        raise InvalidPayload("The body must be a JSON object (one event or a batch) or an array of events.")

    if call_type and payload.shape != "single":
        raise InvalidPayload(f"/v1/{call_type} takes one event; send batches to /v1/batch.")
    if not payload.events:
        raise InvalidPayload("The batch holds no events.")
    return payload


def _optional_datetime(value: object) -> datetime | None:
    try:
        return parse_timestamp(value) if value else None
    except InvalidTimestamp:
        return None


def _optional_object(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) and value else None


def judge(
    payload: Payload,
    workspace_id: str,
    received_at: datetime,
    call_type: str | None,
    limits: Limits,
    outcome: Outcome,
) -> tuple[list[bytes], list[dict[str, Any]]]:
    """Each event on its own: echoes skipped, invalid ones rejected (and returned to be kept), valid ones
    enriched and serialised. Returns (serialised accepted events, rejected records to keep)."""
    accepted: list[bytes] = []
    kept: list[dict[str, Any]] = []
    received = iso(received_at)

    def reject(index: int, event: Any, message_id: Any, reason: str) -> None:
        rejection = Rejection(index, message_id if isinstance(message_id, str) else None, reason)
        outcome.rejected.append(rejection)
        kept.append(
            {**rejection.as_dict(), "workspaceId": workspace_id, "receivedAt": received, "event": event}
        )

    for index, event in enumerate(payload.events):
        if isinstance(event, dict):
            _merge_batch_fields(event, payload, call_type)
            if _is_echo(event):
                outcome.echoes += 1
                continue
        message_id = event.get("messageId") if isinstance(event, dict) else None
        try:
            unstorable = _unstorable(event, limits)
            model = validate_event(event)
            if unstorable:
                raise InvalidEvent(unstorable)
            if model.receivedAt is not None and model.receivedAt - received_at > FUTURE_TOLERANCE:
                raise InvalidEvent("receivedAt is more than 23 hours after the delivery was received")
        except InvalidEvent as error:
            reject(index, event, message_id, error.reason)
            continue
        as_sent = dict(event)  # enrich sets top-level fields only
        try:
            enrich(event, model, workspace_id, received_at, payload.sent_at)
            chunk = serialise(event)
        except OverflowError:
            reject(
                index,
                as_sent,
                message_id,
                "a timestamp falls outside years 1-9999 once in UTC and skew-corrected",
            )
            continue
        except UnicodeEncodeError:
            reject(index, as_sent, message_id, "a string is not valid Unicode (a lone surrogate)")
            continue
        if len(chunk) > limits.max_event_bytes:
            reject(
                index,
                event,
                event["messageId"],
                f"the event is {len(chunk)} bytes; the limit is {limits.max_event_bytes}",
            )
            continue
        accepted.append(chunk)
    outcome.accepted = len(accepted)
    return accepted, kept


def _unstorable(event: Any, limits: Limits) -> str | None:
    """Why the processor could not store `event` (nesting, numbers), or None.

    Raises UnreadableBody for an event nesting deeper than `limits.max_body_depth`: too deep to keep.
    """
    reason = None
    stack = [(event, 1)] if isinstance(event, dict | list) else []
    while stack:
        value, depth = stack.pop()
        if depth > limits.max_event_depth:
            if depth > limits.max_body_depth:
                raise UnreadableBody(f"An event nests deeper than {limits.max_body_depth} levels.")
            reason = f"the event nests deeper than {limits.max_event_depth} levels"
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
            elif reason is None and not storable_number(child):
                reason = UNSTORABLE_NUMBER
    return reason


def serialise(event: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON. orjson is ~8x faster than json.dumps here; it refuses integers beyond 64 bits,
    which JSON allows, so those events take the standard library's path."""
    try:
        return orjson.dumps(event)
    except orjson.JSONEncodeError:
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _merge_batch_fields(event: dict[str, Any], payload: Payload, call_type: str | None) -> None:
    """What Segment's batch API does: top-level context/integrations apply to every event (the event's own
    keys win); the path of a single call decides its type; a writeKey never travels further."""
    event.pop("writeKey", None)
    if call_type:
        event["type"] = call_type
    for name, shared in (("context", payload.context), ("integrations", payload.integrations)):
        if shared:
            own = event.get(name)
            event[name] = {**shared, **own} if isinstance(own, dict) else dict(shared)


def _is_echo(event: dict[str, Any]) -> bool:
    context = event.get("context")
    integration = context.get("integration") if isinstance(context, dict) else None
    return isinstance(integration, dict) and integration.get("name") == PRODUCT_NAME


def enrich(
    event: dict[str, Any],
    model: Any,
    workspace_id: str,
    received_at: datetime,
    batch_sent_at: datetime | None,
) -> None:
    """receivedAt, a clock-skew-corrected timestamp, a deterministic messageId, string ids.

    An event relayed by Segment (it already has receivedAt) keeps Segment's timestamps. For an event sent
    straight by an SDK: timestamp = receivedAt - (sentAt - originalTimestamp), as Segment computes it.
    """
    if not model.messageId:
        event["messageId"] = derived_message_id(workspace_id, event)
    for name in ("userId", "anonymousId", "groupId", "previousId"):
        value = event.get(name)
        if value is not None and not isinstance(value, str):
            event[name] = getattr(model, name)
    if model.receivedAt is not None:
        if model.timestamp is None:
            event["timestamp"] = iso(_aware(model.originalTimestamp or model.receivedAt))
        return
    event["receivedAt"] = iso(received_at)
    original = model.originalTimestamp or model.timestamp
    sent_at = model.sentAt or batch_sent_at
    if original is None:
        event["timestamp"] = event["receivedAt"]
        return
    original = _aware(original)
    event.setdefault("originalTimestamp", iso(original))
    if sent_at is None:
        event["timestamp"] = iso(original)
        return
    event.setdefault("sentAt", iso(_aware(sent_at)))
    event["timestamp"] = iso(received_at - (_aware(sent_at) - original))


def derived_message_id(workspace_id: str, event: Mapping[str, Any]) -> str:
    """A messageId for an event that has none: the same event delivered again gets the same id."""
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(f"{workspace_id}\n{canonical}".encode()).hexdigest()
    return f"sb-{digest[:40]}"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as Segment writes timestamps (timestamps.iso)."""
    return _iso(moment)
