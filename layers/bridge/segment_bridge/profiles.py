"""Profiles: how the changes of a message's events (planning.py) merge into the same state in any order.

Every field of a profile is a small CRDT, so applying events late, twice or in any order converges:
- traits and preferences: last writer wins per name, by (event timestamp, messageId);
- channels, groups and anonymous ids: grow-only maps of value -> first seen (the earliest timestamp);
- first_seen / last_seen: min / max;
- counts: added only for history records that did not exist yet (processor/entities.py keeps them exact).

Profiles are bounded (docs/data-model.md): each grow-only map keeps at most a fixed number of
entries, chosen by an order-independent rule (trait and counted names: the smallest names; channel
values, groups, anonymous ids: the earliest first seen, then the smallest value), and a trait larger
than MAX_TRAIT_BYTES is not kept. Keeping the N smallest under a key that merging only lowers is itself
a merge (`bounded(merge(bounded(a), b)) == bounded(merge(a, b))`), so events in any order still converge;
with the caps below, a profile item stays under limits.PROFILE_BUDGET_BYTES (tests/unit/test_limits.py).

This module is pure: `merge` combines profiles, `bounded` caps them; processor/unit.py reads, merges
and writes them through the store (`Stored`: an entity as read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from segment_bridge.limits import utf8_bytes

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
"""What a profile's `pending` (history records counted but not yet seen written, processor/) may
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
"""Separates a pending entry's name, timestamp and marker expiry (the name may hold anything: it comes
first, and the other two are split off from the right)."""


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
    """A `pending` entry as stored, back into what it counted. An entry written before markers existed
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


@dataclass
class Stored:
    """An entity as read: its profile, the version to write against, history counted but not yet
    confirmed written (`pending`: messageId -> name), and when it was deleted (privacy), if ever."""

    profile: Profile | None = None
    version: int = 0
    pending: dict[str, str] = field(default_factory=dict)
    deleted_at: str | None = None
