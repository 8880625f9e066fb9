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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from segment_bridge import PRODUCT_NAME, __version__
from segment_bridge.mapping import FAILED, Expression, search
from segment_bridge.values import to_json

ENDPOINTS = {
    "us": "https://api.segment.io/v1/batch",
    "eu": "https://events.eu1.segmentapis.com/v1/batch",
}
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


class Unsendable(ValueError):
    """An outbox item that can never be sent as it is (parked with this reason)."""


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
    timestamp = outbox.timestamp or datetime.fromtimestamp(created_at, tz=UTC)
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    payload: dict[str, Any] = {
        "type": "track",
        "event": outbox.event,
        "properties": outbox.properties,
        "timestamp": timestamp.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "messageId": outbound_message_id(table, keys),
        "context": {**outbox.context, "integration": {"name": PRODUCT_NAME, "version": __version__}},
    }
    if outbox.userId:
        payload["userId"] = outbox.userId
    if outbox.anonymousId:
        payload["anonymousId"] = outbox.anonymousId
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
    if len(body) > MAX_EVENT_BYTES:
        raise Unsendable(f"the event is {len(body)} bytes; Segment accepts at most {MAX_EVENT_BYTES}")
    return Outbound(record_id, outbox.workspace_id, payload, body, created_at)


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


@dataclass(frozen=True)
class Destination:
    """Where a workspace's track calls go: its /v1/batch URL and its Segment source's write key."""

    url: str
    write_key: str = field(repr=False)


def endpoint_url(endpoint: str) -> str:
    """`us`, `eu`, or an explicit URL (a proxy, or a stand-in for tests) -> the /v1/batch URL."""
    if endpoint in ENDPOINTS:
        return ENDPOINTS[endpoint]
    if not endpoint.startswith(("https://", "http://")):
        raise ValueError("the endpoint must be us, eu or an http(s) URL")
    return endpoint.rstrip("/") + ("" if endpoint.rstrip("/").endswith("/v1/batch") else "/v1/batch")


class ChangeRule(BaseModel):
    """Turns a change in an app-owned table into a track call, without code. Paths are JMESPath over
    {"eventName": "INSERT"|"MODIFY"|"REMOVE", "old": <old image>, "new": <new image>}, e.g.
    when = "new.status == 'COMPLETED' && old.status != 'COMPLETED'", properties = {"flowId": "new.flowId"}."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    table: str = Field(min_length=1, description="The app table whose stream feeds the emitter.")
    when: Expression
    event: str = Field(min_length=1, max_length=1024)
    workspace: Expression = "new.workspace_id"
    user_id: Expression | None = "new.userId"
    anonymous_id: Expression | None = None
    properties: dict[str, Expression] = Field(default_factory=dict)
    timestamp: Expression | None = None

    def fires(self, document: dict[str, Any]) -> bool:
        found = search(self.when, document)  # a `when` that fails on this change does not fire
        return found is not FAILED and bool(found)

    def outbox_item(self, document: dict[str, Any], record_id: str) -> dict[str, Any]:
        """The outbox item this change stands for (validated like one the product writes)."""

        def value(expression: str | None) -> Any:
            found = search(expression, document) if expression else None
            return None if found is FAILED else found  # a path that fails finds nothing

        workspace = value(self.workspace)
        item: dict[str, Any] = {
            "pk": f"WS#{workspace}" if isinstance(workspace, str) and workspace else "",
            "sk": f"RULE#{self.name}#{record_id}",
            "event": self.event,
            "properties": {name: value(expression) for name, expression in self.properties.items()},
        }
        for field_name, expression in (
            ("userId", self.user_id),
            ("anonymousId", self.anonymous_id),
            ("timestamp", self.timestamp),
        ):
            found = value(expression)
            if found is not None:
                item[field_name] = str(found)
        return item
