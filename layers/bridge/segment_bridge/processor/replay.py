"""Replay's dry run and preview: what archived events, or given events, would change under a mapping,
without writing anything (`segment-bridge replay --dry-run`, `segment-bridge mapping preview`). A replay
itself is a job on the fleet (jobs/replay.py): the processor applies its messages
(message.replay_message)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

from segment_bridge.mapping import Mapping
from segment_bridge.planning import HistoryRecord, Plan, plan
from segment_bridge.processor.ports import ArchiveWrites
from segment_bridge.processor.results import Applied
from segment_bridge.profiles import EntityKind, Profile, bounded, merge


class ReplayReads(Protocol):
    """The store, as a dry run reads it: archived batches, profiles and recorded history."""

    @property
    def archive(self) -> ArchiveWrites: ...
    def read_profile(self, workspace_id: str, kind: str, entity_id: str) -> Profile | None: ...
    def existing_history(self, workspace_id: str, wanted: dict[str, set[str]]) -> dict[str, set[str]]: ...


def dry_run(
    workspace_id: str,
    since: date,
    until: date,
    mapping: Mapping,
    store: ReplayReads,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> Applied:
    """What replaying archived events received from `since` to `until` (inclusive, UTC days) under
    `mapping` would change, nothing written (`segment-bridge replay --dry-run`; a real replay is a job on
    the fleet: jobs/replay.py). `changed` counts the profiles that would differ from what is stored and
    `history_written` the history items not recorded yet, as the processor would find them (`preview`):
    a second replay under an unchanged mapping would change nothing, and says so.
    `on_batch` is told the number of events of each archived batch once it is done (for progress)."""
    total = Applied()
    day = since
    while day <= until:
        for events in store.archive.archived_batches(workspace_id, day):
            planned, changes = preview(
                events,
                mapping,
                lambda kind, entity_id: store.read_profile(workspace_id, kind, entity_id),
                lambda wanted: store.existing_history(workspace_id, wanted),
            )
            total.add(
                Applied(
                    entities=len(planned.entities),
                    changed=sum(1 for c in changes if c.before is None or bounded(c.after) != c.before),
                    history_written=sum(len(c.history) for c in changes),
                    links=len(planned.links),
                    deletions=len(planned.deletions),
                    skipped=planned.skipped,
                    ignored_preferences=planned.ignored_preferences,
                )
            )
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
