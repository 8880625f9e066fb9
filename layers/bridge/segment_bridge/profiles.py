"""Profiles: what a message's events change, and how changes merge into the same state in any order.

Every field of a profile is a small CRDT, so applying events late, twice or in any order converges:
- traits and preferences: last writer wins per name, by (event timestamp, messageId);
- channels, groups and anonymous ids: grow-only maps of value -> first seen (the earliest timestamp);
- first_seen / last_seen: min / max;
- counts: added only for history records that did not exist yet (processing.py keeps them exact).

This module is pure: `plan` turns events into per-entity changes, `merge` combines profiles.
processing.py reads, merges and writes them through the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from segment_bridge.mapping import Mapping, event_name

Stamp = tuple[str, str]
"""(timestamp, messageId): the later stamp wins; the messageId breaks ties deterministically."""
EntityKind = Literal["U", "A", "G"]
"""U: a known user (userId), A: an anonymous-only user (anonymousId), G: a group (groupId)."""


@dataclass
class Profile:
    traits: dict[str, Any] = field(default_factory=dict)
    trait_stamps: dict[str, Stamp] = field(default_factory=dict)
    channels: dict[str, dict[str, str]] = field(default_factory=dict)
    preferences: dict[str, str] = field(default_factory=dict)
    preference_stamps: dict[str, Stamp] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    anonymous_ids: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    first_seen: str | None = None
    last_seen: str | None = None


def merge(base: Profile, change: Profile) -> Profile:
    """`base` with `change` merged in. Commutative, associative and idempotent for every field but
    counts, which are added (the store adds only counts of history records it has just created)."""
    traits, trait_stamps = _last_writer_wins(
        base.traits, base.trait_stamps, change.traits, change.trait_stamps
    )
    preferences, preference_stamps = _last_writer_wins(
        base.preferences, base.preference_stamps, change.preferences, change.preference_stamps
    )
    channels = {name: dict(values) for name, values in base.channels.items()}
    for name, values in change.channels.items():
        channels[name] = _earliest(channels.get(name, {}), values)
    counts = dict(base.counts)
    for name, count in change.counts.items():
        counts[name] = counts.get(name, 0) + count
    return Profile(
        traits=traits,
        trait_stamps=trait_stamps,
        channels=channels,
        preferences=preferences,
        preference_stamps=preference_stamps,
        groups=_earliest(base.groups, change.groups),
        anonymous_ids=_earliest(base.anonymous_ids, change.anonymous_ids),
        counts=counts,
        first_seen=_min(base.first_seen, change.first_seen),
        last_seen=_max(base.last_seen, change.last_seen),
    )


def _last_writer_wins(
    values: dict[str, Any], stamps: dict[str, Stamp], new_values: dict[str, Any], new_stamps: dict[str, Stamp]
) -> tuple[dict[str, Any], dict[str, Stamp]]:
    out, out_stamps = dict(values), dict(stamps)
    for name, value in new_values.items():
        stamp = new_stamps[name]
        if name not in out_stamps or tuple(stamp) > tuple(out_stamps[name]):
            out[name], out_stamps[name] = value, stamp
    return out, out_stamps


def _earliest(first: dict[str, str], second: dict[str, str]) -> dict[str, str]:
    out = dict(first)
    for key, seen in second.items():
        if key not in out or seen < out[key]:
            out[key] = seen
    return out


def _min(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else max(a, b)


# --- planning --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRecord:
    message_id: str
    name: str
    type: str
    timestamp: str
    received_at: str
    properties: dict[str, Any]
    expires_at: int


@dataclass
class Contribution:
    """What one event adds to one entity."""

    timestamp: str
    profile: Profile
    history: HistoryRecord | None = None
    event: dict[str, Any] | None = None


@dataclass
class EntityPlan:
    kind: EntityKind
    id: str
    contributions: list[Contribution] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.kind}#{self.id}"

    def changes(
        self, deleted_at: str | None = None
    ) -> tuple[Profile, list[HistoryRecord], list[Contribution]]:
        """(merged profile change, history records, contributions dropped) for events after `deleted_at`."""
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
        return change, list(history.values()), dropped


@dataclass(frozen=True)
class Link:
    """previousId (an anonymousId or an older userId) is now known as user_id."""

    previous_id: str
    user_id: str
    stamp: Stamp


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

    def entity(self, kind: EntityKind, entity_id: str) -> EntityPlan:
        key = f"{kind}#{entity_id}"
        if key not in self.entities:
            self.entities[key] = EntityPlan(kind, entity_id)
        return self.entities[key]


def plan(events: Iterable[dict[str, Any]], mapping: Mapping) -> Plan:
    """What the events change, per entity, under the workspace's mapping. Events are intake's output:
    valid, with messageId, timestamp and receivedAt."""
    result = Plan()
    for event in events:
        kind = event["type"]
        if not mapping.applies_to(kind):
            result.skipped += 1
            continue
        stamp: Stamp = (_normalised(event.get("timestamp") or event["receivedAt"]), event["messageId"])
        when = stamp[0]
        user_id: str = event.get("userId") or ""
        anonymous_id: str = event.get("anonymousId") or ""
        identity: tuple[EntityKind, str] = ("U", user_id) if user_id else ("A", anonymous_id)
        seen = Profile(first_seen=when, last_seen=when)
        if user_id and anonymous_id:
            seen.anonymous_ids = {anonymous_id: when}

        if kind == "identify":
            traits = _traits(event)
            change = merge(seen, _trait_change(traits, stamp))
            change.channels = {
                channel: dict.fromkeys(values, when)
                for channel, values in mapping.channel_values(traits).items()
            }
            preferences, ignored = mapping.preference_values(traits)
            change.preferences, change.preference_stamps = preferences, dict.fromkeys(preferences, stamp)
            result.ignored_preferences += ignored
            result.entity(*identity).contributions.append(Contribution(when, change, event=event))
            if user_id and anonymous_id:
                result.links.append(Link(anonymous_id, user_id, stamp))
        elif kind in ("track", "page", "screen"):
            name = event_name(event)
            if not mapping.keeps_event(name):
                result.skipped += 1
                continue
            record = HistoryRecord(
                message_id=event["messageId"],
                name=mapping.event_prefix + name,
                type=kind,
                timestamp=when,
                received_at=event["receivedAt"],
                properties=event.get("properties") or {},
                expires_at=_expiry(when, mapping.history_days),
            )
            result.entity(*identity).contributions.append(Contribution(when, seen, record, event))
        elif kind == "group":
            group_id = event["groupId"]
            group_change = merge(
                Profile(first_seen=when, last_seen=when), _trait_change(_traits(event), stamp)
            )
            result.entity("G", group_id).contributions.append(Contribution(when, group_change, event=event))
            seen.groups = {group_id: when}
            result.entity(*identity).contributions.append(Contribution(when, seen, event=event))
        elif kind == "alias":
            result.links.append(Link(event["previousId"], user_id, stamp))
            result.entity(*identity).contributions.append(Contribution(when, seen, event=event))
        elif kind == "delete":
            result.deletions.append(Deletion(identity[0], identity[1], when))
    return result


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


def _normalised(timestamp: str) -> str:
    """One spelling per instant (UTC, milliseconds, Z), so timestamps compare as strings."""
    moment = datetime.fromisoformat(timestamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _expiry(timestamp: str, days: int) -> int:
    return int((datetime.fromisoformat(timestamp) + timedelta(days=days)).timestamp())


@dataclass
class Stored:
    """An entity as read: its profile, the version to write against, history counted but not yet
    confirmed written (`pending`: messageId -> name), and when it was deleted (privacy), if ever."""

    profile: Profile | None = None
    version: int = 0
    pending: dict[str, str] = field(default_factory=dict)
    deleted_at: str | None = None
