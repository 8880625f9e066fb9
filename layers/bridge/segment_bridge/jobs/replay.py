"""Replay as a job: a workspace's archived events (raw/) put back through the processor fleet under its
current mapping (docs/archive-jobs.md).

    plan_replay    the job: one `replay-days` task
    replay-days    the day prefixes from --since to --until holding objects: one `replay-page` task each
    replay-page    one page of keys of a day: plans the next page first, then reads its objects
                   READ_THREADS at a time and sends their events to the IngestQueue as replay messages
                   (Envelope.job set) in the workspace's own replay group (MessageGroupId
                   `<workspace>/replay`): SQS's fair queue serves live messages of the workspace (group
                   `<workspace>`) and of every other workspace without waiting behind the replay's backlog
    finish_replay  every page queued: "applying", until the processor has applied every message ("done")

The processor applies a replay message exactly once as it applies any message (idempotent writes, deletes
respected) without archiving it again, and adds what it changed to the job once per message
(processor/message.replay_message, a receipt item per message name): a page task killed after sending
and before its save sends its messages again, and the copies change nothing and count nothing.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from functools import lru_cache, partial
from typing import Any, Protocol

from segment_bridge.concurrency import each_at_once
from segment_bridge.envelope import pack, replay_group
from segment_bridge.jobs.engine import (
    JobRecordView,
    JobStore,
    TaskRun,
    all_tasks_done,
    new_job_id,
    task_id_of,
)

CHUNK_OBJECTS = 32
"""Objects read and queued between two saves."""
READ_THREADS = 16
NAME_ROOM = 16
"""Bytes a message keeps free for its part number (an object larger than one message is split)."""


class ArchivePages(Protocol):
    def days(self, kind: str, workspace_id: str) -> list[str]: ...
    def page(
        self, prefix: str, start_after: str | None, limit: int | None = None
    ) -> tuple[list[str], bool]: ...
    def read_lines(self, key: str) -> bytes | None: ...


class IngestQueue(Protocol):
    def enqueue(self, bodies: list[str], workspace_id: str) -> None: ...


class ReplayStores(Protocol):
    @property
    def archive(self) -> ArchivePages: ...
    @property
    def queues(self) -> IngestQueue: ...
    @property
    def jobs(self) -> JobStore: ...
    @property
    def settings(self) -> Any: ...


@lru_cache(maxsize=1)
def _readers() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="replay-read")


def plan_replay(
    workspace_id: str, since: date, until: date, stores: ReplayStores, *, mapping_version: int = 0
) -> JobRecordView:
    """The replay job; its messages are applied under `mapping_version` or a later one (the processor's
    containers read the mapping again if theirs is older)."""
    job_id = new_job_id("replay")
    params = {"since": since.isoformat(), "until": until.isoformat(), "mapping_version": mapping_version}
    job: JobRecordView = stores.jobs.create_job(job_id, "replay", workspace_id, params)
    stores.jobs.add_tasks(job_id, [(task_id_of("days"), "replay-days", {})])
    return job


def replay_days(run: TaskRun, stores: ReplayStores) -> bool:
    since, until = run.job.params["since"], run.job.params["until"]
    days = [
        prefix
        for prefix in stores.archive.days("raw", run.job.workspace)
        if since <= prefix.rstrip("/").rsplit("date=", 1)[-1] <= until
    ]
    run.plan(
        [(task_id_of("page", day, None), "replay-page", {"prefix": day, "start_after": None}) for day in days]
    )
    run.save(len(days), done=True)
    return True


def messages_of(
    key: str, data: bytes, workspace_id: str, job_id: str, max_bytes: int, mapping_version: int = 0
) -> list[str]:
    """One archived object's events as replay messages, named after the object (and part)."""
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    chunks = [line for line in data.splitlines() if line]
    received = datetime.now(UTC).isoformat(timespec="milliseconds")
    bodies = pack(
        chunks,
        workspace_id=workspace_id,
        request_id=name,
        received_at=received,
        max_bytes=max_bytes - NAME_ROOM,
        job=job_id,
        mapping_version=mapping_version,
    )
    if len(bodies) == 1:
        return bodies
    parts = []
    for n, body in enumerate(bodies):
        envelope = json.loads(body)
        envelope["requestId"] = f"{name}-{n}"
        parts.append(json.dumps(envelope, separators=(",", ":")))
    return parts


def replay_page(run: TaskRun, stores: ReplayStores) -> bool:
    prefix, start_after = run.spec["prefix"], run.spec["start_after"]
    workspace_id, job_id = run.job.workspace, run.job.job_id
    max_bytes = int(stores.settings.queue_message_bytes)
    version = int(run.job.params.get("mapping_version", 0))
    cursor = run.task.cursor
    if cursor is None:
        keys, more = stores.archive.page(prefix, start_after)
        if not keys:
            run.save({"end": None, "done": None}, done=True)
            return True
        if more:
            run.plan(
                [
                    (
                        task_id_of("page", prefix, keys[-1]),
                        "replay-page",
                        {"prefix": prefix, "start_after": keys[-1]},
                    )
                ]
            )
        run.save({"end": keys[-1], "done": start_after})
        cursor = run.task.cursor
    end, done = cursor["end"], cursor["done"]
    listed, _ = stores.archive.page(prefix, done)
    keys = [key for key in listed if key <= end]
    for start in range(0, len(keys), CHUNK_OBJECTS):
        if run.out_of_time():
            return False
        chunk = keys[start : start + CHUNK_OBJECTS]
        read = each_at_once([partial(stores.archive.read_lines, key) for key in chunk], _readers)
        bodies = [
            body
            for key, data in zip(chunk, read, strict=True)
            if data
            for body in messages_of(key, data, workspace_id, job_id, max_bytes, version)
        ]
        stores.queues.enqueue(bodies, replay_group(workspace_id))
        done = chunk[-1]
        run.save(
            {"end": end, "done": done},
            {
                "objects_read": sum(1 for data in read if data is not None),
                "events_read": sum(data.count(b"\n") for data in read if data),
                "messages_sent": len(bodies),
            },
        )
    run.save({"end": end, "done": end}, done=True)
    return True


def finish_replay(jobs: JobStore, job: JobRecordView, stores: ReplayStores) -> None:
    """Every page queued: the job waits for the processor ("applying"), which ends it ("done")."""
    if job.state == "running" and all_tasks_done(job):
        jobs.set_state(job.job_id, ("running",), "applying")
    jobs.complete_if_applied(job.job_id)
