"""What one delivery is to intake: the request as API Gateway gives it, the limits it is judged by, and
its outcome (the answer's body and the figures for logs and metrics)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


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
