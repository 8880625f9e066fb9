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
import ipaddress
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from segment_bridge import PRODUCT_NAME, __version__
from segment_bridge.mapping import FAILED, Expression, search
from segment_bridge.settings import EndpointPolicy
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


@dataclass(frozen=True)
class Destination:
    """Where a workspace's track calls go: its /v1/batch URL and its Segment source's write key."""

    url: str
    write_key: str = field(repr=False)


"""Which destinations a stack sends to (template parameter SegmentEndpoints, variable SEGMENT_ENDPOINTS):
- public: https to public addresses only (Segment's endpoints, a proxy on the internet). The default.
- private: also https to private, link-local, shared and loopback addresses (a proxy in your VPC).
- local: also plain http to a loopback address (a Segment stand-in on the same machine: tests and the
  local stack only).
Cloud metadata addresses are refused under every policy. (EndpointPolicy lives in settings.)"""

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "169.254.169.253", "fd00:ec2::254")
)


class EndpointRefused(ValueError):
    """A destination URL (or an address it resolves to) the stack's endpoint policy does not send to."""


def endpoint_url(endpoint: str, policy: EndpointPolicy = "public") -> str:
    """`us`, `eu`, or an explicit URL (a proxy, or a stand-in for tests) -> the /v1/batch URL. Refuses
    (EndpointRefused) a URL that is not https (plain http only to loopback under the `local` policy),
    carries credentials, a query or a fragment, or names an address the policy does not allow."""
    if endpoint in ENDPOINTS:
        return ENDPOINTS[endpoint]
    try:
        parts = urlsplit(endpoint)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise EndpointRefused("the endpoint must be us, eu or an https URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise EndpointRefused("the endpoint must be us, eu or an https URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise EndpointRefused("the endpoint URL must not carry credentials (the write key is sent apart)")
    if parts.query or parts.fragment or "?" in endpoint or "#" in endpoint:
        raise EndpointRefused("the endpoint URL must not have a query or a fragment")
    if port == 0:
        raise EndpointRefused("the endpoint URL has no usable port")
    address = _literal_address(host)
    loopback = host.lower().rstrip(".") == "localhost" or (address is not None and address.is_loopback)
    if parts.scheme == "http" and not (policy == "local" and loopback):
        raise EndpointRefused(
            "the endpoint must use https (plain http only to a loopback stand-in, SegmentEndpoints=local)"
        )
    if address is not None:
        refusal = address_refusal(address, policy)
        if refusal:
            raise EndpointRefused(refusal)
    elif loopback and policy == "public":
        raise EndpointRefused(address_refusal(ipaddress.ip_address("127.0.0.1"), policy) or "refused")
    return batch_url(endpoint)


def batch_url(endpoint: str) -> str:
    """The /v1/batch URL of `us`, `eu` or a URL, unchecked (what was stored is checked when sent)."""
    if endpoint in ENDPOINTS:
        return ENDPOINTS[endpoint]
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/batch") else base + "/v1/batch"


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def address_refusal(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, policy: EndpointPolicy
) -> str | None:
    """Why the policy does not send to this address (None: it does)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address: never a destination"
    if address.is_unspecified or address.is_multicast:
        return f"{address} is not a destination address"
    if policy == "public" and not address.is_global:
        return (
            f"{address} is a private, loopback or link-local address: refused unless the stack's "
            "SegmentEndpoints parameter is private"
        )
    return None


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
        """Whether the change fires the rule; Unsendable when `when` cannot be evaluated on it."""
        return bool(self._evaluate("when", self.when, document))

    def outbox_item(self, document: dict[str, Any], record_id: str) -> dict[str, Any]:
        """The outbox item this change stands for (validated like one the product writes); Unsendable
        when one of the rule's expressions cannot be evaluated on the record."""

        def value(expression: str | None, name: str = "") -> Any:
            return self._evaluate(name, expression, document) if expression else None

        workspace = value(self.workspace, "workspace")
        item: dict[str, Any] = {
            "pk": f"WS#{workspace}" if isinstance(workspace, str) and workspace else "",
            "sk": f"RULE#{self.name}#{record_id}",
            "event": self.event,
            "properties": {
                name: value(expression, f"properties.{name}") for name, expression in self.properties.items()
            },
        }
        for field_name, expression in (
            ("userId", self.user_id),
            ("anonymousId", self.anonymous_id),
            ("timestamp", self.timestamp),
        ):
            found = value(expression, field_name)
            if found is not None:
                item[field_name] = found if isinstance(found, str) else json.dumps(found, default=str)
        return item

    def _evaluate(self, name: str, expression: str, document: dict[str, Any]) -> Any:
        found = search(expression, document)  # JMESPath functions raise on values of another type
        if found is FAILED:
            raise Unsendable(f"change rule {self.name}: `{name}` cannot be evaluated on this record")
        return found


@dataclass(frozen=True)
class InvalidRule:
    """A stored change rule that no longer validates (written by hand, or by an older version). The
    records of its table are parked whole with `reason` (its name and the fields at fault, never their
    values); `table` is None when even that cannot be read, and then every app-table record is parked."""

    name: str
    table: str | None
    reason: str


def stored_rule(name: str, config: Any) -> ChangeRule | InvalidRule:
    """A change rule as stored (its JSON), validated; an InvalidRule rather than an exception."""
    try:
        return ChangeRule.model_validate_json(config if isinstance(config, str | bytes) else "")
    except ValidationError as error:
        fields = sorted({".".join(map(str, e["loc"])) or "rule" for e in error.errors(include_url=False)})
        reason = f"change rule {name} is stored but no longer valid ({', '.join(fields)}): fix or delete it"
    try:
        found = json.loads(config)
        table = found.get("table") if isinstance(found, dict) else None
    except (TypeError, ValueError):
        table = None
    return InvalidRule(name, table if isinstance(table, str) and table else None, reason)
