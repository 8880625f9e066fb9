"""Planning: what a message's events change, per entity, under the workspace's mapping (`plan`).

This module is pure: `plan` turns events intake validated into per-entity changes (profiles.py merges
them), identity links and privacy deletes; processor/unit.py reads, merges and writes them through the
store. An event `plan` cannot apply for a reason of its own (an id too long for its keys, a timestamp no
form of the Spec spells, a value DynamoDB cannot hold) is returned in `Plan.unapplied` with its reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from segment_bridge.identity import screen
from segment_bridge.limits import ITEM_BYTES, SORT_KEY_BYTES, id_fits, unstorable, utf8_bytes, value_size
from segment_bridge.mapping import Mapping, event_name
from segment_bridge.profiles import (
    COUNTED_DAYS,
    MAX_CHANNEL_VALUE_BYTES,
    MAX_TRAIT_BYTES,
    MAX_TRAIT_NAME_BYTES,
    EntityKind,
    Profile,
    Stamp,
    merge,
)
from segment_bridge.timestamps import InvalidTimestamp, event_time

MAX_HISTORY_PROPERTIES_BYTES = ITEM_BYTES - 8 * 1024
"""A history item's properties; the rest of the item (keys, name, timestamps) fits in 8 KB."""


@dataclass(frozen=True)
class HistoryRecord:
    message_id: str
    name: str
    type: str
    timestamp: str
    received_at: str
    properties: dict[str, Any]
    expires_at: int
    counted_until: int = 0
    """When its counted marker expires (epoch seconds): receipt + COUNTED_DAYS (docs/exactness.md)."""
    kept: bool = True
    """Whether it gets a history item: not when its history window had closed when it was received
    (an import of old events: the item would be born expired); it is counted either way."""


@dataclass
class Contribution:
    """What one event adds to one entity."""

    timestamp: str
    profile: Profile
    history: HistoryRecord | None = None
    event: dict[str, Any] | None = None


class Changes(NamedTuple):
    """An entity's changes from a message: the merged profile change, its history records (one per
    messageId) and the contributions dropped because the entity was deleted after them."""

    profile: Profile
    history: list[HistoryRecord]
    dropped: list[Contribution]


@dataclass
class EntityPlan:
    kind: EntityKind
    id: str
    contributions: list[Contribution] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.kind}#{self.id}"

    def changes(self, deleted_at: str | None = None) -> Changes:
        """What the entity's events after `deleted_at` change, and the contributions dropped (those at or
        before it)."""
        change = Profile()
        history: dict[str, HistoryRecord] = {}
        dropped = []
        for contribution in self.contributions:
            if deleted_at is not None and contribution.timestamp <= deleted_at:
                dropped.append(contribution)
                continue
            change = merge(change, contribution.profile)
            if contribution.history is not None:
                history.setdefault(contribution.history.message_id, contribution.history)
        return Changes(change, list(history.values()), dropped)


@dataclass(frozen=True)
class Link:
    """previousId (an anonymousId or an older userId) is now known as user_id."""

    previous_id: str
    user_id: str
    stamp: Stamp
    event: dict[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class Deletion:
    kind: EntityKind
    id: str
    timestamp: str

    @property
    def key(self) -> str:
        return f"{self.kind}#{self.id}"


@dataclass
class Plan:
    entities: dict[str, EntityPlan] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)
    skipped: int = 0
    ignored_preferences: int = 0
    clamped_timestamps: int = 0
    """Events stamped more than 23 h after they were received: counted at receivedAt (timestamps.py)."""
    failed_paths: int = 0
    """Mapping paths that could not be evaluated on an event (they found nothing)."""
    unapplied: list[dict[str, Any]] = field(default_factory=list)
    """{"reason", "event"}: events not applied, or applied only in part, for a reason of their own."""
    blocked_ids: int = 0
    """Ids the workspace's merge protection blocked (identity.py): the events applied without them."""

    def park(self, event: dict[str, Any], reason: str) -> None:
        self.unapplied.append({"reason": reason, "event": event})

    def entity(self, kind: EntityKind, entity_id: str) -> EntityPlan:
        key = f"{kind}#{entity_id}"
        if key not in self.entities:
            self.entities[key] = EntityPlan(kind, entity_id)
        return self.entities[key]


def plan(events: Iterable[dict[str, Any]], mapping: Mapping, counted_days: int = COUNTED_DAYS) -> Plan:
    """What the events change, per entity, under the workspace's mapping. Events are intake's output:
    valid, with messageId, timestamp and receivedAt; one that cannot be applied for a reason of its own
    (archived before today's limits, say) is returned in `unapplied` and its neighbours still apply.
    `counted_days`: how long after its receipt an event's counted marker lives."""
    result = Plan()
    for event in events:
        if not mapping.applies_to(event.get("type", "")):
            result.skipped += 1
            continue
        screened = screen(event, mapping.merge_protection)
        result.blocked_ids += len(screened.blocked)
        reason = screened.reason or _unusable(screened.event)
        if reason is not None:
            result.park(event, reason)
            continue
        _plan_event(screened.event, mapping, result, counted_days)
    return result


IDS_BY_TYPE = {"group": ("groupId",), "alias": ("previousId",)}


def _unusable(event: dict[str, Any]) -> str | None:
    """Why an event cannot be applied at all, or None. Never quotes the event's values."""
    identity = event.get("userId") or event.get("anonymousId")
    if not isinstance(identity, str) or not identity:
        return "the event has no userId or anonymousId"
    for name in ("userId", "anonymousId", *IDS_BY_TYPE.get(event["type"], ())):
        value = event.get(name)
        if value is None and name in ("userId", "anonymousId"):
            continue
        if not isinstance(value, str) or not value or not id_fits(value):
            return f"{name} is missing, not a string or longer than the DynamoDB keys it becomes allow"
    message_id = event.get("messageId")
    if not isinstance(message_id, str) or not message_id or utf8_bytes(message_id) > SORT_KEY_BYTES - 4:
        return "messageId is missing, not a string or longer than its DynamoDB key allows"
    try:
        event_time(event.get("timestamp"), event.get("receivedAt") or event.get("timestamp"))
    except InvalidTimestamp:
        return "timestamp or receivedAt is not a timestamp the Spec accepts, or falls outside years 1-9999"
    why = unstorable(event, levels=33)  # the event itself is one level; what we store is one less deep
    if why is not None:
        return f"DynamoDB cannot hold the event: {why}"
    if value_size(event.get("properties") or {}) > MAX_HISTORY_PROPERTIES_BYTES:
        return "its properties are larger than a DynamoDB item holds"
    return None


def _plan_event(event: dict[str, Any], mapping: Mapping, result: Plan, counted_days: int) -> None:
    kind = event["type"]
    when, clamped = event_time(event.get("timestamp"), event.get("receivedAt") or event.get("timestamp"))
    result.clamped_timestamps += clamped
    stamp: Stamp = (when, event["messageId"])
    user_id: str = event.get("userId") or ""
    anonymous_id: str = event.get("anonymousId") or ""
    identity: tuple[EntityKind, str] = ("U", user_id) if user_id else ("A", anonymous_id)
    seen = Profile(first_seen=when, last_seen=when)
    if user_id and anonymous_id:
        seen.anonymous_ids = {anonymous_id: when}

    if kind == "identify":
        traits, too_large = _kept_traits(_traits(event))
        if too_large:
            result.park(event, "traits larger than a profile keeps were not kept (the rest was applied)")
        found = mapping.evaluate(traits)
        result.failed_paths += found.failed_paths
        result.ignored_preferences += found.ignored_preferences
        change = merge(seen, _trait_change(traits, stamp))
        change.channels = {
            channel: {value: when for value in values if utf8_bytes(value) <= MAX_CHANNEL_VALUE_BYTES}
            for channel, values in found.channels.items()
        }
        change.preferences = found.preferences
        change.preference_stamps = dict.fromkeys(found.preferences, stamp)
        result.entity(*identity).contributions.append(Contribution(when, change, event=event))
        if user_id and anonymous_id:
            result.links.append(Link(anonymous_id, user_id, stamp, event))
    elif kind in ("track", "page", "screen"):
        name = event_name(event)
        if not mapping.keeps_event(name):
            result.skipped += 1
            return
        received, _ = event_time(event.get("receivedAt") or when, event.get("receivedAt") or when)
        expires_at = _expiry(when, mapping.history_days)
        record = HistoryRecord(
            message_id=event["messageId"],
            name=mapping.event_prefix + name,
            type=kind,
            timestamp=when,
            received_at=event["receivedAt"],
            properties=event.get("properties") or {},
            expires_at=expires_at,
            counted_until=_expiry(received, counted_days),
            kept=expires_at > _expiry(received, 0),
        )
        result.entity(*identity).contributions.append(Contribution(when, seen, record, event))
    elif kind == "group":
        group_id = event["groupId"]
        traits, too_large = _kept_traits(_traits(event))
        if too_large:
            result.park(event, "traits larger than a profile keeps were not kept (the rest was applied)")
        group_change = merge(Profile(first_seen=when, last_seen=when), _trait_change(traits, stamp))
        result.entity("G", group_id).contributions.append(Contribution(when, group_change, event=event))
        seen.groups = {group_id: when}
        result.entity(*identity).contributions.append(Contribution(when, seen, event=event))
    elif kind == "alias":
        result.links.append(Link(event["previousId"], user_id, stamp, event))
        seen.anonymous_ids = {**seen.anonymous_ids, event["previousId"]: when}
        result.entity(*identity).contributions.append(Contribution(when, seen, event=event))
    elif kind == "delete":
        result.deletions.append(Deletion(identity[0], identity[1], when))


def connected_ids(event: dict[str, Any] | None) -> list[str]:
    """The ids an event connects to its user (docs/privacy.md): the anonymousId sent with a
    userId, and an alias's previousId. A delete of the user at or after the event's time deletes them."""
    if not isinstance(event, dict) or not isinstance(event.get("userId"), str) or not event["userId"]:
        return []
    names = ("anonymousId", "previousId") if event.get("type") == "alias" else ("anonymousId",)
    return [value for name in names if isinstance(value := event.get(name), str) and value]


def _kept_traits(traits: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the traits a profile keeps, whether any was too large): each within MAX_TRAIT_BYTES."""
    kept = {
        name: value
        for name, value in traits.items()
        if utf8_bytes(name) <= MAX_TRAIT_NAME_BYTES
        and utf8_bytes(name) + value_size(value) <= MAX_TRAIT_BYTES
    }
    return kept, len(kept) < len(traits)


def _traits(event: dict[str, Any]) -> dict[str, Any]:
    """Traits as sent; some SDKs (rudder-sdk-python) send identify traits in context.traits."""
    context = event.get("context")
    shared = context.get("traits") if isinstance(context, dict) else None
    own = event.get("traits")
    merged = dict(shared) if isinstance(shared, dict) else {}
    if isinstance(own, dict):
        merged.update(own)
    return merged


def _trait_change(traits: dict[str, Any], stamp: Stamp) -> Profile:
    return Profile(traits=dict(traits), trait_stamps=dict.fromkeys(traits, stamp))


def _expiry(timestamp: str, days: int) -> int:
    """Epoch seconds `days` after `timestamp` (a normalised one), at most the end of year 9999."""
    moment = datetime.fromisoformat(timestamp)
    try:
        return int((moment + timedelta(days=days)).timestamp())
    except OverflowError:
        return int(datetime.max.replace(tzinfo=moment.tzinfo).timestamp())
