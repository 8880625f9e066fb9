"""The read model: a workspace's users and groups as the product should see them, from what the processor
wrote. The one place profiles are reassembled (the CLI, the HTTP read API and the Python client use it).

- Resolution through links: asking by an id whose stored link (alias, or identify with both ids) names a
  user answers for that user (not found while that user may not be seen: its erase takes the id too),
  unless merge protection refuses the link (identity.py); else the id's own profile (`U#<userId>`,
  `A#<anonymousId>`). One hop, as the processor links.
- Deleted is not found: an entity with a tombstone whose erase is under way, or whose profile still holds
  anything from at or before the delete (its erase has not reached it), is answered as not found; after
  the erase, what was applied after the delete (a user who came back) is the profile.
- Linked ids: the previousIds whose stored link names the user and that the limit keeps; their own
  profiles' counts are added to the user's in `counts_with_linked`, their history is the user's on request.
- Bookkeeping (tombstones, DELETED_IDS, PURGE, IDGONE#, trait stamps, pending, versions) is never read
  into a view: the source reads PROFILE, DELETED, LINK, MEMBER# and history items by name.

Pure: `Reader` works over a `ReadSource` (store/reading.py), so it is tested without AWS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Protocol

from segment_bridge.errors import NotFound
from segment_bridge.identity import MergeProtection
from segment_bridge.profiles import Profile
from segment_bridge.read.paging import HistorySource, Page, history_page

IdType = Literal["user_id", "anonymous_id", "group_id"]
Tombstone = tuple[str, bool]
"""An entity's DELETED item as read: (deleted_at, erased)."""
USER_ID_TYPES: tuple[IdType, ...] = ("user_id", "anonymous_id")
KIND_OF: dict[str, str] = {"user_id": "U", "anonymous_id": "A", "group_id": "G"}
ID_TYPE_OF: dict[str, IdType] = {"U": "user_id", "A": "anonymous_id", "G": "group_id"}
NOT_FOUND = "Profile was not found."


Entities = dict[str, tuple[Profile | None, Tombstone | None]]
"""Entity key -> its profile and tombstone, as read."""


class ReadSource(HistorySource, Protocol):
    def entities(
        self, workspace_id: str, keys: list[str], links: list[str], *, brief: bool = False
    ) -> tuple[Entities, dict[str, str]]: ...

    def entities_and_linked(
        self, workspace_id: str, keys: list[str], links: list[str], user_id: str
    ) -> tuple[Entities, dict[str, str], list[str]]:
        """`entities(keys, links)` and `linked_ids(user_id)` together (one round trip, not two)."""
        ...

    def linked_ids(self, workspace_id: str, user_id: str) -> list[str]: ...

    def group_members(self, workspace_id: str, group_id: str) -> list[str]: ...

    def protection(self, workspace_id: str) -> MergeProtection: ...


def visible(profile: Profile | None, tombstone: Tombstone | None) -> Profile | None:
    """The profile if a reader may see it: none while its erase runs or still has to reach it."""
    if profile is None or tombstone is None:
        return profile
    deleted_at, erased = tombstone
    if not erased or (profile.first_seen or "") <= deleted_at:
        return None
    return profile


# --- views ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryEvent:
    entity: str
    """The entity key it was recorded under (U#…, A#…)."""
    message_id: str
    name: str
    type: str
    timestamp: str
    received_at: str | None
    properties: dict[str, Any]

    @property
    def id_type(self) -> IdType:
        return ID_TYPE_OF[self.entity[0]]

    @property
    def id(self) -> str:
        return self.entity[2:]


@dataclass
class UserView:
    """A user (or an anonymous-only one) as resolved; linked ids' profiles are read on first use."""

    reader: Reader = field(repr=False)
    workspace_id: str
    kind: str
    """U or A."""
    id: str
    profile: Profile
    read_links: list[str] | None = field(default=None, repr=False)
    """The stored links naming this user, if read with its profile (else read on first use)."""

    @property
    def key(self) -> str:
        return f"{self.kind}#{self.id}"

    @cached_property
    def stored_links(self) -> set[str]:
        """The previousIds whose stored link names this user."""
        if self.kind != "U":
            return set()
        if self.read_links is not None:
            return set(self.read_links)
        return set(self.reader.source.linked_ids(self.workspace_id, self.id))

    @cached_property
    def linked(self) -> list[str]:
        """The ids linked to this user that the limit keeps, in order of first sighting."""
        stored = self.stored_links
        if not stored:
            return []
        allowed = self.reader.protection(self.workspace_id).linked(self.profile.anonymous_ids)
        return sorted(
            stored & allowed, key=lambda linked: (self.profile.anonymous_ids.get(linked, ""), linked)
        )

    @cached_property
    def refused(self) -> list[str]:
        """The ids linked to this user whose links the limit refuses (never followed)."""
        return sorted(self.stored_links - set(self.linked))

    def linked_keys(self) -> list[str]:
        """The entity keys linked ids' own data is under: A#<id>, and U#<id> for another user id."""
        return [key for linked in self.linked for key in _keys_of(linked, self.id)]

    def seen_linked_keys(self) -> list[str]:
        """The linked entity keys with a profile a reader may see (those whose history is read)."""
        return [key for key in self.linked_keys() if key in self.linked_profiles]

    @cached_property
    def linked_profiles(self) -> dict[str, Profile]:
        """Linked entity key -> its own profile, those a reader may see."""
        keys = self.linked_keys()
        if not keys:
            return {}
        found, _ = self.reader.source.entities(self.workspace_id, keys, [], brief=True)
        return {
            key: p for key, (profile, stone) in found.items() if (p := visible(profile, stone)) is not None
        }

    @property
    def counts_with_linked(self) -> dict[str, int]:
        combined = dict(self.profile.counts)
        for profile in self.linked_profiles.values():
            for name, count in profile.counts.items():
                combined[name] = combined.get(name, 0) + count
        return combined

    def linked_counts(self) -> dict[str, dict[str, int]]:
        """Linked id -> its own counts (its A# and U# profiles' together)."""
        out: dict[str, dict[str, int]] = {}
        for linked in self.linked:
            counts: dict[str, int] = {}
            for key in _keys_of(linked, self.id):
                for name, count in getattr(self.linked_profiles.get(key), "counts", {}).items():
                    counts[name] = counts.get(name, 0) + count
            out[linked] = counts
        return out


def _keys_of(linked: str, user_id: str) -> list[str]:
    return [f"A#{linked}"] + ([f"U#{linked}"] if linked != user_id else [])


@dataclass(frozen=True)
class GroupView:
    workspace_id: str
    id: str
    profile: Profile
    members: list[str]
    """Member entity keys (U#…, A#…), sorted."""


class Reader:
    """The read model over a source. `protection` is the workspace's merge protection (the source's,
    remembered per Reader: one per request or CLI command, or cached by the caller)."""

    def __init__(self, source: ReadSource) -> None:
        self.source = source
        self._protection: dict[str, MergeProtection] = {}

    def protection(self, workspace_id: str) -> MergeProtection:
        if workspace_id not in self._protection:
            self._protection[workspace_id] = self.source.protection(workspace_id)
        return self._protection[workspace_id]

    def user(self, workspace_id: str, id_type: IdType, value: str) -> UserView:
        """The user an id answers for (module doc); NotFound if none may be seen."""
        if id_type not in USER_ID_TYPES:
            raise ValueError(f"not a user id type: {id_type}")
        own = f"{KIND_OF[id_type]}#{value}"
        read_links: list[str] | None = None
        if id_type == "user_id":  # most often the user itself: its links are read in the same round trip
            found, links, read_links = self.source.entities_and_linked(workspace_id, [own], [value], value)
        else:
            found, links = self.source.entities(workspace_id, [own], [value])
        target = links.get(value)
        if target is not None and not (id_type == "user_id" and target == value):
            user_key = f"U#{target}"
            more, _ = self.source.entities(workspace_id, [user_key], []) if user_key != own else (found, {})
            profile = visible(*more.get(user_key, (None, None)))
            if profile is None:  # a user being erased (or whose erase must still reach it) takes its ids
                raise NotFound(NOT_FOUND)
            if value in self.protection(workspace_id).linked(profile.anonymous_ids):
                return UserView(self, workspace_id, "U", target, profile)
        profile = visible(*found.get(own, (None, None)))
        if profile is None:
            raise NotFound(NOT_FOUND)
        return UserView(self, workspace_id, own[0], value, profile, read_links)

    def group(self, workspace_id: str, group_id: str, *, members: bool = True) -> GroupView:
        key = f"G#{group_id}"
        found, _ = self.source.entities(workspace_id, [key], [])
        profile = visible(*found.get(key, (None, None)))
        if profile is None:
            raise NotFound(NOT_FOUND)
        listed = sorted(self.source.group_members(workspace_id, group_id)) if members else []
        return GroupView(workspace_id, group_id, profile, listed)

    def events(
        self,
        user: UserView,
        *,
        limit: int,
        after: str | None = None,
        linked: bool = True,
        include: frozenset[str] | None = None,
        exclude: frozenset[str] = frozenset(),
        newest_first: bool = True,
    ) -> Page[HistoryEvent]:
        """A page of the user's history (newest first by default), with its linked ids' if `linked` (those
        a reader may see); `include`/`exclude` filter by event name. Order and cursor: paging.py."""
        keys = [user.key] + (user.seen_linked_keys() if linked else [])
        page = history_page(
            self.source,
            user.workspace_id,
            keys,
            limit=limit,
            after=after,
            include=include,
            exclude=exclude,
            newest_first=newest_first,
        )
        events = [
            HistoryEvent(
                entity=entity,
                message_id=message_id,
                name=str(item.get("name", name)),
                type=str(item.get("type", "")),
                timestamp=str(item.get("timestamp", timestamp)),
                received_at=item.get("received_at"),
                properties=dict(item.get("properties") or {}),
            )
            for (timestamp, message_id, entity, name), item in page.items
        ]
        return Page(events, page.next)


# --- what the CLI shows ----------------------------------------------------------------------------


def profile_view(profile: Profile) -> dict[str, Any]:
    """A profile's fields as shown (no bookkeeping: stamps, pending, version)."""
    return {
        "traits": profile.traits,
        "channels": {name: sorted(values) for name, values in profile.channels.items()},
        "preferences": profile.preferences,
        "groups": sorted(profile.groups),
        "anonymous_ids": sorted(profile.anonymous_ids),
        "counts": profile.counts,
        "first_seen": profile.first_seen,
        "last_seen": profile.last_seen,
    }


def user_summary(user: UserView) -> dict[str, Any]:
    """`segment-bridge users show`: the profile, its linked ids' counts, and the counts of both."""
    return {
        "workspace_id": user.workspace_id,
        "user_id" if user.kind == "U" else "anonymous_id": user.id,
        **profile_view(user.profile),
        "linked": {linked: {"counts": counts} for linked, counts in user.linked_counts().items()},
        "refused_links": user.refused,
        "counts_with_linked": user.counts_with_linked,
    }


def event_row(event: HistoryEvent) -> dict[str, Any]:
    """`segment-bridge events list`: one history item."""
    return {
        "id": event.id,
        "messageId": event.message_id,
        "name": event.name,
        "type": event.type,
        "timestamp": event.timestamp,
        "properties": event.properties,
    }


def group_summary(group: GroupView) -> dict[str, Any]:
    return {
        "workspace_id": group.workspace_id,
        "group_id": group.id,
        "traits": group.profile.traits,
        "first_seen": group.profile.first_seen,
        "last_seen": group.profile.last_seen,
        "members": group.members,
    }
