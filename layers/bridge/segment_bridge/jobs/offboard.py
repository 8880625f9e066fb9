"""Offboarding as a job: everything of one workspace removed, in every table, the archive, parked/ and
Secrets Manager, ending with a receipt (`segment-bridge workspaces delete WS`; docs/archive-jobs.md).

    plan_offboard      the workspace marked "offboarding" and its keys revoked at once (no key lookup
                       finds it, the processor applies none of its messages), then the job: its record
                       (workspace: the SHA-256 of the id; the id itself only in params, removed at the
                       end) and its tasks, visible after `quiet_seconds` (what was in flight is done)
    offboard-scan      one Scan segment of a table (ProfilesTable, EventsTable, WorkspacesTable) from its
                       cursor, the workspace's items deleted (the workspace's own item stays, as the mark,
                       until the end; its jobs with their tasks)
    offboard-outbox    the workspace's OutboxTable items (a Query of pk=WS#<ws>), page by page
    offboard-receipts  the workspace's privacy receipts (DeletionsTable, a Query of its by-workspace index
                       gsi1pk=WS#<ws>), page by page: only the workspace's receipts are read
    offboard-prefix    raw/, rejected/, unapplied/ of the workspace: pages of keys, DeleteObjects
    offboard-parked    one queue's parked/ items that are the workspace's, removed (purge.walk_parked)
    offboard-secret    its secrets (Segment write key, Segment Public API token), deleted without a
                       recovery window
    finish_offboard    every task done: the workspace's item deleted, the job's tasks (their cursors hold
                       keys of the workspace) deleted, the record kept as the receipt: counts, times, the
                       SHA-256 of the workspace id, nothing else

Every task is idempotent (deleting what is gone does nothing), so a killed worker's redelivery repeats
nothing harmful; counts are of deletes made, a repeat after a kill may count a page's deletes again
(`items_deleted` is at least the number removed; the bucket's and the tables' emptiness is the promise).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from segment_bridge.errors import NotFound
from segment_bridge.jobs.engine import (
    JobRecordView,
    JobStore,
    TaskRun,
    all_tasks_done,
    new_job_id,
    task_id_of,
)
from segment_bridge.jobs.purge import ArchivePages, ParkedPages, walk_parked
from segment_bridge.privacy.purge import ARCHIVE_KINDS, PARKED_QUEUES, ParkedChange, parked_envelope

SCAN_SEGMENTS = 8
"""Scan segments (tasks) per table: each reads its share of the whole table once."""
IN_FLIGHT_SECONDS = 160
"""The ProcessorFunction's Timeout (150 s) and the IngestFunction's (10 s): a message the processor began
before the mark is applied, or its invocation is over, within it."""
MAX_DELAY_SECONDS = 900
"""SQS's DelaySeconds limit."""


class Offboarding(Protocol):
    """store.workspaces: the mark, the last delete, the secrets' names."""

    def begin_offboarding(self, workspace_id: str, job_id: str) -> tuple[str, list[str]]: ...
    def forget_workspace(self, workspace_id: str) -> None: ...
    def secret_names(self, workspace_id: str) -> list[str]: ...


class Revocation(Protocol):
    """store.credentials."""

    def revoke_key(self, workspace_id: str, kid: str) -> None: ...


class Sweep(Protocol):
    """store.sweep."""

    def tables(self) -> dict[str, str]: ...
    def scan_page(
        self, table: str, workspace_id: str, segment: int, segments: int, start: str | None
    ) -> tuple[list[dict[str, Any]], str | None]: ...
    def outbox_page(
        self, workspace_id: str, start: str | None
    ) -> tuple[list[dict[str, Any]], str | None]: ...
    def receipts_page(
        self, workspace_id: str, start: str | None
    ) -> tuple[list[dict[str, Any]], str | None]: ...
    def delete(self, table: str, keys: list[dict[str, Any]]) -> None: ...
    def delete_secret(self, name: str) -> bool: ...


class ObjectDeletes(ArchivePages, Protocol):
    def delete_keys(self, keys: list[str]) -> None: ...


class OffboardJobs(JobStore, Protocol):
    def delete_job(self, job_id: str) -> int: ...
    def delete_tasks(self, job_id: str) -> int: ...


class OffboardStores(Protocol):
    @property
    def workspaces(self) -> Offboarding: ...
    @property
    def credentials(self) -> Revocation: ...
    @property
    def sweep(self) -> Sweep: ...
    @property
    def archive(self) -> ObjectDeletes: ...
    @property
    def parked(self) -> ParkedPages: ...
    @property
    def jobs(self) -> OffboardJobs: ...


def workspace_digest(workspace_id: str) -> str:
    """What the receipt names the workspace by."""
    return hashlib.sha256(workspace_id.encode()).hexdigest()


def quiet_seconds(auth_cache_seconds: float) -> int:
    """How long the tasks wait after the mark: a warm ingest container's cached key (AuthCacheSeconds)
    and a message the processor began before the mark (IN_FLIGHT_SECONDS) are over by then."""
    return min(MAX_DELAY_SECONDS, int(auth_cache_seconds) + IN_FLIGHT_SECONDS)


def plan_offboard(workspace_id: str, stores: OffboardStores, *, quiet: int) -> JobRecordView:
    """Mark the workspace, revoke its keys, plan the job (the module's docstring). Run again for a
    workspace already offboarding, it plans the same job's tasks again (those planned stay as they are)."""
    job_id, live_keys = stores.workspaces.begin_offboarding(workspace_id, new_job_id("offboard"))
    for kid in live_keys:  # their KEY# items deleted: a container that has not cached a key finds none
        with contextlib.suppress(NotFound):  # revoked meanwhile
            stores.credentials.revoke_key(workspace_id, kid)
    try:
        job: JobRecordView = stores.jobs.job(job_id)
    except NotFound:
        job = stores.jobs.create_job(
            job_id, "offboard", workspace_digest(workspace_id), {"workspace": workspace_id}
        )
    tasks: list[tuple[str, str, dict[str, Any]]] = [
        (task_id_of("scan", table, str(n)), "offboard-scan", {"table": table, "segment": n})
        for table in stores.sweep.tables()
        for n in range(SCAN_SEGMENTS)
    ]
    tasks.append((task_id_of("outbox"), "offboard-outbox", {}))
    tasks.append((task_id_of("receipts"), "offboard-receipts", {}))
    tasks += [(task_id_of("prefix", kind), "offboard-prefix", {"kind": kind}) for kind in ARCHIVE_KINDS]
    tasks += [(task_id_of("parked", queue), "offboard-parked", {"queue": queue}) for queue in PARKED_QUEUES]
    tasks.append((task_id_of("secret"), "offboard-secret", {}))
    stores.jobs.add_tasks(job_id, tasks, delay=min(MAX_DELAY_SECONDS, quiet))
    return job


def _workspace(run: TaskRun) -> str:
    return str(run.job.params["workspace"])


def offboard_scan(run: TaskRun, stores: OffboardStores) -> bool:
    table, segment = run.spec["table"], int(run.spec["segment"])
    workspace_id = _workspace(run)
    cursor = run.task.cursor
    while True:
        if run.out_of_time():
            return False
        found, cursor = stores.sweep.scan_page(table, workspace_id, segment, SCAN_SEGMENTS, cursor)
        keys = [
            key
            for key in found
            if not (key["pk"] == f"WS#{workspace_id}" and key["sk"] == "WORKSPACE")  # the mark: last
            and key["pk"] != "JOBS"
        ]
        stores.sweep.delete(table, keys)
        items = len(keys)
        for job in (key for key in found if key["pk"] == "JOBS"):  # a purge or replay of the workspace
            items += stores.jobs.delete_job(str(job["sk"]).removeprefix("JOB#"))
        run.save(cursor, {"items_deleted": items}, done=cursor is None)
        if cursor is None:
            return True


def offboard_outbox(run: TaskRun, stores: OffboardStores) -> bool:
    return _query_pages(run, stores.sweep, "OutboxTable", stores.sweep.outbox_page)


def offboard_receipts(run: TaskRun, stores: OffboardStores) -> bool:
    return _query_pages(run, stores.sweep, "DeletionsTable", stores.sweep.receipts_page)


def _query_pages(
    run: TaskRun,
    sweep: Sweep,
    table: str,
    page: Callable[[str, str | None], tuple[list[dict[str, Any]], str | None]],
) -> bool:
    """The workspace's items of a table a Query finds, page by page from the task's cursor, deleted."""
    workspace_id = _workspace(run)
    cursor = run.task.cursor
    while True:
        if run.out_of_time():
            return False
        found, cursor = page(workspace_id, cursor)
        sweep.delete(table, found)
        run.save(cursor, {"items_deleted": len(found)}, done=cursor is None)
        if cursor is None:
            return True


def offboard_prefix(run: TaskRun, stores: OffboardStores) -> bool:
    prefix = f"{run.spec['kind']}/workspace={_workspace(run)}/"
    while True:
        if run.out_of_time():
            return False
        keys, _ = stores.archive.page(prefix, run.task.cursor)
        if not keys:
            run.save(run.task.cursor, done=True)
            return True
        stores.archive.delete_keys(keys)
        run.save(keys[-1], {"objects_read": len(keys), "objects_changed": len(keys)})


def offboard_parked(run: TaskRun, stores: OffboardStores) -> bool:
    workspace_id = _workspace(run)

    def decide(document: dict[str, Any]) -> ParkedChange | None:
        if document.get("kind") == "parked event":
            return ParkedChange(1) if document.get("workspace_id") == workspace_id else None
        letter = parked_envelope(document)
        if letter is None or letter[0].workspaceId != workspace_id:
            return None
        return ParkedChange(max(1, len(letter[1])))

    return walk_parked(run, stores.archive, stores.parked, decide)


def offboard_secret(run: TaskRun, stores: OffboardStores) -> bool:
    names = stores.workspaces.secret_names(_workspace(run))
    deleted = sum(stores.sweep.delete_secret(name) for name in names)
    run.save(None, {"items_deleted": deleted}, done=True)
    return True


def finish_offboard(jobs: JobStore, job: JobRecordView, stores: OffboardStores) -> None:
    """Every task done: the mark (the workspace's own item) and the job's tasks deleted, the receipt kept.
    Called again after a kill, it goes on where it stopped (engine.run_task calls it for a task gone
    while the job is finishing)."""
    if job.state == "running":
        if not all_tasks_done(job) or not jobs.set_state(job.job_id, ("running",), "finishing"):
            return
    elif job.state != "finishing":
        return
    stores.workspaces.forget_workspace(_workspace_of(job))
    stores.jobs.delete_tasks(job.job_id)
    c = job.counters
    finished = datetime.now(UTC).isoformat(timespec="seconds")
    receipt = {
        "workspace_sha256": job.workspace,
        "items_deleted": c["items_deleted"] + 1,  # and the workspace's own item
        "objects_deleted": c["objects_changed"],  # archived (raw/, rejected/, unapplied/) and parked
        "parked_events_deleted": c["events_changed"],
        "finished_at": finished,
    }
    jobs.set_state(
        job.job_id,
        ("finishing",),
        "done",
        finished_at=finished,
        receipt=json.dumps(receipt, separators=(",", ":")),
        params=gzip.compress(b"{}", mtime=0),
    )


def _workspace_of(job: JobRecordView) -> str:
    return str(job.params["workspace"])
