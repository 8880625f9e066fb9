"""Privacy deletes: exact, idempotent and complete (docs/processing.md proves it).

    delete_identities  a message's `delete` events, each: its tombstone first, then its data erased as
                       of its time, its connected ids tombstoned and erased too, in chunks whose
                       progress is durable
    forget             ids connected to a deleted user: tombstoned and erased as of its deletion
    erase              an entity's data as of a time
(hooks.py: where the processor meets a delete; purge.py: the archive's copies of deleted entities' events;
tombstones.py, in the domain: what a delete leaves and its states.)

What a delete at time T of an entity does, exactly:
1. its tombstone (`DELETED`, deleted_at=T, status ERASING), its key first added to the workspace's
   index of deleted ids (`index_before_tombstones`; deleted_ids.py says why first): from now on events
   at or before T are not applied to it. If a tombstone at T or later is stored already, this delete is
   a repeat (redelivery, re-drive, replay) or is superseded: it resumes an unfinished erase at T and
   otherwise does nothing.
2. its data as of T: history items stamped at or before T, memberships, its link (as a previousId) made
   at or before T, and its profile (deleted; or, when events newer than T were applied before the
   delete, rewritten to what is newer than T: `tombstones.as_of`). Nothing stamped after T is removed.
3. for a user, every id connected to it by T (`planning.connected_ids`; found in its profile's anonymous
   ids first seen by T, its LINK items made by T and the ids its earlier deletions took, IDGONE#):
   tombstoned at T as A# and U#, erased the same way (a user id so deleted takes its own connected ids:
   transitive), and kept under the user (`keep_erased_links`), LINKS_PER_CHUNK at a time; after each
   chunk the tombstone records the cursor, so an invocation that runs out of its time share stops
   (DeletionUnfinished: the message is retried) and the redelivery resumes there.
4. each entity is listed for the archive purge (`PURGE` items), and the tombstone marked ERASED.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from segment_bridge.errors import ServiceUnavailable
from segment_bridge.planning import Deletion
from segment_bridge.privacy.ports import DeletionWrites, Work
from segment_bridge.profiles import Stored
from segment_bridge.retry import Contended, ProfileContended, conditionally
from segment_bridge.tombstones import Linked, Tombstone, as_of

LINKS_PER_CHUNK = 25
"""Linked ids erased between two progress records (one BatchWriteItem of purge marks)."""
INDEX_ATTEMPTS = 12
"""Writes of the deleted ids' index tried by one delete while concurrent deletes keep changing it, each
after a random pause of up to INDEX_PAUSE_SECONDS x 2^n (capped at a second)."""
INDEX_PAUSE_SECONDS = 0.01


class DeletionUnfinished(ServiceUnavailable):
    """A delete's erase used its share of time; its progress is recorded and its redelivery resumes it."""


class DeletesContended(Contended):
    """Concurrent deletes kept changing the workspace's index of deleted ids past INDEX_ATTEMPTS: not a
    failure of AWS nor of the message; it is deferred, after a pause, like a contended profile."""

    reason = "deletes contended"


# --- the delete --------------------------------------------------------------------------------------


def delete_identities(work: Work, deletions: list[Deletion]) -> None:
    """Steps 1-4 of the module's docstring for each delete, in order, their keys added to the index of
    deleted ids first, in one write. Raises DeletionUnfinished when the work is out of time between two
    chunks, its progress recorded."""
    index_before_tombstones(work.workspace_id, [deletion.key for deletion in deletions], work.profiles)
    for deletion in deletions:
        _delete_identity(work, deletion)


def _delete_identity(work: Work, deletion: Deletion) -> bool:
    """Steps 1-4 for one delete whose key is indexed already. False if the delete changed nothing (a
    repeat of a finished delete, or superseded by a later one)."""
    at, key = deletion.timestamp, deletion.key
    workspace_id, profiles = work.workspace_id, work.profiles
    stored = profiles.put_tombstone(workspace_id, key, at)
    # Listed for the purge even when repeated: a redelivered message is archived in raw/ again.
    profiles.mark_for_purge(workspace_id, [key], stored.deleted_at, key)
    if stored.deleted_at > at or (stored.deleted_at == at and stored.erased):
        return False
    done = {key}
    erase(work, key, at, done)
    profiles.remove_link(workspace_id, deletion.id, at)
    after = stored.after
    if deletion.kind == "U":
        while page := profiles.linked_page(workspace_id, deletion.id, after, LINKS_PER_CHUNK):
            forget_linked(work, key, page, at, done)
            after = page[-1].cursor
            if not profiles.save_progress(workspace_id, key, Tombstone(at, False, after)):
                return True  # a later delete replaced this one: it erases everything this one would
            if work.out_of_time():
                raise DeletionUnfinished("A privacy delete is still erasing linked ids; it resumes on retry.")
    profiles.save_progress(workspace_id, key, Tombstone(at, True))  # finished: no cursor kept
    return True


def forget(work: Work, ids: Iterable[str], at: str, by: str, done: set[str] | None = None) -> None:
    """Delete, as of `at`, ids connected to the deleted user `by` (its key, `U#<id>`): each as an
    anonymous id and as a user id (A# and U#) gets a tombstone (unless a later deletion of it is
    recorded: that one covers this), its data erased as of `at`, its link removed if made by `at`, and is
    listed for the archive purge; the user keeps the ids it lost (`keep_erased_links`). A user id taken
    this way takes its own connected ids with it (transitively, docs/privacy.md). `done`: keys
    already handled at `at` in this call (each is handled once)."""
    workspace_id, profiles = work.workspace_id, work.profiles
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
            erase(work, key, at, done)
        if key.startswith("U#") and (stored.profile is not None or stored.deleted_at is not None):
            after = None  # a user id with data or deleted before may have linked ids of its own
            while page := profiles.linked_page(workspace_id, key[2:], after, LINKS_PER_CHUNK):
                forget_linked(work, key, page, at, done)
                after = page[-1].cursor


def index_before_tombstones(workspace_id: str, keys: list[str], profiles: DeletionWrites) -> None:
    """The keys added to the workspace's index of deleted ids before their tombstones are written, so a
    processor that skips the tombstone of a key its index lacks is sure to notice the delete (deleted_ids.py).
    A conditional write on the index's epoch (retry.conditionally: concurrent deletes retry after jittered
    pauses, and the message is deferred when they outnumber INDEX_ATTEMPTS)."""
    if not keys:
        return

    def attempt(_: int) -> bool | None:
        current = profiles.deleted_ids(workspace_id)
        updated = current.adding(keys)
        return updated is None or profiles.put_deleted_ids(workspace_id, updated, current.epoch) or None

    conditionally(
        attempt,
        partial(DeletesContended, "Concurrent deletes kept changing the deleted ids' index; retry later."),
        attempts=INDEX_ATTEMPTS,
        pause_seconds=INDEX_PAUSE_SECONDS,
        cap_seconds=1.0,
    )


def forget_linked(work: Work, user: str, page: list[Linked], at: str, done: set[str]) -> None:
    """`forget` the ids of a page of the user's links: those whose stored link was made at or before
    `at`, and those an earlier deletion of the user erased."""
    stamps = work.profiles.link_stamps(
        work.workspace_id, [linked.previous_id for linked in page if linked.live]
    )
    ids = [
        linked.previous_id
        for linked in page
        if not linked.live or stamps.get(linked.previous_id, f"{at}$") < f"{at}$"
    ]
    forget(work, ids, at, user, done)


def counted_after(history: list[tuple[str, str, str]], at: str) -> list[tuple[str, str]]:
    """(name, timestamp) of each event counted after `at`: its counted marker (which outlives its history
    item), or its history item if it has none (written before markers existed)."""
    marked = {sk.removeprefix("COUNTED#") for sk, _, _ in history if sk.startswith("COUNTED#")}
    return [
        (name, when)
        for sk, name, when in history
        if when > at and name and (sk.startswith("COUNTED#") or sk.removeprefix("MSG#") not in marked)
    ]


def erase(work: Work, key: str, at: str, done: set[str] | None = None) -> None:
    """An entity's data as of `at` (step 2). A user's ids connected by then (its profile's anonymous ids
    first seen by `at`) are forgotten first, so a crash leaves them findable. History, counted markers
    and memberships go before the profile, and go whether or not there is a profile: a writer racing
    the delete may write them after the erase removed the profile it had just written (its step 6 then
    erases again, and that erase must reach them: docs/exactness.md)."""
    workspace_id, profiles = work.workspace_id, work.profiles

    def attempt(_: int) -> bool | None:
        stored = profiles.read_entities(workspace_id, [key]).get(key, Stored())
        history = profiles.history_index(workspace_id, key)
        groups = profiles.memberships(workspace_id, key)
        doomed = [sk for sk, _, when in history if when <= at]
        if stored.profile is None:  # no profile: every membership is of events at or before `at`
            if doomed or groups:
                profiles.remove(workspace_id, key, doomed, groups)
            return True
        if key.startswith("U#"):
            connected = [a for a, first in stored.profile.anonymous_ids.items() if first <= at]
            forget(work, connected, at, key, done)
        kept = as_of(stored.profile, at, counted_after(history, at))
        profiles.remove(
            workspace_id, key, doomed, [group for group in groups if kept is None or group not in kept.groups]
        )
        if kept is None:
            return profiles.remove_profile(workspace_id, key, stored.version) or None
        kind, entity_id = key.split("#", 1)
        written = profiles.put_profile(
            workspace_id,
            kind,
            entity_id,
            kept,
            pending={},
            version=stored.version + 1,
            mapping_version=work.mapping_version,
        )
        return written or None

    conditionally(
        attempt, partial(ProfileContended, "A profile kept changing while being erased; retry later.")
    )
