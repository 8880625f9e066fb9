"""Steps 4 and 5 of the processor (unit.py), per entity: settle the message's change into the stored
profile with exact counts and write it conditionally on the version read (`write_entity`, step 4), then
its history and membership items (`record_each`, step 5), taking back the counts of records DynamoDB
refuses (`take_back_refused`). docs/processing.md proves why the counts stay exact under redelivery,
crashes between the two steps and concurrent writers.

    settle          the change merged into the stored profile; only records neither counted (a counted
                    marker or a history item) nor pending are counted; the new ones become `pending` (a
                    write-ahead log, at most MAX_PENDING_BYTES; an entity with more than
                    PENDING_ROUND_BYTES of entries is written in rounds: `in_rounds`; entries of messages
                    that never finish are settled past the cap: `settle_orphans`)
    write_entity    one conditional put per entity; on a lost write: read again and settle again
                    (retry.py: WRITE_ATTEMPTS, then the message is deferred)
    record_each     the history, counted markers and memberships, after every profile write of the round
    take_back_refused  records whose items DynamoDB refuses leave `pending`, their counts taken back
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, TypeVar

from segment_bridge import concurrency
from segment_bridge.errors import Unstorable
from segment_bridge.limits import utf8_bytes
from segment_bridge.planning import EntityPlan, HistoryRecord, Plan
from segment_bridge.processor.ports import Work
from segment_bridge.processor.results import Written
from segment_bridge.profiles import (
    COUNTED_DAYS,
    MAX_COUNTED_NAME_BYTES,
    MAX_PENDING_BYTES,
    PENDING_ROUND_BYTES,
    Counted,
    Profile,
    Seen,
    Stored,
    bounded,
    merge,
    over_budget,
    pending_entry,
    pending_entry_bytes,
    pending_value,
)
from segment_bridge.retry import ProfileContended, conditionally

IO_THREADS = 16
"""Entities written at once within a message, chosen by measurement (bench_throughput --io-threads,
benchmarks/README.md): on the only shape the pool matters for (4,000 distinct users, one conditional
write each), 4 -> 8 threads gave 1.2-1.45x the events/s; 16 gave 1.2-1.35x 8's in the calmer of two
runs (within noise in the loaded one); 32 lost a quarter. Past 16 the invocation is CPU-bound
(botocore's CPU per call). With the store's 8 batch threads that is 24 of botocore's 32 connections."""

T = TypeVar("T")


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    """The entity writers (made on first use, never at import; shared by the environment's invocations).
    Their batch calls run on the store's own pool, so the two never wait on each other."""
    return ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="entities")


def each_at_once(work: list[Callable[[], T]]) -> list[T]:
    """Run every callable, IO_THREADS at a time; their results in order (concurrency.each_at_once)."""
    return concurrency.each_at_once(work, _pool)


# --- step 4 ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settled:
    """An entity's profile after a change, counts exact: `new` are the records counted now."""

    profile: Profile
    pending: dict[str, str]
    new: list[HistoryRecord]


def settle(stored: Stored, existing: Seen, change: Profile, records: dict[str, HistoryRecord]) -> Settled:
    """Merge `change` into the stored profile and count each record at most once ever: a record counted
    already (its counted marker or its history item exists: `existing`) or pending (counted, its marker
    not yet seen) is not counted. Pending entries whose markers (or items) exist are dropped; the new
    records become pending."""
    known = existing.counted
    new = [record for mid, record in records.items() if mid not in known and mid not in stored.pending]
    pending = {mid: value for mid, value in stored.pending.items() if mid not in known}
    pending |= {record.message_id: pending_value(counted(record)) for record in new}
    profile = merge(stored.profile or Profile(), change)
    profile.counts = dict(profile.counts)
    for name, count in Counter(record.name for record in new).items():
        profile.counts[name] = profile.counts.get(name, 0) + count
    return Settled(bounded(profile), pending, new)


def counted(record: HistoryRecord) -> Counted:
    """What a record's counted marker and its pending entry keep of it."""
    return Counted(record.message_id, pending_name(record.name), record.timestamp, record.counted_until)


def needs_marker(record: HistoryRecord) -> bool:
    """Whether a record needs its own counted marker: not when its history item is written and outlives
    the marker would (history_days longer than the archive's retention): the item then says "counted"
    for as long (docs/exactness.md)."""
    return not (record.kept and record.expires_at >= record.counted_until)


def pending_name(name: str) -> str:
    """The name a pending entry keeps (to take its count back if its item is refused): "" for a name
    too long to be counted, so that a pending entry stays within the item budget."""
    return name if utf8_bytes(name) <= MAX_COUNTED_NAME_BYTES else ""


def in_rounds(records: list[HistoryRecord]) -> list[list[HistoryRecord]]:
    """An entity's history records in rounds whose `pending` entries fit PENDING_ROUND_BYTES (one round,
    maybe empty, for most entities)."""
    rounds: list[list[HistoryRecord]] = [[]]
    size = 0
    for record in records:
        entry = pending_entry_bytes(record.message_id, pending_value(counted(record)))
        if rounds[-1] and size + entry > PENDING_ROUND_BYTES:
            rounds.append([])
            size = 0
        rounds[-1].append(record)
        size += entry
    return rounds


def write_entity(
    work: Work,
    entity: EntityPlan,
    stored: Stored,
    existing: Seen,
    change: Profile,
    history: list[HistoryRecord],
) -> Written:
    """Settle the entity and write its profile conditionally on the version read (`stored`, and the
    history items and counted markers `existing`); when another invocation wrote first, read it again
    and settle again (retry.conditionally: its pauses, and ProfileContended when every attempt lost).
    Pending entries that would take `pending` past its cap are settled first (`settle_orphans`): a
    message is never failed because of `pending`."""
    records = {record.message_id: record for record in history}

    def attempt(n: int) -> Written | None:
        nonlocal stored, existing
        if n:  # another writer got there first: what it wrote
            stored = work.profiles.read_entities(work.workspace_id, [entity.key]).get(entity.key, Stored())
            wanted = {entity.key: set(records) | set(stored.pending)}
            existing = work.profiles.seen_history(work.workspace_id, wanted).get(entity.key, Seen())
        settled = settle(stored, existing, change, records)
        if sum(pending_entry_bytes(mid, value) for mid, value in settled.pending.items()) > MAX_PENDING_BYTES:
            stored = settle_orphans(work, entity.key, stored, set(records))
            settled = settle(stored, existing, change, records)
        unchanged = stored.profile is not None and settled.profile == stored.profile
        if not (unchanged and settled.pending == stored.pending) and not work.profiles.put_profile(
            work.workspace_id,
            entity.kind,
            entity.id,
            settled.profile,
            pending=settled.pending,
            version=stored.version + 1,
            mapping_version=work.mapping_version,
        ):
            return None
        to_record = [r for mid, r in records.items() if mid not in existing.items and r.kept]
        to_mark = [
            counted(r) for mid, r in records.items() if mid not in existing.markers and needs_marker(r)
        ]
        return Written(
            len(settled.new),
            len(records) - len(settled.new),
            to_record,
            to_mark,
            settled.profile,
            not unchanged,
        )

    return conditionally(
        attempt,
        partial(ProfileContended, f"Profile {entity.kind} kept changing while being written; retry later."),
    )


def settle_orphans(work: Work, key: str, stored: Stored, own: set[str]) -> Stored:
    """The entity as if its pending entries of other messages (`own`: this message's) were settled: they
    were counted, so their counted markers are written (a message that counted them and never reached
    its step 5 lies in the IngestDLQ, or is still in flight: either way its next receive finds the
    marker, counts nothing and writes the history item), and the entries leave `pending` with the next
    profile write. Bounds `pending` without ever failing a message (docs/exactness.md)."""
    fallback = int(time.time()) + COUNTED_DAYS * 86_400  # for entries written before markers existed
    orphans = [pending_entry(mid, value, fallback) for mid, value in stored.pending.items() if mid not in own]
    if orphans:
        work.profiles.record(work.workspace_id, {}, {}, work.mapping_version, {key: orphans})
    kept = {mid: value for mid, value in stored.pending.items() if mid in own}
    return Stored(stored.profile, stored.version, kept, stored.deleted_at)


def write_or_refused(
    work: Work,
    entity: EntityPlan,
    stored: Stored,
    existing: Seen,
    change: Profile,
    history: list[HistoryRecord],
) -> Written | Unstorable:
    """write_entity, or the Unstorable DynamoDB answered (its events are kept with the reason)."""
    try:
        return write_entity(work, entity, stored, existing, change, history)
    except Unstorable as refused:
        return refused


def over_budget_events(entity: EntityPlan, kept: Profile, deleted_at: str | None) -> list[dict[str, Any]]:
    """The entity's events that added something its bounded profile does not keep (docs/data-model.md,
    bounded profiles), with the maps concerned: they were applied otherwise (history, counts of kept
    names)."""
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


# --- step 5 ------------------------------------------------------------------------------------------


def record_each(
    work: Work,
    history: dict[str, list[HistoryRecord]],
    markers: dict[str, list[Counted]],
    memberships: dict[str, list[str]],
    planned: Plan,
) -> dict[str, dict[str, Any]]:
    """Write the history items, counted markers and memberships; if DynamoDB refuses an item as invalid
    (plan refuses what it knows of; this is defence in depth), write entity by entity, then record by
    record (its history item and marker together), and return, per entity, the events of the records
    refused (by messageId; a refused membership's events under "GROUP#<n>"). Every other failure
    propagates (the message is retried)."""
    workspace_id, version = work.workspace_id, work.mapping_version
    try:
        work.profiles.record(workspace_id, history, memberships, version, markers)
        return {}
    except Unstorable:
        pass
    refused: dict[str, dict[str, Any]] = {}
    for key in {**history, **markers}:
        items, marks = history.get(key, []), markers.get(key, [])
        try:
            work.profiles.record(
                workspace_id, {key: items}, {key: memberships.get(key, [])}, version, {key: marks}
            )
            continue
        except Unstorable:
            pass
        events = {c.history.message_id: c.event for c in planned.entities[key].contributions if c.history}
        by_id = {record.message_id: record for record in items}
        marked = {marker.message_id: marker for marker in marks}
        for mid in dict.fromkeys([*by_id, *marked]):
            item = [by_id[mid]] if mid in by_id else []
            mark = [marked[mid]] if mid in marked else []
            try:
                work.profiles.record(workspace_id, {key: item}, {}, version, {key: mark})
            except Unstorable:
                refused.setdefault(key, {})[mid] = events.get(mid)
        try:
            work.profiles.record(workspace_id, {}, {key: memberships.get(key, [])}, version)
        except Unstorable:
            group_events = [c.event for c in planned.entities[key].contributions if c.profile.groups]
            refused.setdefault(key, {}).update({f"GROUP#{n}": e for n, e in enumerate(group_events)})
    return {key: {mid: e for mid, e in events.items() if e is not None} for key, events in refused.items()}


def take_back_refused(work: Work, key: str, refused: dict[str, Any]) -> None:
    """Records whose history items DynamoDB refused (their events are parked) leave `pending` and their
    counts are taken back, so the profile is as if they never came and a redelivery does the same again
    (conditional on the version read, like every profile write: retry.conditionally)."""
    kind, entity_id = key.split("#", 1)

    def attempt(_: int) -> bool | None:
        stored = work.profiles.read_entities(work.workspace_id, [key]).get(key, Stored())
        gone = {
            mid: pending_entry(mid, value, 0).name for mid, value in stored.pending.items() if mid in refused
        }
        if stored.profile is None or not gone:
            return True
        profile = stored.profile
        profile.counts = dict(profile.counts)
        for name in gone.values():
            if profile.counts.get(name, 0) > 1:
                profile.counts[name] -= 1
            else:
                profile.counts.pop(name, None)
        return (
            work.profiles.put_profile(
                work.workspace_id,
                kind,
                entity_id,
                profile,
                pending={mid: name for mid, name in stored.pending.items() if mid not in refused},
                version=stored.version + 1,
                mapping_version=work.mapping_version,
            )
            or None
        )

    conditionally(
        attempt, partial(ProfileContended, f"Profile {kind} kept changing while being written; retry later.")
    )
