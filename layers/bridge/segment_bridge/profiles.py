"""Profiles: what a message's events change, and how changes merge into the same state in any order.

Every field of a profile is a small CRDT, so applying events late, twice or in any order converges:
- traits and preferences: last writer wins per name, by (event timestamp, messageId);
- channels, groups and anonymous ids: grow-only maps of value -> first seen (the earliest timestamp);
- first_seen / last_seen: min / max;
- counts: added only for history records that did not exist yet (processing.py keeps them exact).

Profiles are bounded (README "Bounded profiles"): each grow-only map keeps at most a fixed number of
entries, chosen by an order-independent rule (trait and counted names: the smallest names; channel
values, groups, anonymous ids: the earliest first seen, then the smallest value), and a trait larger
than MAX_TRAIT_BYTES is not kept. Keeping the N smallest under a key that merging only lowers is itself
a merge (`bounded(merge(bounded(a), b)) == bounded(merge(a, b))`), so events in any order still converge;
with the caps below, a profile item stays under limits.PROFILE_BUDGET_BYTES (tests/unit/test_limits.py).

An event `plan` cannot apply for a reason of its own (an id too long for its keys, a timestamp no form
of the Spec spells, a value DynamoDB cannot hold) is returned in `Plan.unapplied` with its reason.

This module is pure: `plan` turns events into per-entity changes, `merge` combines profiles.
processing.py reads, merges and writes them through the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from segment_bridge.limits import ITEM_BYTES, SORT_KEY_BYTES, id_fits, unstorable, utf8_bytes, value_size
from segment_bridge.mapping import Mapping, event_name
from segment_bridge.timestamps import InvalidTimestamp, event_time

MAX_TRAITS = 100
"""Trait names a profile keeps (the smallest names); preferences are one per kind (language)."""
MAX_TRAIT_NAME_BYTES = 256
MAX_TRAIT_BYTES = 1024
"""One trait, name and value as DynamoDB counts them; a larger one is not kept in the profile."""
MAX_CHANNEL_VALUES = 10
"""Values per channel (the earliest first seen)."""
MAX_CHANNEL_VALUE_BYTES = 320
MAX_GROUPS = 32
MAX_ANONYMOUS_IDS = 32
MAX_COUNTED_NAMES = 100
"""Event names a profile counts (the smallest names); every event still gets its history item."""
MAX_COUNTED_NAME_BYTES = 256
"""A longer event name is not counted (its events still get their history items)."""
MAX_PENDING_BYTES = 60 * 1024
"""What a profile's `pending` (history records counted but not yet seen written, processing.py) may
hold, as DynamoDB counts it: with every other map at its cap the item stays under the budget. A message
with more records for one entity than PENDING_ROUND_BYTES holds writes them in rounds."""
PENDING_ROUND_BYTES = MAX_PENDING_BYTES // 4
"""One round's share: the rest leaves room for entries of messages that crashed before their step 5."""


def pending_entry_bytes(message_id: str, name: str) -> int:
    """One `pending` entry's size as DynamoDB counts it (key, value and the map's per-entry byte);
    `name` is the entry's stored value (`pending_value`)."""
    return utf8_bytes(message_id) + utf8_bytes(name) + 1


COUNTED_BEYOND_ARCHIVE_DAYS = 30
"""A counted marker lives ArchiveRetentionDays + this after its event's receipt: past every copy of the
event we keep (raw/ for replays, SQS's 14 days for redeliveries and the IngestDLQ), with room for S3
lifecycle's lag (docs/exactness.md)."""
COUNTED_DAYS = 400 + COUNTED_BEYOND_ARCHIVE_DAYS
"""With the template's default ArchiveRetentionDays (400); the processor uses its deployment's."""
_FIELD = "\x1f"
"""Separates a pending entry's name, timestamp and marker expiry (the name may hold anything; it comes
first and the other two are split off from the right)."""


@dataclass(frozen=True)
class Counted:
    """A counted record, as its counted marker (COUNTED#<messageId>) and its `pending` entry keep it: the
    name counted ("" if too long to be counted), its timestamp (a delete erases it as of its time) and
    when the marker expires (epoch seconds)."""

    message_id: str
    name: str
    timestamp: str
    counted_until: int


def pending_value(counted: Counted) -> str:
    """A `pending` entry's stored value: name, timestamp and marker expiry in one string."""
    return f"{counted.name}{_FIELD}{counted.timestamp}{_FIELD}{counted.counted_until}"


def pending_entry(message_id: str, value: str, fallback_until: int) -> Counted:
    """A `pending` entry as stored back into what it counted. An entry written before markers existed
    holds the name only: its timestamp is unknown ("": any delete erases its marker) and its marker is
    given `fallback_until`."""
    parts = value.rsplit(_FIELD, 2)
    if len(parts) == 3 and parts[2].isdigit():
        return Counted(message_id, parts[0], parts[1], int(parts[2]))
    return Counted(message_id, value, "", fallback_until)


@dataclass
class Seen:
    """Of some messageIds of an entity: which have a history item, and which a counted marker."""

    items: set[str] = field(default_factory=set)
    markers: set[str] = field(default_factory=set)

    @property
    def counted(self) -> set[str]:
        """Counted already: a marker, or a history item (written before markers existed, or whose
        marker a crash kept from being written)."""
        return self.items | self.markers


MAX_HISTORY_PROPERTIES_BYTES = ITEM_BYTES - 8 * 1024
"""A history item's properties; the rest of the item (keys, name, timestamps) fits in 8 KB."""

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
    return bounded(
        Profile(
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
    )


def bounded(profile: Profile) -> Profile:
    """The profile with each grow-only map cut to its cap by the order-independent rule (module doc)."""
    if len(profile.traits) > MAX_TRAITS:
        kept = sorted(profile.traits)[:MAX_TRAITS]
        profile.traits = {name: profile.traits[name] for name in kept}
        profile.trait_stamps = {name: profile.trait_stamps[name] for name in kept}
    for channel, values in profile.channels.items():
        profile.channels[channel] = _earliest_n(values, MAX_CHANNEL_VALUES)
    profile.groups = _earliest_n(profile.groups, MAX_GROUPS)
    profile.anonymous_ids = _earliest_n(profile.anonymous_ids, MAX_ANONYMOUS_IDS)
    if any(utf8_bytes(name) > MAX_COUNTED_NAME_BYTES for name in profile.counts):
        profile.counts = {n: c for n, c in profile.counts.items() if utf8_bytes(n) <= MAX_COUNTED_NAME_BYTES}
    if len(profile.counts) > MAX_COUNTED_NAMES:
        profile.counts = {name: profile.counts[name] for name in sorted(profile.counts)[:MAX_COUNTED_NAMES]}
    return profile


def _earliest_n(seen: dict[str, str], n: int) -> dict[str, str]:
    if len(seen) <= n:
        return seen
    return dict(sorted(seen.items(), key=lambda entry: (entry[1], entry[0]))[:n])


def over_budget(change: Profile, kept: Profile) -> list[str]:
    """The maps in which `change` added something `kept` (the profile after the caps) does not hold."""
    maps = []
    if set(change.traits) - set(kept.traits):
        maps.append("traits")
    if any(set(values) - set(kept.channels.get(name, {})) for name, values in change.channels.items()):
        maps.append("channels")
    if set(change.groups) - set(kept.groups):
        maps.append("groups")
    if set(change.anonymous_ids) - set(kept.anonymous_ids):
        maps.append("anonymous_ids")
    return maps


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
    counted_until: int = 0
    """When its counted marker expires (epoch seconds): receipt + COUNTED_DAYS."""
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
        reason = _unusable(event)
        if reason is not None:
            result.park(event, reason)
            continue
        _plan_event(event, mapping, result, counted_days)
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
    """The ids an event connects to its user (README "Privacy deletes"): the anonymousId sent with a
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


@dataclass
class Stored:
    """An entity as read: its profile, the version to write against, history counted but not yet
    confirmed written (`pending`: messageId -> name), and when it was deleted (privacy), if ever."""

    profile: Profile | None = None
    version: int = 0
    pending: dict[str, str] = field(default_factory=dict)
    deleted_at: str | None = None


# --- privacy deletes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tombstone:
    """An entity's `DELETED` item as stored: when it was deleted, whether the erase of its data (and its
    linked ids') is finished, and how far it got (the last linked previousId done, in key order)."""

    deleted_at: str
    erased: bool = False
    after: str | None = None


@dataclass(frozen=True)
class Linked:
    """An id linked to a user, as a delete pages through them: `live` if its stored link names the user
    (else the link was erased by an earlier deletion of the user); `cursor` resumes after it."""

    previous_id: str
    live: bool
    cursor: str


def as_of(profile: Profile, deleted_at: str, history: list[tuple[str, str]]) -> Profile | None:
    """What a delete at `deleted_at` leaves of a profile: None when nothing in it is newer than the
    delete (the common case), else what it can tell is newer: traits and preferences stamped after it,
    channel values, groups and anonymous ids first seen after it, counts recounted from the history items
    kept (`history`: (name, timestamp) of each item newer than the delete), first_seen the earliest of
    what is kept. Only first sightings are stored, so a value first seen before the delete and seen again
    after it goes (README "Privacy deletes")."""
    if profile.last_seen is None or profile.last_seen <= deleted_at:
        return None

    def newer(seen: dict[str, str]) -> dict[str, str]:
        return {value: first for value, first in seen.items() if first > deleted_at}

    traits = {name: stamp for name, stamp in profile.trait_stamps.items() if stamp[0] > deleted_at}
    preferences = {name: stamp for name, stamp in profile.preference_stamps.items() if stamp[0] > deleted_at}
    channels = {name: seen for name, values in profile.channels.items() if (seen := newer(values))}
    kept = Profile(
        traits={name: profile.traits[name] for name in traits if name in profile.traits},
        trait_stamps=traits,
        channels=channels,
        preferences={name: profile.preferences[name] for name in preferences if name in profile.preferences},
        preference_stamps=preferences,
        groups=newer(profile.groups),
        anonymous_ids=newer(profile.anonymous_ids),
        counts={},
        last_seen=profile.last_seen,
    )
    for name, _ in history:
        kept.counts[name] = kept.counts.get(name, 0) + 1
    stamps = [s[0] for s in (*traits.values(), *preferences.values())] + [when for _, when in history]
    stamps += [
        first for values in (*channels.values(), kept.groups, kept.anonymous_ids) for first in values.values()
    ]
    kept.first_seen = min(stamps, default=profile.last_seen)
    return bounded(kept)


@dataclass(frozen=True)
class PendingPurge:
    """A deleted entity whose archived events the next purge removes: those at or before `deleted_at`.
    `by` is the deleted user it was erased for (itself, or the user it was linked to); `mark` changes
    each time it is listed, so a purge takes off only what it has seen."""

    key: str
    deleted_at: str
    by: str
    mark: str
    marked_at: str

    @property
    def kind(self) -> str:
        return self.key[0]

    @property
    def id(self) -> str:
        return self.key[2:]
