"""Replay and preview: archived events through a mapping again, and what events would change under a
mapping without writing anything (`segment-bridge replay`, `segment-bridge mapping preview`). Both use
the processor's own planning and applying (unit.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from segment_bridge.mapping import Mapping
from segment_bridge.planning import HistoryRecord, Plan, plan
from segment_bridge.processor.ports import Repositories
from segment_bridge.processor.results import Applied
from segment_bridge.processor.unit import apply_batch
from segment_bridge.profiles import EntityKind, Profile, merge


def replay(
    workspace_id: str,
    since: date,
    until: date,
    mapping: Mapping,
    store: Repositories,
    *,
    dry_run: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> Applied:
    """Run archived events received from `since` to `until` (inclusive, UTC days) through `mapping` again.

    Everything the processor writes is idempotent, so a replay under an unchanged mapping changes nothing;
    under a new mapping it adds what the new mapping finds (new channels, preferences, events that
    filters had skipped). History already recorded keeps the name and mapping version it was written
    with. With `dry_run`, nothing is written: the result counts what the mapping would apply.
    `on_batch` is told the number of events of each archived batch once it is done (for progress)."""
    total = Applied()
    day = since
    while day <= until:
        for events in store.archive.archived_batches(workspace_id, day):
            if dry_run:
                planned = plan(events, mapping)
                total.add(
                    Applied(
                        entities=len(planned.entities),
                        links=len(planned.links),
                        deletions=len(planned.deletions),
                        skipped=planned.skipped,
                        ignored_preferences=planned.ignored_preferences,
                    )
                )
            else:
                total.add(apply_batch(workspace_id, events, mapping, store))
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
