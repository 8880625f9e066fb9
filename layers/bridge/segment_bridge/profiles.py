"""Profiles: what a message's events change, and how changes merge into the same state in any order.

Every field of a profile is a small CRDT, so applying events late, twice or in any order converges:
- traits and preferences: last writer wins per name, by (event timestamp, messageId);
- channels, groups and anonymous ids: grow-only maps of value -> first seen (the earliest timestamp);
- first_seen / last_seen: min / max;
- counts: added only for history records that did not exist yet (the store makes that atomic).

This module is pure: `plan` turns events into per-entity changes, `merge` combines profiles. The store
reads, merges and writes; `apply_batch` ties the two together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, Protocol

from segment_bridge.envelope import unpack
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


# --- applying --------------------------------------------------------------------------------------


@dataclass
class Applied:
    """What applying a batch did, for logs and metrics; `unapplied` holds events kept with a reason."""

    entities: int = 0
    history_written: int = 0
    duplicates: int = 0
    links: int = 0
    deletions: int = 0
    skipped: int = 0
    ignored_preferences: int = 0
    unapplied: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: Applied) -> None:
        """Add another result's figures (and its unapplied events) to this one."""
        self.entities += other.entities
        self.history_written += other.history_written
        self.duplicates += other.duplicates
        self.links += other.links
        self.deletions += other.deletions
        self.skipped += other.skipped
        self.ignored_preferences += other.ignored_preferences
        self.unapplied.extend(other.unapplied)

    def figures(self) -> dict[str, int]:
        """For logs: counts only, never event content."""
        return {
            "entities": self.entities,
            "history_written": self.history_written,
            "duplicates": self.duplicates,
            "links": self.links,
            "deletions": self.deletions,
            "skipped": self.skipped,
            "ignored_preferences": self.ignored_preferences,
            "unapplied": len(self.unapplied),
        }


class ProfileStore(Protocol):
    def apply_plan(self, workspace_id: str, plan: Plan, mapping: Mapping) -> Applied: ...

    def archive_raw(
        self, workspace_id: str, received_at: datetime, name: str, events: list[dict[str, Any]]
    ) -> str: ...

    def keep_unapplied(
        self, workspace_id: str, received_at: datetime, name: str, records: list[dict[str, Any]]
    ) -> None: ...


class MappingSource(Protocol):
    def get(self, workspace_id: str) -> Mapping | None: ...


def receive_message(body: str, message_id: str, store: ProfileStore, mappings: MappingSource) -> Applied:
    """One queue message: archive its events as received, then apply them under the workspace's current
    mapping; events that cannot be applied are kept with their reason. Raises on anything retryable, so
    the message returns to the queue (and, after maxReceiveCount, to the dead-letter queue)."""
    envelope, events = unpack(body)
    received_at = datetime.fromisoformat(envelope.receivedAt)
    name = f"{envelope.requestId}-{message_id}"
    store.archive_raw(envelope.workspaceId, received_at, name, events)
    mapping = mappings.get(envelope.workspaceId) or Mapping()
    applied = apply_batch(envelope.workspaceId, events, mapping, store)
    if applied.unapplied:
        store.keep_unapplied(envelope.workspaceId, received_at, name, applied.unapplied)
    return applied


def apply_batch(
    workspace_id: str, events: list[dict[str, Any]], mapping: Mapping, store: ProfileStore
) -> Applied:
    """Apply one queue message's events: one read and about one transactional write per entity."""
    result = plan(events, mapping)
    applied = store.apply_plan(workspace_id, result, mapping)
    applied.skipped += result.skipped
    applied.ignored_preferences += result.ignored_preferences
    return applied


class ArchiveStore(ProfileStore, Protocol):
    def archived_batches(self, workspace_id: str, day: date) -> Iterable[list[dict[str, Any]]]: ...


def replay(
    workspace_id: str,
    since: date,
    until: date,
    mapping: Mapping,
    store: ArchiveStore,
    *,
    dry_run: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> Applied:
    """Run archived events received from `since` to `until` (inclusive, UTC days) through `mapping` again.

    Everything the processor writes is idempotent, so a replay under an unchanged mapping changes nothing;
    under a new mapping it adds what the new mapping finds (new channels, preferences, events that
    filters had skipped). History already recorded keeps the name and mapping version it was written
    with. With `dry_run`, nothing is written: the result counts what the mapping would apply.
    `on_batch` is told the number of events of each archived batch once it is done (for progress)."""
    total = Applied()
    day = since
    while day <= until:
        for events in store.archived_batches(workspace_id, day):
            if dry_run:
                planned = plan(events, mapping)
                total.add(
                    Applied(
                        entities=len(planned.entities),
                        links=len(planned.links),
                        deletions=len(planned.deletions),
                        skipped=planned.skipped,
                        ignored_preferences=planned.ignored_preferences,
                    )
                )
            else:
                total.add(apply_batch(workspace_id, events, mapping, store))
            if on_batch is not None:
                on_batch(len(events))
        day += timedelta(days=1)
    return total


@dataclass(frozen=True)
class ProfileChange:
    """What a set of events would do to one entity: its profile before and after, and new history."""

    kind: EntityKind
    id: str
    before: Profile | None
    after: Profile
    history: list[HistoryRecord]


def preview(
    events: list[dict[str, Any]],
    mapping: Mapping,
    current: Callable[[EntityKind, str], Profile | None],
    recorded: Callable[[dict[str, set[str]]], dict[str, set[str]]] = lambda wanted: {},
) -> tuple[Plan, list[ProfileChange]]:
    """What applying `events` (intake's output) under `mapping` would change, entity by entity, given
    each entity's `current` profile and which history items are `recorded` already (entity key ->
    messageIds); nothing is written."""
    result = plan(events, mapping)
    changes = []
    planned = {key: entity.changes() for key, entity in result.entities.items()}
    known = recorded({key: {r.message_id for r in history} for key, (_, history, _) in planned.items()})
    for key, entity in result.entities.items():
        before = current(entity.kind, entity.id)
        change, history, _ = planned[key]
        history = [record for record in history if record.message_id not in known.get(key, set())]
        change.counts = {}
        for record in history:
            change.counts[record.name] = change.counts.get(record.name, 0) + 1
        after = merge(before or Profile(), change)
        changes.append(ProfileChange(entity.kind, entity.id, before, after, history))
    return result, changes
