"""Outbound: the product's outbox items as Segment `track` calls, packed within Segment's limits.

Pure logic: what to send, under which messageId, in which requests, and what an answer means (ANSWERS,
the one table of Segment's statuses). The emitter's send loop (sending.py) does the HTTP and the waiting.

The outbox contract (what the product writes to the OutboxTable):
    pk = "WS#<workspace_id>", sk = any unique id of the event (e.g. "EVT#<uuid>" or a natural key),
    event (str), userId or anonymousId (str; a number is sent as its text, as inbound ids are stored),
    properties (map, optional), timestamp (ISO 8601, optional: defaults to when the item was written),
    context (map, optional).
Only new items (INSERT) are sent; changing or deleting an outbox item sends nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from segment_bridge import PRODUCT_NAME, __version__
from segment_bridge.destinations import Unsendable
from segment_bridge.values import to_json

MAX_EVENT_BYTES = 32 * 1024
"""Segment's limit per event (its SDKs drop what is larger; we park it)."""
MAX_REQUEST_BYTES = 475_000
"""A whole /v1/batch body, envelope and writeKey included, before gzip. Segment documents 500 KB and its
SDKs stay at or below 500,000 bytes (analytics-python 475,000, analytics-node 491,520); a 535,982-byte
batch is on record answered 400. We keep analytics-python's margin."""
MAX_REQUEST_EVENTS = 2500


class OutboxItem(BaseModel):
    # A number in userId/anonymousId (a DynamoDB Number) is sent as its text, as intake stores inbound ids
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

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
    item: dict[str, Any],
    *,
    table: str,
    keys: dict[str, Any],
    record_id: str,
    created_at: float,
    integration: str = PRODUCT_NAME,
) -> Outbound:
    """The Segment track call for an outbox item, marked as sent by `integration` (the deployment's
    IntegrationName, which ingest recognises as an echo); raises Unsendable for an invalid or oversized
    one."""
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
        "context": {**outbox.context, "integration": {"name": integration, "version": __version__}},
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


def envelope_bytes(write_key: str) -> int:
    """The bytes a request body holds besides its events (and the commas between them)."""
    return len(request_body([], datetime(2000, 1, 1, tzinfo=UTC), write_key))


def requests_for(events: list[Outbound], write_key: str = "") -> list[list[Outbound]]:
    """Events packed into as few /v1/batch requests as Segment's limits allow (MAX_REQUEST_BYTES for the
    whole body, writeKey included; MAX_REQUEST_EVENTS), in order."""
    requests: list[list[Outbound]] = []
    current: list[Outbound] = []
    envelope = envelope_bytes(write_key)
    size = envelope
    for event in events:
        extra = len(event.body) + (1 if current else 0)
        if current and (len(current) == MAX_REQUEST_EVENTS or size + extra > MAX_REQUEST_BYTES):
            requests.append(current)
            current, size, extra = [], envelope, len(event.body)
        current.append(event)
        size += extra
    if current:
        requests.append(current)
    return requests


def request_body(events: list[Outbound], sent_at: datetime, write_key: str = "") -> bytes:
    """The /v1/batch body: the events, sentAt, and the writeKey (Segment's SDKs send it in the body as
    well as in Basic auth)."""
    stamp = sent_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    key = json.dumps(write_key, ensure_ascii=False).encode("utf-8")
    return (
        b'{"batch":['
        + b",".join(event.body for event in events)
        + b'],"sentAt":"'
        + stamp.encode()
        + b'","writeKey":'
        + key
        + b"}"
    )


Verdict = Literal["delivered", "retry", "permanent"]


class Rule(NamedTuple):
    first: int
    last: int
    verdict: Verdict
    why: str


ANSWERS: tuple[Rule, ...] = (
    Rule(200, 299, "delivered", "Segment took the batch (it dedupes on messageId for 24 h)"),
    Rule(300, 399, "permanent", "a redirect, never followed: the write key would travel to another host"),
    Rule(400, 400, "permanent", "the batch is refused: one of >1 events is found by halving (SPLIT_ON)"),
    Rule(408, 408, "retry", "request timeout: retried by analytics-python"),
    Rule(410, 410, "retry", "gone: analytics-python retries it, for parity with analytics-node"),
    Rule(413, 413, "permanent", "too large: halved like a 400, as the limits are ours to keep"),
    Rule(429, 429, "retry", "rate limited: Retry-After or X-RateLimit-Reset holds that workspace only"),
    Rule(460, 460, "retry", "Segment's client-timeout answer: retried by analytics-python"),
    Rule(400, 499, "permanent", "refused (401 bad write key, 403, 404, 422...): an operator must act"),
    Rule(501, 501, "permanent", "not implemented: the same request never succeeds"),
    Rule(505, 505, "permanent", "HTTP version not supported: the same request never succeeds"),
    Rule(511, 511, "permanent", "network authentication: analytics-python retries it only with OAuth"),
    Rule(500, 599, "retry", "Segment failing (500, 502, 503, 504...): retried until the horizon"),
)
"""What each status of Segment's tracking API means, as Segment's own Python client treats it; the first
rule whose range holds the status decides. Anything else (1xx, 6xx...) is permanent."""
SPLIT_ON = frozenset({400, 413})
"""Refusals of a whole batch that may be caused by one event: a batch of more than one is halved."""


def verdict(status: int) -> Verdict:
    return answer_rule(status).verdict


def answer_rule(status: int) -> Rule:
    for rule in ANSWERS:
        if rule.first <= status <= rule.last:
            return rule
    return Rule(status, status, "permanent", "not an answer Segment gives")


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds (a number of seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC by RFC 5322
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def rate_limit_reset_seconds(value: str | None, now: datetime) -> float | None:
    """X-RateLimit-Reset as seconds from `now`. Segment's APIs send it as a time (the Public API documents
    an RFC 5322 date; its JavaScript clients read a Unix time): an HTTP date, Unix seconds or Unix
    milliseconds; a small number is read as seconds to wait. None if absent or unreadable."""
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return retry_after_seconds(value, now)
    if number != number or number < 0:
        return None
    epoch = now.timestamp()
    if number > 1e12:  # Unix milliseconds
        return max(0.0, number / 1000 - epoch)
    if number > 1e9:  # Unix seconds
        return max(0.0, number - epoch)
    return number


def requested_wait(headers: dict[str, str], now: datetime) -> float | None:
    """How long Segment asked this workspace to wait: Retry-After, else X-RateLimit-Reset (headers in
    lower case); None when it asked nothing readable."""
    wait = retry_after_seconds(headers.get("retry-after"), now)
    if wait is None:
        wait = rate_limit_reset_seconds(headers.get("x-ratelimit-reset"), now)
    return wait
