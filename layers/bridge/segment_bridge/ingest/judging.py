"""Judging a payload's events one by one: echoes skipped, invalid ones rejected (and kept), valid ones
enriched (receivedAt, a skew-corrected timestamp, a messageId, string ids) and serialised for the queue."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from segment_bridge.errors import UnreadableBody
from segment_bridge.ingest.body import Payload
from segment_bridge.ingest.delivery import Limits, Outcome, Rejection
from segment_bridge.ingest.spec import InvalidEvent, validate_event
from segment_bridge.limits import UNSTORABLE_NUMBER, storable_number
from segment_bridge.settings import integration_name
from segment_bridge.timestamps import FUTURE_TOLERANCE
from segment_bridge.timestamps import iso as _iso


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
                if model.type != "delete":
                    raise InvalidEvent("receivedAt is more than 23 hours after the delivery was received")
                model = model.model_copy(update={"receivedAt": None})  # a delete falls back to ours
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
    return isinstance(integration, dict) and integration.get("name") == integration_name()


def enrich(
    event: dict[str, Any],
    model: Any,
    workspace_id: str,
    received_at: datetime,
    batch_sent_at: datetime | None,
) -> None:
    """receivedAt, a clock-skew-corrected timestamp, a deterministic messageId, string ids.

    An event relayed by Segment (it already has receivedAt) keeps Segment's timestamps. For an event sent
    straight by an SDK: timestamp = receivedAt - (sentAt - originalTimestamp), as Segment computes it,
    when both are readable. A time the model could not read counts as absent (spec.py): the correction
    is skipped without sentAt (the event's own time is kept) and the time falls back to receivedAt
    without any readable time of the event's own. The unreadable value stays in the event as sent.
    """
    if not model.messageId:
        event["messageId"] = derived_message_id(workspace_id, _identity_of(event))
    for name in ("userId", "anonymousId", "groupId", "previousId"):
        value = event.get(name)
        if value is not None and not isinstance(value, str):
            if getattr(model, name, None) is None:
                del event[name]  # `[]`: no id
            else:
                event[name] = getattr(model, name)  # a number, as Segment's libraries spell it
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
    try:
        event["timestamp"] = iso(received_at - (_aware(sent_at) - original))
    except OverflowError:  # a correction beyond years 1-9999: sentAt is no use, as if absent
        event["timestamp"] = iso(original)


def _identity_of(event: dict[str, Any]) -> dict[str, Any]:
    """What a derived messageId is made from: the event as sent; for a delete, without `sentAt`, which an
    SDK sets again on every attempt, so a retried delete keeps its id (its time, what a repeated delete
    is recognised by, is its timestamp)."""
    if event.get("type") == "delete" and "sentAt" in event:
        return {name: value for name, value in event.items() if name != "sentAt"}
    return event


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
