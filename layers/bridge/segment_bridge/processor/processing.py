"""The processor's use case: a queue message's events -> the workspace's profiles, links and history.

    receive_or_defer a queue message within the invocation's time, or back on the queue (deferred)
    receive_message  archive the message's events, apply them, keep what cannot be applied
    apply_batch      plan (profiles.py, pure) then apply: the algorithm below
    (replay.py runs archived events through a mapping again, and previews a mapping, with apply_batch)

How a batch is applied exactly once, without transactions (`apply_plan`):
1. privacy deletes first (deletion.py: a tombstone, then the identity's data as of the delete, and its
   connected ids', in chunks within the message's share of time: an unfinished erase defers the message,
   whose next receive resumes it and applies the rest exactly once);
2. the workspace's index of deleted ids (deleted_ids.py), then every entity's profile and pending list
   and the deletion times of the entities and link ids the index may hold, in one batch, and which of
   the batch's history items exist already; late events of deleted entities (`forget_late`) delete the
   ids they connect to a deleted user as of its deletion, and the batch's entities are read again;
3. identity links: one conditional write per previousId, the latest (by timestamp) wins; a link made
   at or before a deletion of its user or of its previousId is not written;
4. per entity, `settle` merges the change and counts only records that have no history item and are not
   pending; the profile is written conditionally on the version read, listing the new records as
   `pending` (a write-ahead log, at most MAX_PENDING_BYTES: an entity with more records than
   PENDING_ROUND_BYTES of entries is written in rounds of steps 4 and 5). If another writer got there
   first, read again and settle again;
5. only after every profile write, the history (and membership) items. A crash between 4 and 5 is
   finished by the redelivery: pending records are never counted again, their items are written, and
   entries leave `pending` once their items are seen. An item DynamoDB refuses parks its event, and its
   entry leaves `pending` with its count taken back (`take_back_refused`);
6. the index read again, and the deletion times of the entities and link ids written that step 2's index
   held (all of them if its epoch rose meanwhile): a delete whose tombstone came after step 2 may have
   erased before steps 3-5 landed, so any that rose are erased again as of it
   (`erase_what_a_delete_missed`).

Within a message, entities are independent: step 2's links, step 4's writes (each entity with its own
conflict retries) and the store's batch calls are in flight together, IO_THREADS at a time; the order
between the steps stays. A message starts only if the invocation has time left to finish it
(`TimeBudget`): one it cannot finish goes back to the queue untouched, never half-applied.

Deferred is not failed (the IngestDLQ is for infrastructure failures only): a message unfinished for a
reason of time (the budget refused it, its delete's erase used its share, a hot profile was still
contended after WRITE_ATTEMPTS, or concurrent deletes kept changing the index of deleted ids) is sent
to the queue again as a fresh message, same body and workspace group, with a receive count of its own,
and the original is reported done. Redoing a message is safe by the algorithm above, so the copy and
the original, if SQS ever delivers it again, apply it once.
Only when the copy cannot be sent does the original fail.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache, partial
from typing import Any, Protocol, TypeVar

from segment_bridge import concurrency
from segment_bridge.deleted_ids import DeletedIds
from segment_bridge.envelope import Envelope, unpack
from segment_bridge.errors import BridgeError, ServiceUnavailable, Unstorable
from segment_bridge.limits import utf8_bytes
from segment_bridge.mapping import Mapping
from segment_bridge.privacy.deletion import (
    DeletesContended,
    DeletionUnfinished,
    OutOfTime,
    delete_identities,
    erase,
    forget,
    never,
)
from segment_bridge.privacy.receipts import Receipts
from segment_bridge.processor.ports import (
    Applied,
    MappingSource,
    ProfileWrites,
    Repositories,
    unapplied_records,
)
from segment_bridge.profiles import (
    MAX_COUNTED_NAME_BYTES,
    MAX_PENDING_BYTES,
    PENDING_ROUND_BYTES,
    Contribution,
    EntityPlan,
    HistoryRecord,
    Link,
    Plan,
    Profile,
    Stored,
    bounded,
    connected_ids,
    merge,
    over_budget,
    pending_entry_bytes,
    plan,
)
from segment_bridge.stats import count_day

WRITE_ATTEMPTS = 12
"""Conditional profile writes tried per entity before the message is deferred (ProfileContended),
measured with bench_throughput's hot-key section (30 invocations writing one user, 2 messages each):
40 of the 60 message receives exhausted 12 attempts; failed, as they were, they came back after the
visibility timeout (up to 3 receives, near the DLQ's 5; at 100 writers and 6 attempts 144 of 200
reached it). Deferred, exhausting costs a 1-10 s pause and no receive, so more attempts would only
keep an invocation spinning on one hot profile (its longest was 113 s of 150 s); with the capped
backoff below, 12 attempts wait about 4 s at most in all. Counts stayed exact either way."""
CONFLICT_PAUSE_SECONDS = 0.02
"""After the n-th lost write of an entity, wait a random time up to this x 2^n (at most
CONFLICT_PAUSE_CAP_SECONDS) before reading it again ("full jitter"): concurrent writers of one hot entity
spread out instead of colliding again."""
CONFLICT_PAUSE_CAP_SECONDS = 1.0
IO_THREADS = 16
"""Entities written at once within a message, chosen by measurement (bench_throughput --io-threads,
benchmarks/README.md): on the only shape the pool matters for (4,000 distinct users, one conditional
write each), 4 -> 8 threads gave 1.2-1.45x the events/s; 16 gave 1.2-1.35x 8's in the calmer of two
runs (within noise in the loaded one); 32 lost a quarter. Past 16 the invocation is CPU-bound
(botocore's CPU per call). With the store's 8 batch threads that is 24 of botocore's 32 connections."""
CONTENDED_DELAY_SECONDS = 10
"""A message deferred because a profile kept changing comes back after a random 1 to this many seconds."""
MESSAGE_RESERVE_SECONDS = 2.0
"""Time an invocation keeps beyond its slowest message so far before starting another one."""

T = TypeVar("T")


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    """The entity writers (made on first use, never at import; shared by the environment's invocations).
    Their batch calls run on the store's own pool, so the two never wait on each other."""
    return ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="entities")


def each_at_once(work: list[Callable[[], T]]) -> list[T]:
    """Run every callable, IO_THREADS at a time; their results in order (concurrency.each_at_once)."""
    return concurrency.each_at_once(work, _pool)


# --- the invocation's time --------------------------------------------------------------------------


class NoTimeLeft(BridgeError):
    """Not enough of the invocation is left to apply a message: it goes back to the queue untouched."""


class ProfileContended(ServiceUnavailable):
    """A profile kept changing while being written (other invocations writing the same entity) past
    WRITE_ATTEMPTS: not a failure of AWS nor of the message; it is deferred, after a pause."""


@dataclass
class TimeBudget:
    """Starts a message only if the invocation can finish it: what is left (Lambda's
    get_remaining_time_in_millis) must exceed the slowest message this environment has applied, plus
    MESSAGE_RESERVE_SECONDS. The template bounds the work per invocation so that this rarely refuses;
    it is the guard for what the bound did not foresee (a slow dependency, a cold start). The first
    message of an invocation is always started: it has all the time there is, and refusing it would
    defer it again and again without anything ever being done."""

    reserve_seconds: float = MESSAGE_RESERVE_SECONDS
    slowest_seconds: float = 0.0
    clock: Callable[[], float] = time.monotonic

    def receive(
        self,
        remaining_ms: int,
        body: str,
        store: Repositories,
        mappings: MappingSource,
        out_of_time: OutOfTime = never,
        *,
        first: bool = False,
    ) -> Applied:
        """receive_message, if there is time for it; NoTimeLeft (before anything is read or written) if
        not."""
        if not first and remaining_ms / 1000 < self.slowest_seconds + self.reserve_seconds:
            raise NoTimeLeft(
                f"{remaining_ms} ms left: not enough to apply a message; it goes back to the queue."
            )
        started = self.clock()
        try:
            return receive_message(body, store, mappings, out_of_time)
        finally:
            self.slowest_seconds = max(self.slowest_seconds, self.clock() - started)


class Requeue(Protocol):
    """store.queues: a message put back on the ingest queue as a fresh one, visible after a delay."""

    def defer(self, body: str, workspace_id: str, delay_seconds: int = 0) -> None: ...


@dataclass(frozen=True)
class Deferred:
    """A message sent to the queue again, unfinished for a reason of time or contention (never of a
    failure)."""

    reason: str
    """"time budget" (not started), "delete unfinished" (its erase resumes on the next receive) or
    "profile contended" (a hot entity's writers outnumbered WRITE_ATTEMPTS; back after a pause) or
    "deletes contended" (concurrent deletes kept changing the index of deleted ids; likewise)."""


def receive_or_defer(
    budget: TimeBudget,
    remaining_ms: int,
    body: str,
    store: Repositories,
    queue: Requeue,
    mappings: MappingSource,
    out_of_time: OutOfTime = never,
    *,
    first: bool = False,
) -> Applied | Deferred:
    """The message applied within the budget; or, if the budget refuses it, its privacy delete is still
    erasing when `out_of_time`, or a profile or the index of deleted ids stays contended, the message
    deferred: sent to the queue again (the module's docstring) so that it does not spend one of its
    maxReceiveCount receives on waiting. Raises, so the message fails, on anything else, and when the
    queue does not take the copy (ServiceUnavailable)."""
    delay = 0
    try:
        return budget.receive(remaining_ms, body, store, mappings, out_of_time, first=first)
    except NoTimeLeft:
        reason = "time budget"
    except DeletionUnfinished:
        reason = "delete unfinished"
    except (ProfileContended, DeletesContended) as contended:
        reason = "profile contended" if isinstance(contended, ProfileContended) else "deletes contended"
        # its writers spread out instead of meeting again at once
        delay = random.randint(1, CONTENDED_DELAY_SECONDS)  # noqa: S311  # nosec B311  # jitter
    queue.defer(body, Envelope.model_validate_json(body).workspaceId, delay)
    return Deferred(reason)


# --- one queue message -------------------------------------------------------------------------------


class TimeShares:
    """Each message of an invocation gets an equal share of the time left (less `reserve_ms` for the
    answer), so a long privacy delete in one message never times the others out."""

    def __init__(self, remaining_ms: Callable[[], int], messages: int, reserve_ms: int = 5_000) -> None:
        self.remaining_ms, self.left, self.reserve_ms = remaining_ms, max(1, messages), reserve_ms
        self.first = True
        """No share given yet: the next message is the invocation's first."""

    def next(self) -> OutOfTime:
        """The next message's share, as the `out_of_time` its deletes check between chunks."""
        share = max(0.0, (self.remaining_ms() - self.reserve_ms) / 1000 / self.left)
        self.left, self.first = max(1, self.left - 1), False
        ends = time.monotonic() + share
        return lambda: time.monotonic() >= ends


def receive_message(
    body: str,
    store: Repositories,
    mappings: MappingSource,
    out_of_time: OutOfTime = never,
) -> Applied:
    """One queue message: archive its events as received, then apply them under the workspace's current
    mapping; events that cannot be applied are kept with their reason. Raises on anything retryable, so
    the message returns to the queue (and, after maxReceiveCount, to the dead-letter queue); a privacy
    delete past `out_of_time` raises DeletionUnfinished, its progress kept for the next receive.
    The archive's object is named after the body, not the SQS message: a redelivery, a deferred copy
    or a re-drive of the same message archives it once."""
    envelope, events = unpack(body)
    received_at = datetime.fromisoformat(envelope.receivedAt)
    name = f"{envelope.requestId}-{hashlib.sha256(body.encode()).hexdigest()[:32]}"
    store.archive.archive_raw(envelope.workspaceId, received_at, name, events)
    mapping = mappings.get(envelope.workspaceId) or Mapping()
    receipts = privacy_receipts(envelope, events, store)
    receipts.received()
    applied = apply_batch(envelope.workspaceId, events, mapping, store, out_of_time)
    receipts.erased()
    if applied.unapplied:
        store.archive.keep_unapplied(envelope.workspaceId, received_at, name, applied.unapplied)
    count_day(
        store,
        envelope.workspaceId,
        received_at,
        applied=max(0, len(events) - len(applied.unapplied) - applied.duplicates),
        duplicates=applied.duplicates,
        unapplied=len(applied.unapplied),
    )
    return applied


def privacy_receipts(envelope: Envelope, events: list[dict[str, Any]], store: Repositories) -> Receipts:
    """The message's privacy requests and their receipts (privacy/receipts.py): received before it is
    applied, erased once it is."""
    return Receipts.of(
        envelope.workspaceId,
        events,
        received_at=envelope.receivedAt,
        source=envelope.source,
        request_id=envelope.requestId,
        book=store.receipts,
        purge_list=store.profiles,
    )


def apply_batch(
    workspace_id: str,
    events: list[dict[str, Any]],
    mapping: Mapping,
    store: Repositories,
    out_of_time: OutOfTime = never,
) -> Applied:
    """Apply one queue message's events: one read and about one conditional write per entity."""
    result = plan(events, mapping)
    applied = apply_plan(workspace_id, result, mapping, store.profiles, out_of_time)
    applied.skipped += result.skipped
    applied.ignored_preferences += result.ignored_preferences
    applied.clamped_timestamps += result.clamped_timestamps
    applied.failed_paths += result.failed_paths
    applied.unapplied.extend(result.unapplied)
    return applied


def apply_plan(
    workspace_id: str,
    planned: Plan,
    mapping: Mapping,
    profiles: ProfileWrites,
    out_of_time: OutOfTime = never,
) -> Applied:
    """Steps 1-5 of the module's docstring."""
    applied = Applied()
    delete_identities(workspace_id, planned.deletions, profiles, mapping.version, out_of_time)
    applied.deletions += len(planned.deletions)

    linked = {f"{kind}#{link.previous_id}" for link in planned.links for kind in ("A", "U")}
    entities = list(planned.entities)
    index, current = read_entities(workspace_id, entities, linked, profiles)
    handled: dict[str, str] = {}
    while True:
        stored = {key: current.get(key, Stored()) for key in planned.entities}
        changes = {key: entity.changes(stored[key].deleted_at) for key, entity in planned.entities.items()}
        if not forget_late(workspace_id, planned, stored, changes, mapping, profiles, handled):
            break
        # Ids just deleted may have events (or links) in this batch too: read again, as if they came later.
        index, current = read_entities(workspace_id, entities, linked, profiles)
    known = stored | {k: current.get(k, Stored()) for k in linked}

    def write_link(link: Link) -> list[dict[str, Any]]:
        try:
            profiles.put_link(workspace_id, link, mapping.version)
        except Unstorable:  # plan refuses ids too long for their keys: only events from before the limits
            return _unapplied_links(planned.links, link.previous_id)
        return []

    links = [link for link in latest_links(planned.links) if not late_for_deleted(link, known)]
    for refused in each_at_once([partial(write_link, link) for link in links]):
        applied.unapplied.extend(refused)
    applied.links += len(planned.links)

    to_write = []
    for key in planned.entities:
        change, _, dropped = changes[key]
        applied.unapplied.extend(
            unapplied_records(dropped, f"the user was deleted at {stored[key].deleted_at}")
        )
        if not (dropped and change.first_seen is None):  # else: all older than the entity's deletion
            to_write.append(key)
    # An entity with more history records than one round holds (PENDING_ROUND_BYTES of `pending`) is
    # written in rounds (steps 4 and 5 each time); the other entities are done in the first.
    parts = {key: in_rounds(changes[key][1]) for key in to_write}
    rounds = max([len(part) for part in parts.values()], default=1)
    read = {key: stored[key].deleted_at for key in planned.entities}  # what `changes` were made with
    written: list[str] = []
    for n in range(rounds):
        if n:
            to_write = [key for key in written if len(parts[key]) > n]
            stored |= profiles.read_entities(workspace_id, to_write, index.to_read(to_write))
        part = {key: parts[key][n] for key in to_write}
        recorded = _write_round(workspace_id, planned, stored, changes, part, n, mapping, profiles, applied)
        written = written or list(recorded)
    read = {key: read[key] for key in written} | {
        key: known[key].deleted_at for link in links for key in _link_keys(link)
    }
    erase_what_a_delete_missed(workspace_id, read, index, links, mapping, profiles)
    return applied


def read_entities(
    workspace_id: str, entities: list[str], linked: set[str], profiles: ProfileWrites
) -> tuple[DeletedIds, dict[str, Stored]]:
    """Step 2's reads: the workspace's index of deleted ids first, then the entities' profiles and the
    tombstones the index may hold, of the entities and of the link ids (whose profiles are not needed).
    The index is read before the entities: that order is what step 6 relies on (deleted_ids.py)."""
    index = profiles.deleted_ids(workspace_id)
    return index, profiles.read_entities(workspace_id, entities, index.to_read([*entities, *linked]))


def erase_what_a_delete_missed(
    workspace_id: str,
    read: dict[str, str | None],
    index: DeletedIds,
    links: list[Link],
    mapping: Mapping,
    profiles: ProfileWrites,
) -> None:
    """Step 6: a delete whose tombstone was written after step 2 read the entity may have erased before
    this batch's writes landed (a profile written over the erased one, history items after the erase
    listed them, a link after the delete paged them). One read of the deletion times written meanwhile
    tells: any entity (or link id) whose deletion time rose since `read` is erased again as of it, which
    removes what this batch wrote at or before that time. A delete that comes later still reads after
    this batch's writes, so it sees them: no order of the two leaves data the delete covers.
    The tombstones read again are those step 2's `index` may hold; all of them if a delete has changed
    the index since (deleted_ids.py: a delete indexes its keys before it tombstones them)."""
    again = profiles.deleted_ids(workspace_id)
    check = list(read) if again.changed_since(index) else index.to_read(read)  # (unknown: every key)
    now = profiles.deletion_times(workspace_id, check) if check else {}
    risen = {key: at for key, at in now.items() if read.get(key) is None or at > str(read[key])}
    for key, at in risen.items():
        erase(workspace_id, key, at, profiles, mapping.version)
    for link in links:
        times = [risen[key] for key in _link_keys(link) if key in risen]
        if any(link.stamp[0] <= at for at in times):
            profiles.remove_link(workspace_id, link.previous_id, max(times))


def _link_keys(link: Link) -> tuple[str, str, str]:
    return (f"U#{link.user_id}", f"A#{link.previous_id}", f"U#{link.previous_id}")


def _write_round(
    workspace_id: str,
    planned: Plan,
    stored: dict[str, Stored],
    changes: dict[str, tuple[Profile, list[HistoryRecord], list[Contribution]]],
    part: dict[str, list[HistoryRecord]],
    n: int,
    mapping: Mapping,
    profiles: ProfileWrites,
    applied: Applied,
) -> dict[str, list[HistoryRecord]]:
    """Steps 4 and 5 for round `n`: `part` holds each entity's history records of this round (their
    profile changes, idempotent, go with each round). Returns the entities written and their records
    recorded."""
    to_write = list(part)
    wanted = {key: {r.message_id for r in part[key]} | set(stored[key].pending) for key in to_write}
    existing = profiles.existing_history(workspace_id, wanted)

    def write(key: str) -> Written | Unstorable:
        try:
            return write_entity(
                workspace_id,
                planned.entities[key],
                stored[key],
                existing.get(key, set()),
                changes[key][0],
                part[key],
                mapping,
                profiles,
            )
        except Unstorable as refused:
            return refused

    results = each_at_once([partial(write, key) for key in to_write])
    history: dict[str, list[HistoryRecord]] = {}
    memberships: dict[str, list[str]] = {}
    for key, written in zip(to_write, results, strict=True):
        entity, change = planned.entities[key], changes[key][0]
        if isinstance(written, Unstorable):
            reason = "the profile is larger or deeper than DynamoDB allows"
            applied.unapplied.extend(unapplied_records(entity.contributions, reason))
            continue
        history[key], memberships[key] = written.to_record, list(change.groups) if n == 0 else []
        applied.history_written += written.counted
        applied.duplicates += written.known
        if n == 0:
            applied.entities += 1
            parked = over_budget_events(entity, written.profile, stored[key].deleted_at)
            applied.over_budget += len(parked)
            applied.unapplied.extend(parked)
    # Only after every profile write: their `pending` lists make this step safe to crash and redo.
    refused = record_each(workspace_id, history, memberships, planned, mapping, profiles)
    for key, mids in refused.items():
        applied.history_written -= len([mid for mid in mids if not mid.startswith("GROUP#")])
        take_back_refused(workspace_id, key, mids, mapping, profiles)
    applied.unapplied.extend(
        {"reason": "DynamoDB refused its history or membership item", "event": event}
        for events in refused.values()
        for event in events.values()
    )
    return history


def in_rounds(records: list[HistoryRecord]) -> list[list[HistoryRecord]]:
    """An entity's history records in rounds whose `pending` entries fit PENDING_ROUND_BYTES (one round,
    maybe empty, for most entities)."""
    rounds: list[list[HistoryRecord]] = [[]]
    size = 0
    for record in records:
        entry = pending_entry_bytes(record.message_id, _pending_name(record.name))
        if rounds[-1] and size + entry > PENDING_ROUND_BYTES:
            rounds.append([])
            size = 0
        rounds[-1].append(record)
        size += entry
    return rounds


def take_back_refused(
    workspace_id: str, key: str, refused: dict[str, Any], mapping: Mapping, profiles: ProfileWrites
) -> None:
    """Records whose history items DynamoDB refused (their events are parked) leave `pending` and their
    counts are taken back, so the profile is as if they never came and a redelivery does the same again
    (conditional on the version read, like every profile write)."""
    kind, entity_id = key.split("#", 1)
    for _ in range(WRITE_ATTEMPTS):
        stored = profiles.read_entities(workspace_id, [key]).get(key, Stored())
        gone = {mid: name for mid, name in stored.pending.items() if mid in refused}
        if stored.profile is None or not gone:
            return
        profile = stored.profile
        profile.counts = dict(profile.counts)
        for name in gone.values():
            if profile.counts.get(name, 0) > 1:
                profile.counts[name] -= 1
            else:
                profile.counts.pop(name, None)
        if profiles.put_profile(
            workspace_id,
            kind,
            entity_id,
            profile,
            pending={mid: name for mid, name in stored.pending.items() if mid not in refused},
            version=stored.version + 1,
            mapping_version=mapping.version,
        ):
            return
    raise ServiceUnavailable(f"Profile {kind} kept changing while being written; retry later.")


def late_for_deleted(link: Link, stored: dict[str, Stored]) -> bool:
    """Whether a link was made at or before a delete of its user (the delete took its ids with it) or of
    its previousId (the delete took the link): it would be gone had it arrived first."""
    times = [stored[key].deleted_at for key in _link_keys(link) if key in stored]
    return any(deleted_at is not None and link.stamp[0] <= deleted_at for deleted_at in times)


def forget_late(
    workspace_id: str,
    planned: Plan,
    stored: dict[str, Stored],
    changes: dict[str, tuple[Profile, list[HistoryRecord], list[Contribution]]],
    mapping: Mapping,
    profiles: ProfileWrites,
    handled: dict[str, str],
) -> bool:
    """Late events of deleted entities (stamped at or before the deletion, so not applied): the ids they
    connect to a deleted user (`connected_ids`: the anonymousId sent with the userId, an alias's
    previousId) are deleted as of that user's deletion, as they would have been had the events arrived
    first; and the entities are listed for the archive purge again (the late events were archived in raw/
    and kept in unapplied/). `handled`: entity -> the deletion time already handled (an entity is handled
    again if its deletion time rose since). True if ids were deleted (the batch's entities are read again)."""
    forgot = False
    for key, (_, _, dropped) in changes.items():
        deleted_at = stored[key].deleted_at
        if not dropped or deleted_at is None or handled.get(key) == deleted_at:
            continue
        handled[key] = deleted_at
        if key.startswith("U#"):
            ids = [i for contribution in dropped for i in connected_ids(contribution.event)]
            if ids:
                forget(workspace_id, ids, deleted_at, key, profiles, mapping.version, {key})
                forgot = True
        profiles.mark_for_purge(workspace_id, [key], deleted_at, key)
    return forgot


def over_budget_events(entity: EntityPlan, kept: Profile, deleted_at: str | None) -> list[dict[str, Any]]:
    """The entity's events that added something its bounded profile does not keep (README "Bounded
    profiles"), with the maps concerned: they were applied otherwise (history, counts of kept names)."""
    parked = []
    for contribution in entity.contributions:
        if contribution.event is None or (deleted_at is not None and contribution.timestamp <= deleted_at):
            continue
        maps = over_budget(contribution.profile, kept)
        if contribution.history is not None and contribution.history.name not in kept.counts:
            maps.append("counts")
        if maps:
            reason = f"the profile is at its budget: {', '.join(maps)} did not keep what this event added"
            parked.append({"reason": reason, "event": contribution.event})
    return parked


def record_each(
    workspace_id: str,
    history: dict[str, list[HistoryRecord]],
    memberships: dict[str, list[str]],
    planned: Plan,
    mapping: Mapping,
    profiles: ProfileWrites,
) -> dict[str, dict[str, Any]]:
    """Write the history and memberships; if DynamoDB refuses an item as invalid (plan refuses what it
    knows of; this is defence in depth), write entity by entity, then record by record, and return, per
    entity, the events of the items refused (by messageId; a refused membership's events under
    "GROUP#<n>"). Every other failure propagates (the message is retried)."""
    try:
        profiles.record(workspace_id, history, memberships, mapping.version)
        return {}
    except Unstorable:
        pass
    refused: dict[str, dict[str, Any]] = {}
    for key in history:
        try:
            profiles.record(
                workspace_id, {key: history[key]}, {key: memberships.get(key, [])}, mapping.version
            )
            continue
        except Unstorable:
            pass
        events = {c.history.message_id: c.event for c in planned.entities[key].contributions if c.history}
        for record in history[key]:
            try:
                profiles.record(workspace_id, {key: [record]}, {}, mapping.version)
            except Unstorable:
                refused.setdefault(key, {})[record.message_id] = events.get(record.message_id)
        try:
            profiles.record(workspace_id, {}, {key: memberships.get(key, [])}, mapping.version)
        except Unstorable:
            group_events = [c.event for c in planned.entities[key].contributions if c.profile.groups]
            refused.setdefault(key, {}).update({f"GROUP#{n}": e for n, e in enumerate(group_events)})
    return {key: {mid: e for mid, e in events.items() if e is not None} for key, events in refused.items()}


def _unapplied_links(links: list[Link], previous_id: str) -> list[dict[str, Any]]:
    reason = "DynamoDB refused the identity link's keys"
    return [
        {"reason": reason, "event": link.event}
        for link in links
        if link.previous_id == previous_id and link.event
    ]


def latest_links(links: list[Link]) -> list[Link]:
    """One link per previousId: the latest by (timestamp, messageId), as the stored link's condition
    would keep anyway (one write instead of several)."""
    latest: dict[str, Link] = {}
    for link in links:
        if link.previous_id not in latest or link.stamp > latest[link.previous_id].stamp:
            latest[link.previous_id] = link
    return list(latest.values())


@dataclass(frozen=True)
class Settled:
    """An entity's profile after a change, counts exact: `new` are the records counted now."""

    profile: Profile
    pending: dict[str, str]
    new: list[HistoryRecord]


def settle(stored: Stored, existing: set[str], change: Profile, records: dict[str, HistoryRecord]) -> Settled:
    """Merge `change` into the stored profile and count each record at most once ever: a record whose
    history item exists (`existing`) or that is pending (counted, item not yet seen) is not counted.
    Pending entries whose items exist are dropped; the new records become pending."""
    new = [record for mid, record in records.items() if mid not in existing and mid not in stored.pending]
    pending = {mid: name for mid, name in stored.pending.items() if mid not in existing}
    pending |= {record.message_id: _pending_name(record.name) for record in new}
    profile = merge(stored.profile or Profile(), change)
    profile.counts = dict(profile.counts)
    for name, count in Counter(record.name for record in new).items():
        profile.counts[name] = profile.counts.get(name, 0) + count
    return Settled(bounded(profile), pending, new)


def _pending_name(name: str) -> str:
    """The name a pending entry keeps (to take its count back if its item is refused): "" for a name
    too long to be counted, so that a pending entry stays within the item budget."""
    return name if utf8_bytes(name) <= MAX_COUNTED_NAME_BYTES else ""


@dataclass(frozen=True)
class Written:
    counted: int
    known: int
    to_record: list[HistoryRecord]
    """History items still to write (those not already there)."""
    profile: Profile
    """The profile as written (bounded)."""


def write_entity(
    workspace_id: str,
    entity: EntityPlan,
    stored: Stored,
    existing: set[str],
    change: Profile,
    history: list[HistoryRecord],
    mapping: Mapping,
    profiles: ProfileWrites,
) -> Written:
    """Settle the entity and write its profile conditionally on the version read; on a conflict (another
    invocation wrote first) wait a jittered, growing pause, read it again and settle again, up to
    WRITE_ATTEMPTS times."""
    records = {record.message_id: record for record in history}
    for attempt in range(WRITE_ATTEMPTS):
        settled = settle(stored, existing, change, records)
        if sum(pending_entry_bytes(mid, name) for mid, name in settled.pending.items()) > MAX_PENDING_BYTES:
            # entries of messages that crashed before their step 5 fill it: their redeliveries clear it
            raise ServiceUnavailable(f"Profile {entity.kind} has too many pending records; retry later.")
        unchanged = stored.profile is not None and settled.profile == stored.profile
        if not (unchanged and settled.pending == stored.pending) and not profiles.put_profile(
            workspace_id,
            entity.kind,
            entity.id,
            settled.profile,
            pending=settled.pending,
            version=stored.version + 1,
            mapping_version=mapping.version,
        ):
            pause = min(CONFLICT_PAUSE_CAP_SECONDS, CONFLICT_PAUSE_SECONDS * 2**attempt)
            time.sleep(random.uniform(0, pause))  # noqa: S311  # nosec B311  # jitter, not a secret
            stored = profiles.read_entities(workspace_id, [entity.key]).get(entity.key, Stored())
            wanted = {entity.key: set(records) | set(stored.pending)}
            existing = profiles.existing_history(workspace_id, wanted).get(entity.key, set())
            continue
        to_record = [record for mid, record in records.items() if mid not in existing]
        return Written(len(settled.new), len(records) - len(settled.new), to_record, settled.profile)
    raise ProfileContended(f"Profile {entity.kind} kept changing while being written; retry later.")
