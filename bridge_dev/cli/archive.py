"""`replay` and `purge`: archived events through the current mapping again, deleted users' events out."""

from __future__ import annotations

import sys
from datetime import date, timedelta
from typing import Any

import click

from bridge_dev.cli.app import (
    cli,
    json_option,
    show,
    target_of,
    utc_day,
)
from bridge_dev.cli.dead_letters import (
    keep_dead_letters,
)
from bridge_dev.target import Target
from segment_bridge.errors import NotFound
from segment_bridge.privacy.purge import purge
from segment_bridge.processor.replay import replay
from segment_bridge.profiles import Stored


@cli.command("replay")
@click.argument("workspace_id")
@click.option("--since", required=True, help="First UTC day (YYYY-MM-DD) of archived events.")
@click.option("--until", help="Last UTC day (YYYY-MM-DD); default today.")
@click.option("--dry-run", is_flag=True, help="Count what would apply; write nothing.")
@json_option
@click.pass_context
def replay_command(
    ctx: click.Context, workspace_id: str, since: str, until: str | None, dry_run: bool, as_json: bool
) -> None:
    """Apply the workspace's current mapping to its archived events again (idempotent)."""
    target = target_of(ctx)
    first, last = utc_day(since), utc_day(until)
    if last < first:
        raise click.BadParameter("--until is before --since")
    store = target.store
    store.get_workspace(workspace_id)
    current = store.get_mapping(workspace_id)
    batches = count_archived_batches(target, workspace_id, first, last)
    with click.progressbar(length=batches, label="Replaying", file=sys.stderr, show_pos=True) as bar:
        result = replay(
            workspace_id, first, last, current, store, dry_run=dry_run, on_batch=lambda _: bar.update(1)
        )
    figures = result.figures()
    data = {
        "workspace_id": workspace_id,
        "since": first.isoformat(),
        "until": last.isoformat(),
        "mapping_version": current.version,
        "dry_run": dry_run,
        "batches": batches,
        **figures,
    }
    verb = "would change" if dry_run else "changed"
    show(
        as_json,
        data,
        f"Replayed {batches} archived batches under mapping version {current.version}: {verb} "
        f"{figures['entities']} profiles, {figures['history_written']} new history items, "
        f"{figures['links']} links; {figures['skipped']} events skipped, {figures['unapplied']} unapplied.",
    )


@cli.command("purge")
@click.argument("workspace_id")
@click.option("--user", "user_id", help="Only this deleted user (and the ids linked to it).")
@json_option
@click.pass_context
def purge_command(ctx: click.Context, workspace_id: str, user_id: str | None, as_json: bool) -> None:
    """Remove deleted users' events from the archive (raw/, rejected/, unapplied/) now, as the daily
    PurgeFunction does: those stamped at or before each user's delete."""
    data = purge_archive(target_of(ctx), workspace_id, user_id)
    show(
        as_json,
        data,
        f"Purged {data['events_removed']} archived events of {data['entities']} deleted ids "
        f"({data['objects_rewritten']} of {data['objects_read']} objects rewritten).",
    )


def count_archived_batches(target: Target, workspace_id: str, since: date, until: date) -> int:
    """How many archived batches `replay` will go through (the length of its progress bar)."""
    total, day = 0, since
    while day <= until:
        total += target.store.count_archived(workspace_id, day)
        day += timedelta(days=1)
    return total


def purge_archive(target: Target, workspace_id: str, user_id: str | None) -> dict[str, Any]:
    """Remove deleted users' events from the workspace's archive and parked/ now (what the daily
    PurgeFunction does),
    or only one deleted user's (itself and its linked ids) with `user_id`."""
    store = target.store
    store.get_workspace(workspace_id)
    if user_id is not None:
        key = f"U#{user_id}"
        if store.profiles.read_entities(workspace_id, [key]).get(key, Stored()).deleted_at is None:
            raise NotFound("No delete of this user is recorded in the workspace.")
    for queue in ("ingest", "emitter"):  # as the daily run: dead letters into parked/ first, then purged
        keep_dead_letters(target, queue, take=True)
    done = purge(
        workspace_id,
        store.archive,
        store.profiles,
        user_id=user_id,
        parked=store.parked,
        receipts=store.receipts,
    )
    return {"workspace_id": workspace_id, **done.figures()}
