"""Privacy deletes: exact, idempotent and complete (README "Privacy deletes").

    delete_identities  a message's `delete` events, each: its tombstone first, then its data erased as
                       of its time, its connected ids tombstoned and erased too, in chunks whose
                       progress is durable
    forget             ids connected to a deleted user: tombstoned and erased as of its deletion
    purge              the archive's copies (raw/, rejected/, unapplied/, parked/) of deleted entities'
                       events

What a delete at time T of an entity does, exactly:
1. its tombstone (`DELETED`, deleted_at=T, status "erasing"), its key first added to the workspace's
   index of deleted ids (`index_before_tombstones`; deleted_ids.py says why first): from now on events
   at or before T are not applied to it. If a tombstone at T or later is stored already, this delete is
   a repeat (redelivery, re-drive, replay) or is superseded: it resumes an unfinished erase at T and
   otherwise does nothing.
2. its data as of T: history items stamped at or before T, memberships, its link (as a previousId) made
   at or before T, and its profile (deleted; or, when events newer than T were applied before the
   delete, rewritten to what is newer than T: `profiles.as_of`). Nothing stamped after T is removed.
3. for a user, every id connected to it by T (`profiles.connected_ids`; found in its profile's anonymous
   ids first seen by T, its LINK items made by T and the ids its earlier deletions took, IDGONE#):
   tombstoned at T as A# and U#, erased the same way (a user id so deleted takes its own connected ids:
   transitive), and kept under the user (`keep_erased_links`), LINKS_PER_CHUNK at a time; after each
   chunk the tombstone records the cursor, so an invocation that runs out of its time share stops
   (DeletionUnfinished: the message is retried) and the redelivery resumes there.
4. each entity is listed for the archive purge (`PURGE` items), and the tombstone marked "erased".
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from segment_bridge.deleted_ids import DeletedIds
from segment_bridge.errors import ServiceUnavailable
from segment_bridge.profiles import (
    Deletion,
    Linked,
    Profile,
    Stored,
    Tombstone,
    as_of,
)

LINKS_PER_CHUNK = 25
"""Linked ids erased between two progress records (one BatchWriteItem of purge marks)."""
WRITE_ATTEMPTS = 6
INDEX_ATTEMPTS = 12
"""Writes of the deleted ids' index tried by one delete while concurrent deletes keep changing it, each
after a random pause of up to INDEX_PAUSE_SECONDS x 2^n (capped at a second)."""
INDEX_PAUSE_SECONDS = 0.01

OutOfTime = Callable[[], bool]
"""True once the caller's share of time is spent."""


def never() -> bool:
    return False


class DeletionUnfinished(ServiceUnavailable):
    """A delete's erase used its share of time; its progress is recorded and its redelivery resumes it."""


class DeletesContended(ServiceUnavailable):
    """Concurrent deletes kept changing the workspace's index of deleted ids past INDEX_ATTEMPTS: not a
    failure of AWS nor of the message; it is deferred, after a pause, like a contended profile."""


class DeletionWrites(Protocol):
    """store.profiles: what a delete reads and writes."""

    def read_entities(
        self, workspace_id: str, keys: list[str], tombstones: list[str] | None = None
    ) -> dict[str, Stored]: ...
    def deleted_ids(self, workspace_id: str) -> DeletedIds: ...
    def put_deleted_ids(self, workspace_id: str, index: DeletedIds, previous_epoch: int) -> bool: ...
    def put_profile(
        self,
        workspace_id: str,
        kind: str,
        entity_id: str,
        profile: Profile,
        *,
        pending: dict[str, str],
        version: int,
        mapping_version: int,
    ) -> bool: ...
    def put_tombstone(
        self, workspace_id: str, key: str, deleted_at: str, *, by: str | None = None
    ) -> Tombstone: ...
    def save_progress(self, workspace_id: str, key: str, tombstone: Tombstone) -> bool: ...
    def linked_page(self, workspace_id: str, user_id: str, after: str | None, limit: int) -> list[Linked]: ...
    def keep_erased_links(self, workspace_id: str, user_id: str, previous_ids: list[str]) -> None: ...
    def link_stamps(self, workspace_id: str, previous_ids: list[str]) -> dict[str, str]: ...
    def history_index(self, workspace_id: str, key: str) -> list[tuple[str, str, str]]: ...
    def memberships(self, workspace_id: str, key: str) -> list[str]: ...
    def remove(self, workspace_id: str, key: str, history: list[str], groups: list[str]) -> None: ...
    def remove_profile(self, workspace_id: str, key: str, version: int) -> bool: ...
    def remove_link(self, workspace_id: str, previous_id: str, through: str) -> bool: ...
    def mark_for_purge(self, workspace_id: str, keys: list[str], deleted_at: str, by: str) -> None: ...


# --- the delete --------------------------------------------------------------------------------------


def delete_identities(
    workspace_id: str,
    deletions: list[Deletion],
    profiles: DeletionWrites,
    mapping_version: int,
    out_of_time: OutOfTime = never,
) -> None:
    """Steps 1-4 of the module's docstring for each delete, in order, their keys added to the index of
    deleted ids first, in one write. Raises DeletionUnfinished when `out_of_time` says so between two
    chunks, its progress recorded."""
    index_before_tombstones(workspace_id, [deletion.key for deletion in deletions], profiles)
    for deletion in deletions:
        _delete_identity(workspace_id, deletion, profiles, mapping_version, out_of_time)


def _delete_identity(
    workspace_id: str,
    deletion: Deletion,
    profiles: DeletionWrites,
    mapping_version: int,
    out_of_time: OutOfTime,
) -> bool:
    """Steps 1-4 for one delete whose key is indexed already. False if the delete changed nothing (a
    repeat of a finished delete, or superseded by a later one)."""
    at, key = deletion.timestamp, deletion.key
    stored = profiles.put_tombstone(workspace_id, key, at)
    # Listed for the purge even when repeated: a redelivered message is archived in raw/ again.
    profiles.mark_for_purge(workspace_id, [key], stored.deleted_at, key)
    if stored.deleted_at > at or (stored.deleted_at == at and stored.erased):
        return False
    done = {key}
    erase(workspace_id, key, at, profiles, mapping_version, done)
    profiles.remove_link(workspace_id, deletion.id, at)
    after = stored.after
    if deletion.kind == "U":
        while page := profiles.linked_page(workspace_id, deletion.id, after, LINKS_PER_CHUNK):
            forget_linked(workspace_id, key, page, at, profiles, mapping_version, done)
            after = page[-1].cursor
            if not profiles.save_progress(workspace_id, key, Tombstone(at, False, after)):
                return True  # a later delete replaced this one: it erases everything this one would
            if out_of_time():
                raise DeletionUnfinished("A privacy delete is still erasing linked ids; it resumes on retry.")
    profiles.save_progress(workspace_id, key, Tombstone(at, True))  # finished: no cursor kept
    return True


def forget(
    workspace_id: str,
    ids: Iterable[str],
    at: str,
    by: str,
    profiles: DeletionWrites,
    mapping_version: int,
    done: set[str] | None = None,
) -> None:
    """Delete, as of `at`, ids connected to the deleted user `by` (its key, `U#<id>`): each as an
    anonymous id and as a user id (A# and U#) gets a tombstone (unless a later deletion of it is
    recorded: that one covers this), its data erased as of `at`, its link removed if made by `at`, and is
    listed for the archive purge; the user keeps the ids it lost (`keep_erased_links`). A user id taken
    this way takes its own connected ids with it (transitively, README "Privacy deletes"). `done`: keys
    already handled at `at` in this call (each is handled once)."""
    done = set() if done is None else done
    ids = list(dict.fromkeys(ids))
    if not ids:
        return
    profiles.keep_erased_links(workspace_id, by.removeprefix("U#"), ids)
    keys = [key for i in ids for key in (f"A#{i}", f"U#{i}") if key not in done and key != by]
    done.update(keys)
    before = profiles.read_entities(workspace_id, keys) if keys else {}
    index_before_tombstones(workspace_id, keys, profiles)
    forgotten = [key for key in keys if profiles.put_tombstone(workspace_id, key, at, by=by).deleted_at <= at]
    if forgotten:
        profiles.mark_for_purge(workspace_id, forgotten, at, by)
    for i in ids:
        profiles.remove_link(workspace_id, i, at)
    for key in forgotten:  # one read for all; most linked ids have no profile (and so nothing to erase)
        stored = before.get(key, Stored())
        if stored.profile is not None:
            erase(workspace_id, key, at, profiles, mapping_version, done)
        if key.startswith("U#") and (stored.profile is not None or stored.deleted_at is not None):
            after = None  # a user id with data or deleted before may have linked ids of its own
            while page := profiles.linked_page(workspace_id, key[2:], after, LINKS_PER_CHUNK):
                forget_linked(workspace_id, key, page, at, profiles, mapping_version, done)
                after = page[-1].cursor


def index_before_tombstones(workspace_id: str, keys: list[str], profiles: DeletionWrites) -> None:
    """The keys added to the workspace's index of deleted ids before their tombstones are written, so a
    processor that skips the tombstone of a key its index lacks is sure to notice the delete (deleted_ids.py).
    A conditional write on the index's epoch; concurrent deletes retry with jittered pauses."""
    if not keys:
        return
    for attempt in range(INDEX_ATTEMPTS):
        current = profiles.deleted_ids(workspace_id)
        updated = current.adding(keys)
        if updated is None or profiles.put_deleted_ids(workspace_id, updated, current.epoch):
            return
        pause = min(1.0, INDEX_PAUSE_SECONDS * 2**attempt)
        time.sleep(random.uniform(0, pause))  # noqa: S311  # nosec B311  # jitter
    raise DeletesContended("Concurrent deletes kept changing the deleted ids' index; retry later.")


def forget_linked(
    workspace_id: str,
    user: str,
    page: list[Linked],
    at: str,
    profiles: DeletionWrites,
    mapping_version: int,
    done: set[str],
) -> None:
    """`forget` the ids of a page of the user's links: those whose stored link was made at or before
    `at`, and those an earlier deletion of the user erased."""
    stamps = profiles.link_stamps(workspace_id, [linked.previous_id for linked in page if linked.live])
    ids = [
        linked.previous_id
        for linked in page
        if not linked.live or stamps.get(linked.previous_id, f"{at}$") < f"{at}$"
    ]
    forget(workspace_id, ids, at, user, profiles, mapping_version, done)


def counted_after(history: list[tuple[str, str, str]], at: str) -> list[tuple[str, str]]:
    """(name, timestamp) of each event counted after `at`: its counted marker (which outlives its history
    item), or its history item if it has none (written before markers existed)."""
    marked = {sk.removeprefix("COUNTED#") for sk, _, _ in history if sk.startswith("COUNTED#")}
    return [
        (name, when)
        for sk, name, when in history
        if when > at and name and (sk.startswith("COUNTED#") or sk.removeprefix("MSG#") not in marked)
    ]


def erase(
    workspace_id: str,
    key: str,
    at: str,
    profiles: DeletionWrites,
    mapping_version: int,
    done: set[str] | None = None,
) -> None:
    """An entity's data as of `at` (step 2). A user's ids connected by then (its profile's anonymous ids
    first seen by `at`) are forgotten first, so a crash leaves them findable. History, counted markers
    and memberships go before the profile, and go whether or not there is a profile: a writer racing
    the delete may write them after the erase removed the profile it had just written (its step 6 then
    erases again, and this must reach them: docs/exactness.md)."""
    for _ in range(WRITE_ATTEMPTS):
        stored = profiles.read_entities(workspace_id, [key]).get(key, Stored())
        if stored.profile is None:
            history = profiles.history_index(workspace_id, key)
            groups = profiles.memberships(workspace_id, key)
            doomed = [sk for sk, _, when in history if when <= at]
            if doomed or groups:
                profiles.remove(workspace_id, key, doomed, groups)
            return
        if key.startswith("U#"):
            connected = [a for a, first in stored.profile.anonymous_ids.items() if first <= at]
            forget(workspace_id, connected, at, key, profiles, mapping_version, done)
        history = profiles.history_index(workspace_id, key)
        kept = as_of(stored.profile, at, counted_after(history, at))
        groups = profiles.memberships(workspace_id, key)
        profiles.remove(
            workspace_id,
            key,
            [sk for sk, _, when in history if when <= at],
            [group for group in groups if kept is None or group not in kept.groups],
        )
        if kept is None:
            written = profiles.remove_profile(workspace_id, key, stored.version)
        else:
            kind, entity_id = key.split("#", 1)
            written = profiles.put_profile(
                workspace_id,
                kind,
                entity_id,
                kept,
                pending={},
                version=stored.version + 1,
                mapping_version=mapping_version,
            )
        if written:
            return
    raise ServiceUnavailable("A profile kept changing while being erased; retry later.")
