"""Replay as a job: a workspace's archived events (raw/) put back through the processor fleet under its
current mapping (docs/archive-jobs.md).

    plan_replay    the job: one `replay-days` task
    replay-days    the day prefixes from --since to --until holding objects: the first day's first page
    replay-page    one page of keys of a day, then the next page's or day's task (one page task at a
                   time: `successor`): reads its objects READ_THREADS at a time and sends their events
                   to the IngestQueue as replay messages (Envelope.job set) in the workspace's own
                   replay group (MessageGroupId `<workspace>/replay`): SQS's fair queue serves live
                   messages of the workspace (group `<workspace>`) and of every other workspace without
                   waiting behind the replay's backlog
    finish_replay  every page queued: "applying", until the processor has applied every message ("done")

The window: at most `window_of(job)` of the job's messages queued and not yet applied (messages_sent -
messages_applied on its record). A page task reserves each chunk on the record before sending it
(store/windows.py: conditional on the window, one transaction with its cursor), and one that finds too
little room saves and waits with SQS's delay (engine.TaskWaits, `paced`): never in its invocation.

The processor applies a replay message exactly once as it applies any message (idempotent writes, deletes
respected) without archiving it again, and adds what it changed to the job once per message
(processor/message.replay_message, a receipt item per message name): a page task killed after sending
and before its save sends its messages again, and the copies change nothing and count nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from datetime import UTC, date, datetime
from functools import partial
from typing import Any, Protocol

from segment_bridge.concurrency import each_at_once, pool_of
from segment_bridge.envelope import pack, replay_group
from segment_bridge.jobs.engine import (
    MAX_DELAY_SECONDS,
    JobRecordView,
    JobStore,
    TaskRun,
    TaskTaken,
    TaskWaits,
    all_tasks_done,
    new_job_id,
    task_id_of,
)

CHUNK_OBJECTS = 32
"""Objects read and queued between two saves."""
READ_THREADS = 16
NAME_ROOM = 16
"""Bytes a message keeps free for its part number (an object larger than one message is split)."""
FIRST_WAIT_SECONDS = 1
"""A page task's first wait for room in its job's window (no drain rate measured yet)."""
WAIT_JITTER = 0.25
"""Up to this share added to each wait, so page tasks of one job do not all come back at once."""
WAIT_GROWTH = 1.5
WAIT_SHRINK = 0.7


class ArchivePages(Protocol):
    def days(self, kind: str, workspace_id: str) -> list[str]: ...
    def page(
        self, prefix: str, start_after: str | None, limit: int | None = None
    ) -> tuple[list[str], bool]: ...
    def read_lines(self, key: str) -> bytes | None: ...


class IngestQueue(Protocol):
    def enqueue(self, bodies: list[str], workspace_id: str) -> None: ...


class Reservation(Protocol):
    @property
    def task(self) -> Any: ...
    @property
    def taken(self) -> bool: ...


class JobWindows(Protocol):
    """store.windows."""

    def reserve(
        self, task: Any, *, cursor: object, counters: dict[str, int], most_sent: int
    ) -> Reservation: ...


class ReplayStores(Protocol):
    @property
    def archive(self) -> ArchivePages: ...
    @property
    def queues(self) -> IngestQueue: ...
    @property
    def jobs(self) -> JobStore: ...
    @property
    def windows(self) -> JobWindows: ...
    @property
    def settings(self) -> Any: ...


_readers = pool_of("replay-read", READ_THREADS)


def plan_replay(
    workspace_id: str,
    since: date,
    until: date,
    stores: ReplayStores,
    *,
    mapping_version: int = 0,
    window: int | None = None,
) -> JobRecordView:
    """The replay job; its messages are applied under `mapping_version` or a later one (the processor's
    containers read the mapping again if theirs is older); at most `window` of them queued and not yet
    applied at once (default: the stack's REPLAY_WINDOW_MESSAGES, read when its tasks run)."""
    if window is not None and window < 1:
        raise ValueError("a replay's window is at least one message")
    job_id = new_job_id("replay")
    params: dict[str, Any] = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "mapping_version": mapping_version,
    } | ({"window": window} if window is not None else {})
    job: JobRecordView = stores.jobs.create_job(job_id, "replay", workspace_id, params)
    stores.jobs.add_tasks(job_id, [(task_id_of("days"), "replay-days", {})])
    return job


def replay_days(run: TaskRun, stores: ReplayStores) -> bool:
    """The days from --since to --until holding objects: the first day's first page task, carrying the
    later days (each page plans the next one: `successor`)."""
    since, until = run.job.params["since"], run.job.params["until"]
    days = [
        prefix
        for prefix in stores.archive.days("raw", run.job.workspace)
        if since <= prefix.rstrip("/").rsplit("date=", 1)[-1] <= until
    ]
    if days:
        run.plan([first_page(days)])
    run.save(len(days), done=True)
    return True


def first_page(days: list[str]) -> tuple[str, str, dict[str, Any]]:
    return (
        task_id_of("page", days[0], None),
        "replay-page",
        {"prefix": days[0], "start_after": None, "later": days[1:]},
    )


def successor(spec: dict[str, Any], end: str | None, more: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """The task after a page's: the day's next page, else the next day's first, else none. One page task
    of a replay runs at a time: its window, not the reading, bounds its speed (one task reads hundreds of
    objects a second), and a full window keeps one task waiting, not one per page of the archive. (A
    spec without `later`, planned before the chain, had every day and page planned already.)"""
    later = list(spec.get("later", []))
    if more and end is not None:
        return [
            (
                task_id_of("page", spec["prefix"], end),
                "replay-page",
                {"prefix": spec["prefix"], "start_after": end, "later": later},
            )
        ]
    return [first_page(later)] if later else []


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


def window_of(job: JobRecordView, settings: Any) -> int:
    """The job's window: its own (`replay --window`), else the stack's (REPLAY_WINDOW_MESSAGES)."""
    return max(1, int(job.params.get("window") or settings.replay_window_messages))


def paced(look: dict[str, Any] | None, *, full: bool, empty: bool) -> dict[str, Any]:
    """A page task's pacing (`look`, kept in its cursor) after a look at its window: the delay it waits
    when the window is full, learnt from what it found when it came back: still full, the wait was too
    short (WAIT_GROWTH times longer next time); already empty, the processor had drained it before the
    task came back (WAIT_SHRINK times shorter); room but not empty, about right. FIRST_WAIT_SECONDS at
    first; within 1 s and SQS's 900 s. (A rate measured between looks would count the processor's idle
    time as work and lengthen every wait after a long one.)"""
    delay = float(look["delay"]) if look else float(FIRST_WAIT_SECONDS)
    if look and look.get("waited"):
        if full:
            delay *= WAIT_GROWTH
        elif empty:
            delay *= WAIT_SHRINK
    return {"delay": max(1.0, min(float(MAX_DELAY_SECONDS), delay)), "waited": full}


def wait_seconds(look: dict[str, Any], jitter: float) -> int:
    """The SQS delay of a wait: the look's delay plus `jitter` (0 to 1) of WAIT_JITTER, so tasks waiting
    together come back apart; 1 to 900 s."""
    return max(1, min(MAX_DELAY_SECONDS, math.ceil(float(look["delay"]) * (1 + WAIT_JITTER * jitter))))


def replay_page(run: TaskRun, stores: ReplayStores) -> bool:
    """The page's objects queued as replay messages, at most the job's window of them queued and not yet
    applied (the module's docstring): a chunk is reserved on the job record with its cursor (one
    transaction), then sent, then saved done; a task killed between finds its reservation in its cursor
    and sends the chunk (again: copies change and count nothing) without reserving it twice."""
    prefix, start_after = run.spec["prefix"], run.spec["start_after"]
    workspace_id, job_id = run.job.workspace, run.job.job_id
    max_bytes = int(stores.settings.queue_message_bytes)
    version = int(run.job.params.get("mapping_version", 0))
    window = window_of(run.job, stores.settings)
    if run.task.cursor is None:
        keys, more = stores.archive.page(prefix, start_after)
        if not keys:
            run.plan(successor(run.spec, None, False))
            run.save({"end": None, "done": None}, done=True)
            return True
        run.save({"end": keys[-1], "done": start_after, "more": more})
    listed: list[str] | None = None  # listed once there is something to send: a wait lists nothing
    ready: dict[str, list[str]] = {}  # the bodies of a chunk just reserved, by key

    def remaining(after: str | None, end: str) -> list[str]:
        nonlocal listed
        if listed is None:
            listed = [key for key in stores.archive.page(prefix, after)[0] if key <= end]
        return [key for key in listed if after is None or key > after]

    def bodies_of(keys: list[str]) -> tuple[list[bytes | None], dict[str, list[str]]]:
        read = each_at_once([partial(stores.archive.read_lines, key) for key in keys], _readers)
        return read, {
            key: messages_of(key, data, workspace_id, job_id, max_bytes, version) if data else []
            for key, data in zip(keys, read, strict=True)
        }

    while True:
        cursor = run.task.cursor
        end, done, look = cursor["end"], cursor["done"], cursor.get("look")
        if sending := cursor.get("sending"):  # reserved: sent (again, after a kill), then saved
            chunk = [key for key in remaining(done, end) if key <= sending]
            if any(key not in ready for key in chunk):
                ready = bodies_of(chunk)[1]
            stores.queues.enqueue([body for key in chunk for body in ready[key]], replay_group(workspace_id))
            run.save(cursor | {"done": sending, "sending": None})
            ready = {}
            continue
        if done == end or not (todo := remaining(done, end)):
            break
        if run.out_of_time():
            return False
        counters = stores.jobs.job(job_id).counters
        applied = counters["messages_applied"]
        queued = max(0, counters["messages_sent"] - applied)
        room = window - queued
        want = min(len(todo), CHUNK_OBJECTS, (window + 1) // 2)
        chosen: list[str] = []
        read: list[bytes | None] = []
        bodies: dict[str, list[str]] = {}
        messages = 0
        if room >= want or not queued:
            read, bodies = bodies_of(todo[: min(CHUNK_OBJECTS, max(1, room))])
            for key in bodies:
                if chosen and sum(len(bodies[k]) for k in [*chosen, key]) > room:
                    break
                chosen.append(key)
            messages = sum(len(bodies[key]) for key in chosen)
            if messages > room and queued:  # its first object alone fills more than the room left
                chosen = []
        look = paced(look, full=not chosen, empty=not queued)
        if not chosen:  # the window is full: back once enough of it is applied
            run.save(cursor | {"look": look})
            raise TaskWaits(wait_seconds(look, secrets.randbelow(1000) / 1000))
        figures = {
            "objects_read": sum(1 for data in read[: len(chosen)] if data is not None),
            "events_read": sum(data.count(b"\n") for data in read[: len(chosen)] if data),
            "messages_sent": messages,
        }
        reservation = stores.windows.reserve(
            run.task,
            cursor=cursor | {"sending": chosen[-1], "look": look},
            counters=figures,
            # an object of more messages than the window goes alone, and only into an empty window
            most_sent=max(applied + window - messages, -1 if queued else counters["messages_sent"]),
        )
        if reservation.taken:
            raise TaskTaken
        if reservation.task is not None:
            run.task = reservation.task
            ready = {key: bodies[key] for key in chosen}
        # refused: another page task of the job (planned before the chain) took the room first
    run.plan(successor(run.spec, end, bool(run.task.cursor.get("more"))))  # before done: engine.py's 4.
    run.save(run.task.cursor | {"done": end}, done=True)
    return True


def finish_replay(jobs: JobStore, job: JobRecordView, stores: ReplayStores) -> None:
    """Every page queued: the job waits for the processor ("applying"), which ends it ("done")."""
    if job.state == "running" and all_tasks_done(job):
        jobs.set_state(job.job_id, ("running",), "applying")
    jobs.complete_if_applied(job.job_id)
