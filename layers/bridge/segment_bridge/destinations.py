"""Where and when a workspace's outbound events go: its Segment endpoint and write key, the endpoint
policy that decides which addresses a stack sends to, and the change rules that turn app-table changes
into track calls. Models the store reads and writes; no I/O.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from segment_bridge.mapping import FAILED, Expression, search
from segment_bridge.settings import EndpointPolicy

ENDPOINTS = {
    "us": "https://api.segment.io/v1/batch",
    "eu": "https://events.eu1.segmentapis.com/v1/batch",
}


class Unsendable(ValueError):
    """An outbox item that can never be sent as it is (parked with this reason)."""


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
