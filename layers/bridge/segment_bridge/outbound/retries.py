"""Retries: what Segment has not taken yet for a retryable reason, set aside on the OutboundRetryQueue so
the stream's shard moves on, and sent again by the EmitterFunction with growing, jittered pauses.

A retry message holds one workspace's pending events (as many as fit in an SQS message):
    {"kind": "outbound retry", "workspace_id", "attempt", "not_before", "reason", "response"?,
     "events": [{"record_id", "written_at", "payload"}]}
`payload` is the track call as it was made (its deterministic messageId included), `written_at` when the
outbox item was written: an event is retried until OutboundRetryHours after that, then parked for an
operator. The pause before attempt n is FIRST_PAUSE·2^(n-1), at most MAX_PAUSE (SQS's longest delay),
jittered over its upper half, and never shorter than what Segment asked (Retry-After, X-RateLimit-Reset);
a message received before its `not_before` (a wait longer than SQS can delay) is put back until then.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from segment_bridge.outbound.track import Outbound

KIND = "outbound retry"
FIRST_PAUSE = 30.0
MAX_PAUSE = 900.0
"""SQS's longest DelaySeconds: after about 5 attempts an event is tried every 7.5 to 15 minutes."""
MESSAGE_MARGIN = 2048
"""Bytes kept free below the queue's message size (the template's Limits.Queue.MessageBytes)."""


def pause(attempt: int, asked: float = 0.0) -> float:
    """Seconds before retry `attempt` (1 = the first retry from the queue)."""
    base = min(MAX_PAUSE, FIRST_PAUSE * 2 ** max(0, attempt - 1))
    jittered = base / 2 + random.random() * base / 2  # noqa: S311  # nosec B311  # jitter, not a secret
    return float(max(jittered, asked))


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore")
    record_id: str = ""
    written_at: float
    payload: dict[str, Any]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    kind: str
    workspace_id: str
    attempt: int = 1
    not_before: float = 0.0
    reason: str = ""
    response: dict[str, Any] | None = None
    events: list[_Event]


@dataclass(frozen=True)
class RetryMessage:
    workspace_id: str
    attempt: int
    not_before: float
    reason: str
    events: list[Outbound]


def is_retry(document: Any) -> bool:
    return isinstance(document, dict) and document.get("kind") == KIND


def read_retry(body: str, record_id: str) -> RetryMessage | None:
    """A retry message's events (each `record_id` the message's own, for a partial batch response); None
    when the body is not one."""
    try:
        message = _Message.model_validate_json(body)
    except ValidationError:
        return None
    if message.kind != KIND:
        return None
    events = [
        Outbound(
            record_id,
            message.workspace_id,
            event.payload,
            json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8"),
            event.written_at,
        )
        for event in message.events
    ]
    return RetryMessage(message.workspace_id, message.attempt, message.not_before, message.reason, events)


def retry_messages(
    events: list[Outbound],
    *,
    attempt: int,
    not_before: float,
    reason: str,
    response: dict[str, Any] | None,
    max_bytes: int,
) -> list[str]:
    """One workspace's pending events as retry message bodies, each within `max_bytes` less the margin
    (an event is at most 32 KB, so every one fits)."""
    if not events:
        return []
    head: dict[str, Any] = {
        "kind": KIND,
        "workspace_id": events[0].workspace_id,
        "attempt": attempt,
        "not_before": round(not_before, 3),
        "reason": reason[:1024],
    }
    if response is not None:
        head["response"] = response
    empty = len(json.dumps(head | {"events": []}, ensure_ascii=False).encode("utf-8"))
    limit = max_bytes - MESSAGE_MARGIN
    bodies: list[str] = []
    chunk: list[str] = []
    size = empty
    for event in events:
        text = (
            json.dumps(
                {"record_id": event.record_id, "written_at": event.created_at},
                ensure_ascii=False,
            )[:-1]
            + ',"payload":'
            + event.body.decode("utf-8")
            + "}"
        )
        extra = len(text.encode("utf-8")) + 1
        if chunk and size + extra > limit:
            bodies.append(_body(head, chunk))
            chunk, size = [], empty
        chunk.append(text)
        size += extra
    bodies.append(_body(head, chunk))
    return bodies


def _body(head: dict[str, Any], events: list[str]) -> str:
    return json.dumps(head, ensure_ascii=False)[:-1] + ',"events":[' + ",".join(events) + "]}"
