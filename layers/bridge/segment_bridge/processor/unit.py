"""The processor's use case: one queue message's events -> the workspace's profiles, links and history,
as one unit of work (`Unit`, made by `apply_batch`) whose `run` is the algorithm below, one call a step.
docs/processing.md proves each step and the whole: every event applied exactly once, without
transactions, under redelivery, crashes between any two writes, concurrent writers and deletes.

1. privacy deletes first (privacy/hooks.py `deletes_first`: a tombstone, then the identity's data as of
   the delete, and its connected ids', in chunks within the message's share of time: an unfinished
   erase defers the message, whose next receive resumes it and applies the rest exactly once);
2. `read`: the workspace's index of deleted ids (deleted_ids.py), then every entity's profile and pending
   list and the deletion times of the entities and link ids the index may hold, in one batch; late
   events of deleted entities (privacy `late_events`) delete the ids they connect to a deleted user as
   of its deletion, and the message's entities are read again;
3. `link`: one conditional write per previousId, the latest (by timestamp) wins; a link made at or
   before a deletion of its user or of its previousId is not written;
4. `write_profiles` (entities.py, per entity): `settle` merges the change and counts only records that
   have no history item and are not pending; the profile is written conditionally on the version read,
   listing the new records as `pending` (a write-ahead log, at most MAX_PENDING_BYTES: an entity with
   more records than PENDING_ROUND_BYTES of entries is written in `rounds` of steps 4 and 5). If
   another writer got there first, read again and settle again;
5. `record_history`, only after every profile write of the round: the history (and membership) items. A
   crash between 4 and 5 is finished by the redelivery: pending records are never counted again, their
   items are written, and entries leave `pending` once their items are seen. An item DynamoDB refuses
   parks its event, and its entry leaves `pending` with its count taken back (`take_back_refused`);
6. privacy `erase_what_a_delete_missed`: the index read again, and the deletion times of the entities
   and link ids written that step 2's index held (all of them if its epoch rose meanwhile): a delete
   whose tombstone came after step 2 may have erased before steps 3-5 landed, so any that rose are
   erased again as of it.

Within a message, entities are independent: step 3's links, step 4's writes (each entity with its own
conflict retries) and the store's batch calls are in flight together, IO_THREADS at a time; the order
between the steps stays. (message.py: a queue message received within the invocation's time, or
deferred; replay.py runs archived events through a mapping again with apply_batch.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from segment_bridge.deleted_ids import DeletedIds
from segment_bridge.errors import Unstorable
from segment_bridge.identity import MergeProtection, refused_links
from segment_bridge.mapping import Mapping
from segment_bridge.planning import Changes, HistoryRecord, Link, Plan, plan
from segment_bridge.privacy.hooks import (
    deletes_first,
    erase_what_a_delete_missed,
    late_events,
    late_for_deleted,
    link_keys,
)
from segment_bridge.processor.entities import (
    each_at_once,
    in_rounds,
    over_budget_events,
    record_each,
    take_back_refused,
    write_or_refused,
)
from segment_bridge.processor.ports import ProfileWrites, Repositories
from segment_bridge.processor.results import Applied, Written, unapplied_records
from segment_bridge.profiles import COUNTED_DAYS, Seen, Stored


def apply_batch(
    workspace_id: str,
    events: list[dict[str, Any]],
    mapping: Mapping,
    store: Repositories,
    deadline: float = math.inf,
    counted_days: int = COUNTED_DAYS,
) -> Applied:
    """Apply one queue message's events (intake's output) under `mapping`: one read and about one
    conditional write per entity. `deadline` (time.monotonic()) bounds a privacy delete's erase;
    `counted_days`: how long after its receipt an event's counted marker lives (docs/exactness.md)."""
    planned = plan(events, mapping, counted_days)
    unit = Unit(workspace_id, store.profiles, mapping.version, deadline, mapping.merge_protection)
    applied = unit.run(planned)
    applied.blocked_ids += planned.blocked_ids
    applied.skipped += planned.skipped
    applied.ignored_preferences += planned.ignored_preferences
    applied.clamped_timestamps += planned.clamped_timestamps
    applied.failed_paths += planned.failed_paths
    applied.unapplied.extend(planned.unapplied)
    return applied


@dataclass(frozen=True)
class Round:
    """One round of steps 4 and 5: each entity's history records of the round (their profile changes,
    idempotent, go with each round). Most messages have one round (n 0)."""

    n: int
    records: dict[str, list[HistoryRecord]]


@dataclass
class Unit:
    """One message's unit of work: whose entities (`workspace_id`), the repositories, the mapping version
    every write carries, when its share of the invocation's time ends (`deadline`, time.monotonic()),
    what the steps read, and the running result. It is privacy's `Work` (privacy/ports.py) and the
    entities' (ports.py)."""

    workspace_id: str
    profiles: ProfileWrites
    mapping_version: int
    deadline: float = math.inf
    protection: MergeProtection = field(default_factory=MergeProtection)
    """The workspace's merge protection: its limit on anonymous ids counts the links it refuses."""
    applied: Applied = field(default_factory=Applied)
    index: DeletedIds = field(default_factory=DeletedIds)
    """The index of deleted ids as step 2 read it (before the entities)."""
    stored: dict[str, Stored] = field(default_factory=dict)
    """Each entity as last read (step 2, and again before each later round)."""
    seen: dict[str, Stored] = field(default_factory=dict)
    """The entities and link ids as step 2 read them: the deletion times step 6 compares against."""
    changes: dict[str, Changes] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    """The entities whose first round was written and recorded."""

    def run(self, planned: Plan) -> Applied:
        """The six steps of the module's docstring, one call each; steps 4 and 5 in rounds."""
        deletes_first(self, planned.deletions)  # 1
        self.applied.deletions += len(planned.deletions)
        self.read(planned)  # 2
        links = self.link(planned)  # 3
        for part in self.rounds(planned):
            written = self.write_profiles(planned, part)  # 4
            self.record_history(planned, part, written)  # 5
        erase_what_a_delete_missed(self, self.deletions_read(links), self.index, links)  # 6
        return self.applied

    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    # --- step 2 -------------------------------------------------------------------------------------

    def read(self, planned: Plan) -> None:
        """The workspace's index of deleted ids first, then the entities' profiles and the tombstones the
        index may hold, of the entities and of the link ids (whose profiles are not needed). The index is
        read before the entities: that order is what step 6 relies on (deleted_ids.py). Read again while
        late events of deleted entities delete more ids: those may have events (or links) in this message
        too, as if they came later."""
        linked = {f"{kind}#{link.previous_id}" for link in planned.links for kind in ("A", "U")}
        entities = list(planned.entities)
        handled: dict[str, str] = {}  # entity -> the deletion time its late events were handled at
        forgot = True
        while forgot:
            self.index = self.profiles.deleted_ids(self.workspace_id)
            wanted = self.index.to_read([*entities, *linked])
            current = self.profiles.read_entities(self.workspace_id, entities, wanted)
            self.stored = {key: current.get(key, Stored()) for key in planned.entities}
            self.changes = {
                key: e.changes(self.stored[key].deleted_at) for key, e in planned.entities.items()
            }
            forgot = False
            for key, change in self.changes.items():
                deleted_at = self.stored[key].deleted_at
                if change.dropped and deleted_at is not None and handled.get(key) != deleted_at:
                    handled[key] = deleted_at  # handled again only if its deletion time rises
                    forgot = late_events(self, key, deleted_at, change.dropped) or forgot
        self.seen = self.stored | {key: current.get(key, Stored()) for key in linked}

    # --- step 3 -------------------------------------------------------------------------------------

    def link(self, planned: Plan) -> list[Link]:
        """Each previousId's latest link, unless a delete would have taken it; the links written."""
        links = [link for link in latest_links(planned.links) if not late_for_deleted(link, self.seen)]
        for refused in each_at_once([partial(self._write_link, planned.links, link) for link in links]):
            self.applied.unapplied.extend(refused)
        self.applied.links += len(planned.links)
        return links

    def _write_link(self, links: list[Link], link: Link) -> list[dict[str, Any]]:
        try:
            self.profiles.put_link(self.workspace_id, link, self.mapping_version)
        except Unstorable:  # plan refuses ids too long for their keys: only events from before the limits
            reason = "DynamoDB refused the identity link's keys"
            return [
                {"reason": reason, "event": o.event}
                for o in links
                if o.previous_id == link.previous_id and o.event
            ]
        return []

    # --- steps 4 and 5 ------------------------------------------------------------------------------

    def rounds(self, planned: Plan) -> Iterator[Round]:
        """The rounds of steps 4 and 5: every entity with something newer than its deletion is in the
        first; an entity with more history records than one round holds (PENDING_ROUND_BYTES of
        `pending`) is read again and written in later ones, if its first was written."""
        to_write = []
        for key, change in self.changes.items():
            reason = f"the user was deleted at {self.stored[key].deleted_at}"
            self.applied.unapplied.extend(unapplied_records(change.dropped, reason))
            if not (change.dropped and change.profile.first_seen is None):  # else: all older than it
                to_write.append(key)
        parts = {key: in_rounds(self.changes[key].history) for key in to_write}
        for n in range(max([len(part) for part in parts.values()], default=1)):
            if n:
                to_write = [key for key in self.written if len(parts[key]) > n]
                self.stored |= self.profiles.read_entities(
                    self.workspace_id, to_write, self.index.to_read(to_write)
                )
            yield Round(n, {key: parts[key][n] for key in to_write})

    def write_profiles(self, planned: Plan, part: Round) -> dict[str, Written]:
        """Step 4: each entity's profile written (entities.py), all at once; the figures counted. An
        entity whose profile DynamoDB refuses has its events kept with the reason."""
        keys = list(part.records)
        wanted = {
            key: {r.message_id for r in part.records[key]} | set(self.stored[key].pending) for key in keys
        }
        existing = self.profiles.seen_history(self.workspace_id, wanted)
        results = each_at_once(
            [
                partial(
                    write_or_refused,
                    self,
                    planned.entities[key],
                    self.stored[key],
                    existing.get(key, Seen()),
                    self.changes[key].profile,
                    part.records[key],
                )
                for key in keys
            ]
        )
        written: dict[str, Written] = {}
        for key, result in zip(keys, results, strict=True):
            entity = planned.entities[key]
            if isinstance(result, Unstorable):
                reason = "the profile is larger or deeper than DynamoDB allows"
                self.applied.unapplied.extend(unapplied_records(entity.contributions, reason))
                continue
            written[key] = result
            self.applied.history_written += result.counted
            self.applied.duplicates += result.known
            if part.n == 0:
                self.applied.entities += 1
                self.applied.changed += result.changed
                parked = over_budget_events(entity, result.profile, self.stored[key].deleted_at)
                self.applied.over_budget += len(parked)
                self.applied.unapplied.extend(parked)
                if entity.kind == "U":  # merge protection's limit, on what the profile now holds
                    linked = [link.previous_id for link in planned.links if link.user_id == entity.id]
                    self.applied.refused_links += refused_links(
                        linked, result.profile.anonymous_ids, self.protection
                    )
        return written

    def record_history(self, planned: Plan, part: Round, written: dict[str, Written]) -> None:
        """Step 5, only after every profile write of the round (their `pending` lists make it safe to
        crash and redo): the history items not there yet, and (first round) the memberships; the counts
        of items DynamoDB refuses taken back, their events kept with the reason."""
        history = {key: result.to_record for key, result in written.items()}
        markers = {key: result.to_mark for key, result in written.items()}
        memberships = {key: list(self.changes[key].profile.groups) if part.n == 0 else [] for key in written}
        refused = record_each(self, history, markers, memberships, planned)
        for key, mids in refused.items():
            self.applied.history_written -= len([mid for mid in mids if not mid.startswith("GROUP#")])
            take_back_refused(self, key, mids)
        self.applied.unapplied.extend(
            {"reason": "DynamoDB refused its history or membership item", "event": event}
            for events in refused.values()
            for event in events.values()
        )
        self.written = self.written or list(history)

    # --- step 6 -------------------------------------------------------------------------------------

    def deletions_read(self, links: list[Link]) -> dict[str, str | None]:
        """What step 2 read of the deletion times of the entities written and of the links' ids."""
        read = {key: self.seen[key].deleted_at for key in self.written}
        return read | {key: self.seen[key].deleted_at for link in links for key in link_keys(link)}


def latest_links(links: list[Link]) -> list[Link]:
    """One link per previousId: the latest by (timestamp, messageId), as the stored link's condition
    would keep anyway (one write instead of several)."""
    latest: dict[str, Link] = {}
    for link in links:
        if link.previous_id not in latest or link.stamp > latest[link.previous_id].stamp:
            latest[link.previous_id] = link
    return list(latest.values())
