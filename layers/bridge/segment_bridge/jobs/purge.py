"""Purge as a job: deleted entities' events out of a workspace's archive (raw/, rejected/, unapplied/)
and parked/, by the JobsFunction's workers in parallel (docs/archive-jobs.md).

    plan_purge    the job (the daily PurgeFunction and `segment-bridge purge WS` only plan): the purge
                  list as it is now, one `purge-days` task per archive kind, one `purge-parked` task
    purge-days    lists the kind's day prefixes and plans one `purge-page` task per day
    purge-page    one page of keys (1,000, S3's page) of a day: plans the next page's task first, then
                  reads the objects READ_THREADS at a time, CHUNK_OBJECTS between saves
    purge-parked  one queue's parked/ items, CHUNK_OBJECTS keys a save from its cursor (`walk_parked`)
    finish_purge  once every task is done: the entities taken off the purge list (those listed again
                  since stay for the next purge), then their requests' receipts marked purged

An object is parsed only if one of the deleted ids occurs in its bytes as the archive writes it (JSON,
ASCII-escaped): one that cannot hold a deleted id is read, scanned and left as it is. An object that
holds some is rewritten without them (deleted when emptied). Before a chunk's rewrites the task saves
them as `pending` (with the cursor unchanged): a worker killed between a rewrite and its save is
resumed by one that reads the object again, finds nothing left to remove and counts the pending figure,
so `events_changed` stays exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from segment_bridge.concurrency import each_at_once, pool_of
from segment_bridge.jobs.engine import (
    JobRecordView,
    JobStore,
    TaskRun,
    all_tasks_done,
    new_job_id,
    plan_tasks,
    task_id_of,
)
from segment_bridge.privacy.ports import ReceiptBook
from segment_bridge.privacy.purge import (
    ARCHIVE_KINDS,
    PARKED_QUEUES,
    ParkedChange,
    PurgeList,
    deleted,
    parked_change,
)
from segment_bridge.privacy.receipts import mark_purged
from segment_bridge.tombstones import PendingPurge

CHUNK_OBJECTS = 64
"""Objects read between two saves of a page task's cursor (about 0.2 s of work at 16 reads at once)."""
READ_THREADS = 16
"""Objects read at once by one worker: S3's latency (20-50 ms a GET) overlaps; the decompressing and
scanning is CPU (bench_archive.py measured the per-worker rate)."""
DAYS_PER_SAVE = 50
"""Page tasks a `purge-days` task plans between two saves."""
PARKED_PREFIX = "parked/"
_readers = pool_of("purge-read", READ_THREADS)


class ArchivePages(Protocol):
    """store.archive: day prefixes, pages of keys, an object's lines, a rewrite."""

    def days(self, kind: str, workspace_id: str) -> list[str]: ...
    def page(
        self, prefix: str, start_after: str | None, limit: int | None = None
    ) -> tuple[list[str], bool]: ...
    def read_lines(self, key: str) -> bytes | None: ...
    def rewrite(self, key: str, records: list[dict[str, Any]]) -> None: ...


class PurgeStores(Protocol):
    @property
    def archive(self) -> ArchivePages: ...
    @property
    def profiles(self) -> PurgeList: ...
    @property
    def parked(self) -> ParkedPages: ...
    @property
    def jobs(self) -> JobStore: ...
    @property
    def receipts(self) -> ReceiptBook: ...


@dataclass(frozen=True)
class Deletions:
    """The job's deleted entities: id -> deleted_at, users and anonymous ids apart (privacy.purge)."""

    users: dict[str, str]
    anonymous: dict[str, str]

    @classmethod
    def of(cls, params: dict[str, Any]) -> Deletions:
        return cls(dict(params["users"]), dict(params["anonymous"]))

    def needles(self) -> list[bytes]:
        """How each id can occur in an archived line (json.dumps, ASCII-escaped, as store.archive writes);
        a numeric id also bare, as an event may send it as a number."""
        found = []
        for entity_id in {*self.users, *self.anonymous}:
            found.append(json.dumps(entity_id).encode())
            if entity_id.lstrip("-").replace(".", "", 1).isdigit():
                found.append(b":" + entity_id.encode())
        return found


def plan_purge(
    workspace_id: str, stores: PurgeStores, *, user_id: str | None = None, job_id: str | None = None
) -> JobRecordView | None:
    """The purge job of a workspace's listed deletions (only `user_id`'s and its linked ids' when given);
    None if nothing is listed."""
    pending = stores.profiles.pending_purges(workspace_id)
    if user_id is not None:
        pending = [p for p in pending if f"U#{user_id}" in (p.key, p.by)]
    if not pending:
        return None
    params = {
        "users": {p.id: p.deleted_at for p in pending if p.kind == "U"},
        "anonymous": {p.id: p.deleted_at for p in pending if p.kind == "A"},
        "listed": [asdict(p) for p in pending],
    }
    job_id = job_id or new_job_id("purge")
    job = stores.jobs.create_job(job_id, "purge", workspace_id, params)
    tasks: list[tuple[str, str, dict[str, Any]]] = [
        (task_id_of("days", kind), "purge-days", {"kind": kind}) for kind in ARCHIVE_KINDS
    ]
    tasks += [(task_id_of("parked", queue), "purge-parked", {"queue": queue}) for queue in PARKED_QUEUES]
    plan_tasks(stores.jobs, job_id, tasks)
    result: JobRecordView = job
    return result


def purge_days(run: TaskRun, stores: PurgeStores) -> bool:
    """Plan one page task per day prefix of the kind, DAYS_PER_SAVE between saves."""
    days = stores.archive.days(run.spec["kind"], run.job.workspace)
    start = int(run.task.cursor or 0)
    while start < len(days):
        if run.out_of_time():
            return False
        chunk = days[start : start + DAYS_PER_SAVE]
        run.plan(
            [
                (task_id_of("page", day, None), "purge-page", {"prefix": day, "start_after": None})
                for day in chunk
            ]
        )
        start += len(chunk)
        run.save(start)
    run.save(start, done=True)
    return True


@dataclass(frozen=True)
class Examined:
    key: str
    events: int
    kept: list[dict[str, Any]] | None
    """The records to keep, if the object held events to remove; None if it is left as it is."""
    gone: bool = False

    @property
    def removed(self) -> int:
        return 0 if self.kept is None else self.events - len(self.kept)


def examine(key: str, kind: str, deletions: Deletions, needles: list[bytes], stores: PurgeStores) -> Examined:
    """One object read: what it holds, and what to keep if it holds deleted entities' events."""
    data = stores.archive.read_lines(key)
    if data is None:
        return Examined(key, 0, None, gone=True)
    events = data.count(b"\n")
    if not any(needle in data for needle in needles):
        return Examined(key, events, None)
    records = [json.loads(line) for line in data.splitlines()]
    kept = [
        r
        for r in records
        if not deleted(r if kind == "raw" else r.get("event"), deletions.users, deletions.anonymous)
    ]
    return Examined(key, len(records), kept if len(kept) < len(records) else None)


def purge_page(run: TaskRun, stores: PurgeStores) -> bool:
    """One page of keys of a day prefix (the module's docstring)."""
    prefix, start_after = run.spec["prefix"], run.spec["start_after"]
    kind = prefix.split("/", 1)[0]
    deletions = Deletions.of(run.job.params)
    needles = deletions.needles()
    cursor = run.task.cursor
    if cursor is None:
        keys, more = stores.archive.page(prefix, start_after)
        if not keys:
            run.save({"end": None, "done": None}, done=True)
            return True
        if more:  # the next page is planned before this one can be done (engine.py, step 3)
            end = keys[-1]
            run.plan(
                [(task_id_of("page", prefix, end), "purge-page", {"prefix": prefix, "start_after": end})]
            )
        run.save({"end": keys[-1], "done": start_after})
        cursor = run.task.cursor
    end, done = cursor["end"], cursor["done"]
    listed, _ = stores.archive.page(prefix, done)
    keys = [key for key in listed if key <= end]
    prior: dict[str, int] = dict(run.task.pending)
    for chunk in _chunks(keys, prior):
        if run.out_of_time():
            return False
        seen = each_at_once(
            [partial(examine, key, kind, deletions, needles, stores) for key in chunk], _readers
        )
        to_rewrite = [found for found in seen if found.kept is not None]
        if to_rewrite:
            # what a killed worker had begun stays pending with what this one begins
            run.save({"end": end, "done": done}, pending=prior | {f.key: f.removed for f in to_rewrite})
            each_at_once([partial(stores.archive.rewrite, f.key, f.kept or []) for f in to_rewrite], _readers)
        rewritten = {f.key for f in to_rewrite}
        # rewritten by a killed worker already: what it removed is counted as read and changed now
        before = {key: removed for key, removed in prior.items() if key in chunk and key not in rewritten}
        changed = {f.key: f.removed for f in to_rewrite} | before
        done = max(chunk)
        run.save(
            {"end": end, "done": done},
            {
                "objects_read": sum(1 for f in seen if not f.gone)
                + sum(1 for f in seen if f.gone and f.key in before),
                "events_read": sum(f.events for f in seen) + sum(before.values()),
                "objects_changed": len(changed),
                "events_changed": sum(changed.values()),
            },
        )
        prior = {}
    run.save({"end": end, "done": end}, done=True)
    return True


def _chunks(keys: list[str], prior: dict[str, int]) -> Iterator[list[str]]:
    """The keys in chunks of CHUNK_OBJECTS; the first also holds every key a killed worker had begun to
    rewrite (`prior`: some may be gone, deleted emptied, and so not listed)."""
    if prior:
        last = max(prior)
        first = sorted({*[key for key in keys if key <= last], *prior})
        keys = [key for key in keys if key > last]
        yield first
    for start in range(0, len(keys), CHUNK_OBJECTS):
        yield keys[start : start + CHUNK_OBJECTS]


class ParkedPages(Protocol):
    """store.parked: one parked item read, rewritten or removed."""

    def read(self, key: str) -> dict[str, Any] | None: ...
    def replace(self, key: str, document: dict[str, Any]) -> None: ...
    def remove(self, key: str) -> None: ...


def walk_parked(
    run: TaskRun,
    archive: ArchivePages,
    parked: ParkedPages,
    decide: Callable[[dict[str, Any]], ParkedChange | None],
) -> bool:
    """One queue's parked/ items (`run.spec["queue"]`), a page of keys at a time from the task's cursor
    (the last key done), CHUNK_OBJECTS read at once between saves: each item's change (`decide`: None if
    it is not the job's workspace's) saved as `pending` before it is made, as a purge page's rewrites,
    so a worker killed between a change and its save leaves the counts exact."""
    prefix = f"{PARKED_PREFIX}{run.spec['queue']}/"
    while True:
        done = run.task.cursor
        keys, more = archive.page(prefix, done, CHUNK_OBJECTS)
        prior: dict[str, int] = dict(run.task.pending)
        keys = sorted({*keys, *prior})
        if not keys:
            run.save(done, done=True)
            return True
        if run.out_of_time():
            return False
        documents = each_at_once([partial(parked.read, key) for key in keys], _readers)
        changes = {
            key: decide(document)
            for key, document in zip(keys, documents, strict=True)
            if document is not None
        }
        to_change = {key: change for key, change in changes.items() if change is not None and change.removed}
        if to_change:
            run.save(done, pending=prior | {key: change.removed for key, change in to_change.items()})
            each_at_once(
                [
                    partial(parked.remove, key)
                    if change.document is None
                    else partial(parked.replace, key, change.document)
                    for key, change in to_change.items()
                ],
                _readers,
            )
        # changed by a killed worker already: what it removed is counted now
        before = {key: removed for key, removed in prior.items() if key not in to_change}
        removed = {key: change.removed for key, change in to_change.items()} | before
        run.save(
            max(keys),
            {
                "objects_read": sum(1 for key, change in changes.items() if change is not None)
                + sum(1 for key in before if key not in changes),
                "objects_changed": len(removed),
                "events_changed": sum(removed.values()),
            },
        )
        if not more and not prior:
            run.save(run.task.cursor, done=True)
            return True


def purge_parked_task(run: TaskRun, stores: PurgeStores) -> bool:
    """parked/ of one queue: the deleted entities' parked events removed (privacy.purge.parked_change)."""
    deletions = Deletions.of(run.job.params)
    workspace = run.job.workspace
    return walk_parked(
        run,
        stores.archive,
        stores.parked,
        lambda document: parked_change(workspace, deletions.users, deletions.anonymous, document),
    )


def finish_purge(jobs: JobStore, job: JobRecordView, stores: PurgeStores) -> None:
    """Once every task is done: the job's entities off the purge list (unless listed again since), then
    the receipts of the requests it finished marked purged (privacy/receipts.mark_purged: erased ->
    purged only, so a finishing task delivered again changes nothing)."""
    if job.state == "running":
        if not all_tasks_done(job) or not jobs.set_state(job.job_id, ("running",), "finishing"):
            return
    elif job.state != "finishing":
        return
    listed = [PendingPurge(**listed) for listed in job.params["listed"]]
    stores.profiles.purged(job.workspace, listed)
    receipts = mark_purged(job.workspace, listed, stores.receipts)
    jobs.set_state(
        job.job_id,
        ("finishing",),
        "done",
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        receipts_purged=receipts,  # a finishing task delivered again finds them purged: counts 0 more
    )
