"""`replay`, `replay status`, `purge` and `jobs`: archive jobs planned on the fleet (docs/archive-jobs.md)
and followed; the JobsFunction's workers do the reading and writing, wherever this command runs."""

from __future__ import annotations

import sys
import time
from datetime import date, timedelta
from typing import Any

import click

from bridge_dev.cli.app import cli, json_option, show, table_text, target_of, utc_day
from bridge_dev.cli.dead_letters import keep_dead_letters
from bridge_dev.target import Target
from segment_bridge.errors import NotFound
from segment_bridge.jobs.purge import plan_purge
from segment_bridge.jobs.replay import plan_replay
from segment_bridge.processor.replay import dry_run as count_replay
from segment_bridge.profiles import Stored
from segment_bridge.store.jobs import JobRecord

POLL_SECONDS = 1.0
JOB_COLUMNS = ("job_id", "kind", "state", "tasks", "objects_read", "events_read", "changed", "created_at")


class ReplayGroup(click.Group):
    """`replay WS --since D` runs the replay; `replay status [WS|JOB]` follows one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@cli.group("replay", cls=ReplayGroup)
def replay_group() -> None:
    """Apply a workspace's current mapping to its archived events again (idempotent), as a job on the
    fleet: `replay WS --since D [--until D]`; `replay status [WS|JOB]`."""


@replay_group.command("run", hidden=True)
@click.argument("workspace_id")
@click.option("--since", required=True, help="First UTC day (YYYY-MM-DD) of archived events.")
@click.option("--until", help="Last UTC day (YYYY-MM-DD); default today.")
@click.option("--dry-run", is_flag=True, help="Count what would change; write nothing (runs here).")
@click.option("--wait/--no-wait", default=True, help="Follow the job until it ends (default) or return.")
@click.option(
    "--window",
    type=click.IntRange(1, 1000),
    help="At most this many of its messages queued and not yet applied (default: the stack's ReplayWindow).",
)
@json_option
@click.pass_context
def replay_command(
    ctx: click.Context,
    workspace_id: str,
    since: str,
    until: str | None,
    dry_run: bool,
    wait: bool,
    window: int | None,
    as_json: bool,
) -> None:
    target = target_of(ctx)
    first, last = utc_day(since), utc_day(until)
    if last < first:
        raise click.BadParameter("--until is before --since")
    store = target.store
    store.get_workspace(workspace_id)
    current = store.get_mapping(workspace_id)
    if dry_run:
        batches = count_archived_batches(target, workspace_id, first, last)
        with click.progressbar(length=batches, label="Counting", file=sys.stderr, show_pos=True) as bar:
            result = count_replay(workspace_id, first, last, current, store, on_batch=lambda _: bar.update(1))
        figures = result.figures()
        data = {
            "workspace_id": workspace_id,
            "since": first.isoformat(),
            "until": last.isoformat(),
            "mapping_version": current.version,
            "dry_run": True,
            "batches": batches,
            **figures,
        }
        show(
            as_json,
            data,
            f"A replay under mapping version {current.version} would change {figures['changed']} profiles "
            f"and add {figures['history_written']} history items; {figures['skipped']} events skipped.",
        )
        return
    job = plan_replay(workspace_id, first, last, store, mapping_version=current.version, window=window)
    record = follow(target, job.job_id) if wait else store.jobs.job(job.job_id)
    show(as_json, job_data(record) | {"mapping_version": current.version}, lambda: replay_text(record))


def count_archived_batches(target: Target, workspace_id: str, since: date, until: date) -> int:
    """How many archived batches a dry run goes through (the length of its progress bar)."""
    total, day = 0, since
    while day <= until:
        total += target.store.count_archived(workspace_id, day)
        day += timedelta(days=1)
    return total


def replay_text(record: JobRecord) -> str:
    c = record.counters
    return (
        f"Replay {record.job_id} {record.state}: {c['objects_read']} archived objects, {c['events_read']} "
        f"events, {c['messages_applied']} of {c['messages_sent']} messages applied; changed "
        f"{c['profiles_changed']} profiles, {c['history_written']} new history items."
    )


@replay_group.command("status")
@click.argument("which", required=False)
@json_option
@click.pass_context
def replay_status(ctx: click.Context, which: str | None, as_json: bool) -> None:
    """A replay job's progress: by job id, or the latest of a workspace (or of all)."""
    record = find_job(target_of(ctx), which, kind="replay")
    show(as_json, job_data(record), lambda: replay_text(record))


@cli.command("purge")
@click.argument("workspace_id")
@click.option("--user", "user_id", help="Only this deleted user (and the ids linked to it).")
@click.option("--wait/--no-wait", default=True, help="Follow the job until it ends (default) or return.")
@json_option
@click.pass_context
def purge_command(
    ctx: click.Context,
    workspace_id: str,
    user_id: str | None,
    wait: bool,
    as_json: bool,
) -> None:
    """Plan the purge of deleted users' events from the archive (raw/, rejected/, unapplied/) and parked/
    now, as the daily PurgeFunction does: those stamped at or before each user's delete."""
    target = target_of(ctx)
    store = target.store
    store.get_workspace(workspace_id)
    if user_id is not None:
        key = f"U#{user_id}"
        if store.profiles.read_entities(workspace_id, [key]).get(key, Stored()).deleted_at is None:
            raise NotFound("No delete of this user is recorded in the workspace.")
    for queue in ("ingest", "emitter"):  # as the daily run: dead letters into parked/ first, then purged
        keep_dead_letters(target, queue, take=True)
    job = plan_purge(workspace_id, store, user_id=user_id)
    if job is None:
        show(as_json, {"workspace_id": workspace_id, "job_id": None}, "No deletions are listed for purging.")
        return
    record = follow(target, job.job_id) if wait else store.jobs.job(job.job_id)
    c = record.counters
    show(
        as_json,
        job_data(record),
        f"Purge {record.job_id} {record.state}: {c['events_changed']} archived events removed "
        f"({c['objects_changed']} of {c['objects_read']} objects rewritten), tasks {c['tasks_done']}/"
        f"{c['tasks_total']}.",
    )


@cli.group("jobs")
def jobs_group() -> None:
    """Archive jobs (purge, replay, offboarding) and their progress."""


@jobs_group.command("list")
@click.option("--kind", type=click.Choice(["purge", "replay", "offboard"]))
@click.option("--limit", default=20, show_default=True)
@json_option
@click.pass_context
def jobs_list(ctx: click.Context, kind: str | None, limit: int, as_json: bool) -> None:
    records = []
    for record in target_of(ctx).store.jobs.jobs(kind=kind):
        records.append(job_data(record))
        if len(records) >= limit:
            break
    show(as_json, records, lambda: table_text(records, JOB_COLUMNS, "No jobs."))


@jobs_group.command("show")
@click.argument("job_id")
@json_option
@click.pass_context
def jobs_show(ctx: click.Context, job_id: str, as_json: bool) -> None:
    record = target_of(ctx).store.jobs.job(job_id)
    data = job_data(record) | ({"receipt": record.receipt} if record.receipt else {})
    show(as_json, data, lambda: "\n".join(f"{name:<18} {value}" for name, value in data.items()))


def job_data(record: JobRecord) -> dict[str, Any]:
    c = record.counters
    return record.figures() | {
        "tasks": f"{c['tasks_done']}/{c['tasks_total']}",
        "changed": c["events_changed"] or c["profiles_changed"],
    }


def find_job(target: Target, which: str | None, *, kind: str) -> JobRecord:
    store = target.store
    if which is not None:
        try:
            return store.jobs.job(which)
        except NotFound:
            pass
    for record in store.jobs.jobs(kind=kind):
        if which is None or record.workspace == which:
            return record
    raise NotFound(f"No {kind} job found" + (f" for {which}." if which else "."))


def follow(target: Target, job_id: str, timeout: float = 24 * 3600) -> JobRecord:
    """Poll the job until it ends, a progress bar on stderr; Ctrl-C leaves it running on the fleet."""
    store = target.store
    record = store.jobs.job(job_id)
    deadline = time.monotonic() + timeout
    with click.progressbar(
        length=max(1, record.counters["tasks_total"]), label="Tasks", file=sys.stderr
    ) as bar:
        while record.state not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            record = store.jobs.job(job_id)
            bar.length = max(1, record.counters["tasks_total"])
            bar.pos = record.counters["tasks_done"]
            bar.update(0)
    return record
