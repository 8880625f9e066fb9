"""What a privacy delete leaves, as the store keeps it and the delete reads it back: the entity's
tombstone and its states, the ids a deleted user's erase pages through, the archive purge's work list,
and a profile as of a delete (`as_of`). The delete itself is privacy/deletion.py; docs/processing.md
proves why its erase is exact and complete."""

from __future__ import annotations

from dataclasses import dataclass

from segment_bridge.profiles import Profile, bounded

ERASING = "erasing"
"""A tombstone's status while the erase of the entity's data (and its linked ids') is under way: its
`after` cursor says how far it got, and the redelivery of its message resumes there."""
ERASED = "erased"
"""A tombstone's status once the erase is finished (no cursor kept)."""
ERASED_LINK_PREFIX = "IDGONE#"
"""The sort key prefix of an id a deletion of its user erased with it (its link is gone)."""
LINK_PREFIX = "LINK#"
"""The gsi1 sort key prefix of an id linked to a user (its stored link names the user)."""


@dataclass(frozen=True)
class Tombstone:
    """An entity's `DELETED` item as stored: when it was deleted, whether the erase of its data (and its
    linked ids') is finished (ERASED, else ERASING), and how far it got (the last linked previousId done,
    in key order)."""

    deleted_at: str
    erased: bool = False
    after: str | None = None

    @property
    def status(self) -> str:
        return ERASED if self.erased else ERASING


@dataclass(frozen=True)
class Linked:
    """An id linked to a user, as a delete pages through them: `live` if its stored link names the user
    (else the link was erased by an earlier deletion of the user); `cursor` resumes after it."""

    previous_id: str
    live: bool
    cursor: str


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


def as_of(profile: Profile, deleted_at: str, history: list[tuple[str, str]]) -> Profile | None:
    """What a delete at `deleted_at` leaves of a profile: None when nothing in it is newer than the
    delete (the common case), else what it can tell is newer: traits and preferences stamped after it,
    channel values, groups and anonymous ids first seen after it, counts recounted from the history items
    kept (`history`: (name, timestamp) of each item newer than the delete), first_seen the earliest of
    what is kept. Only first sightings are stored, so a value first seen before the delete and seen again
    after it goes (docs/privacy.md)."""
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
