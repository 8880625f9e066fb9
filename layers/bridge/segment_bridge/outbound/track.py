"""Outbound: the product's outbox items as Segment `track` calls, packed within Segment's limits.

Pure logic: what to send, under which messageId, in which requests, and what an answer means. The
emitter's delivery loop (delivery.py) does the HTTP and the waiting.

The outbox contract (what the product writes to the OutboxTable):
    pk = "WS#<workspace_id>", sk = any unique id of the event (e.g. "EVT#<uuid>" or a natural key),
    event (str), userId or anonymousId (str), properties (map, optional), timestamp (ISO 8601, optional:
    defaults to when the item was written), context (map, optional).
Only new items (INSERT) are sent; changing or deleting an outbox item sends nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from segment_bridge import PRODUCT_NAME, __version__
from segment_bridge.destinations import Unsendable
from segment_bridge.values import to_json

MAX_EVENT_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024
MAX_REQUEST_EVENTS = 2500
_ENVELOPE_BYTES = 64  # {"batch":[...],"sentAt":"..."} around the events


class OutboxItem(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    pk: str = Field(pattern=r"^WS#.+")
    sk: str = Field(min_length=1)
    event: str = Field(min_length=1, max_length=1024)
    userId: str | None = Field(default=None, min_length=1, max_length=1024)
    anonymousId: str | None = Field(default=None, min_length=1, max_length=1024)
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime | None = None

    @model_validator(mode="after")
    def _identity(self) -> OutboxItem:
        if not self.userId and not self.anonymousId:
            raise ValueError("userId or anonymousId is required")
        return self

    @property
    def workspace_id(self) -> str:
        return self.pk.removeprefix("WS#")


@dataclass(frozen=True)
class Outbound:
    """One event to send: the stream record it came from, its workspace, and its serialised payload."""

    record_id: str
    workspace_id: str
    payload: dict[str, Any]
    body: bytes
    created_at: float


def outbound_message_id(table: str, keys: dict[str, Any]) -> str:
    """Deterministic per source item, so every retry of it dedupes at Segment (24 h on messageId); the
    `sbo-` prefix keeps it apart from any inbound messageId (ours are `sb-`, Segment's `api-`/uuids)."""
    canonical = json.dumps({"table": table, "keys": keys}, sort_keys=True, separators=(",", ":"), default=str)
    return "sbo-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def track_call(
    item: dict[str, Any], *, table: str, keys: dict[str, Any], record_id: str, created_at: float
) -> Outbound:
    """The Segment track call for an outbox item; raises Unsendable for an invalid or oversized one."""
    try:
        outbox = OutboxItem.model_validate(to_json(item))
    except ValidationError as error:
        reasons = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'item'}: {e['msg']}" for e in error.errors(include_url=False)
        )
        raise Unsendable(f"invalid outbox item ({reasons})") from None
    payload: dict[str, Any] = {
        "type": "track",
        "event": outbox.event,
        "properties": outbox.properties,
        "timestamp": _utc_stamp(outbox.timestamp, created_at),
        "messageId": outbound_message_id(table, keys),
        "context": {**outbox.context, "integration": {"name": PRODUCT_NAME, "version": __version__}},
    }
    if outbox.userId:
        payload["userId"] = outbox.userId
    if outbox.anonymousId:
        payload["anonymousId"] = outbox.anonymousId
    try:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
    except (TypeError, ValueError) as error:  # e.g. a circular or non-text value
        raise Unsendable(f"the item's values cannot be written as JSON ({type(error).__name__})") from None
    if len(body) > MAX_EVENT_BYTES:
        raise Unsendable(f"the event is {len(body)} bytes; Segment accepts at most {MAX_EVENT_BYTES}")
    return Outbound(record_id, outbox.workspace_id, payload, body, created_at)


def _utc_stamp(timestamp: datetime | None, created_at: float) -> str:
    """The event's time in UTC as Segment takes it; Unsendable when it has no UTC equivalent (year 1 or
    9999 with an offset that crosses the calendar's ends) or the record's own time is unreadable."""
    try:
        moment = timestamp or datetime.fromtimestamp(created_at, tz=UTC)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        raise Unsendable("the timestamp has no UTC equivalent (out of range)") from None


def requests_for(events: list[Outbound]) -> list[list[Outbound]]:
    """Events packed into as few /v1/batch requests as Segment's limits allow, in order."""
    requests: list[list[Outbound]] = []
    current: list[Outbound] = []
    size = _ENVELOPE_BYTES
    for event in events:
        if current and (len(current) == MAX_REQUEST_EVENTS or size + len(event.body) + 1 > MAX_REQUEST_BYTES):
            requests.append(current)
            current, size = [], _ENVELOPE_BYTES
        current.append(event)
        size += len(event.body) + 1
    if current:
        requests.append(current)
    return requests


def request_body(events: list[Outbound], sent_at: datetime) -> bytes:
    stamp = sent_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return (
        b'{"batch":[' + b",".join(event.body for event in events) + b'],"sentAt":"' + stamp.encode() + b'"}'
    )


Verdict = Literal["delivered", "retry", "permanent"]


def verdict(status: int) -> Verdict:
    """Segment's own rules: 2xx done; 408, 429 and 5xx (not 501) worth retrying; other answers final."""
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 429) or (500 <= status < 600 and status != 501):
        return "retry"
    return "permanent"


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds (a number of seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None
