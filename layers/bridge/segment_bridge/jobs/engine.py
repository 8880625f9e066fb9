"""Archive jobs on the fleet: a job is planned as tasks of bounded size, each run by the JobsFunction from
its cursor (docs/archive-jobs.md).

    plan     a job record and its first tasks (purge.py, replay.py, offboard.py plan their own)
    run_task one task message: the task's kind from its cursor, within the invocation's time
    TaskRun  the unit of work: one task in one invocation, its progress saved with the job's counters

How a task loses nothing and repeats nothing harmful:
1. the message is a pointer ({"job", "task"}); the cursor lives in the task item, so any copy of the
   message (a redelivery after a kill, a duplicate) resumes from the last saved step;
2. every save moves the task one step on, conditional on the step it read, in one transaction with the
   job's counters: two workers on one task never both count, and what a killed worker did after its
   last save is done again (every kind's work is idempotent: a rewrite of an object without the deleted
   events finds nothing to remove, a replayed message is applied once by the processor's protocol);
3. a task with too little time left saves, sends its message again and stops (never failed: the
   JobsDLQ is for AWS failing); a task is done when it saves `done`, and a page task plans the next
   page's task before it saves `done`, so tasks_done == tasks_total only once every page is done;
4. the message that finds its task done asks the job's kind to finish (idempotent too), so a worker
   killed between the last save and the end is finished by the redelivery;
5. a task that must wait for something outside it (a replay's window of queued messages, replay.py)
   saves, raises TaskWaits and the message is sent again with SQS's own delay (at most 900 s): nothing
   spins or sleeps in an invocation, and the wait spends none of the message's maxReceiveCount.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from segment_bridge.errors import NotFound, ServiceUnavailable

OutOfTime = Callable[[], bool]
TASK_RESERVE_SECONDS = 30
MAX_DELAY_SECONDS = 900
"""SQS's longest DelaySeconds: the longest a waiting task is away."""
"""A task stops starting new work with this much of its invocation left: one chunk of objects (read,
rewritten, saved) takes well under it at S3's latencies."""
SAVE_ATTEMPTS = 10
"""Saves of one step tried before the message is given back to SQS: a save cancelled by another task's
save of the same job record in flight (DynamoDB's TransactionConflict) is tried again, jittered. At
JobsConcurrency 20 a purge saves ~80 transactions a second to its job record (bench_archive_fleet.py:
~4 per worker); if half met one in flight, ten tries all fail once in ~1,000 saves."""
SAVE_BACKOFF_SECONDS = 0.02
"""The first retry's jitter bound, doubled at each (the tenth waits at most ~10 s)."""


class JobRecordView(Protocol):
    @property
    def job_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def workspace(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def counters(self) -> dict[str, int]: ...


class TaskView(Protocol):
    @property
    def job_id(self) -> str: ...
    @property
    def task_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def spec(self) -> dict[str, Any]: ...
    @property
    def cursor(self) -> Any: ...
    @property
    def pending(self) -> dict[str, Any]: ...
    @property
    def done(self) -> bool: ...
    @property
    def step(self) -> int: ...


class JobStore(Protocol):
    """store.jobs."""

    def create_job(
        self, job_id: str, kind: str, workspace: str, params: dict[str, Any], *, state: str = "running"
    ) -> Any: ...
    def job(self, job_id: str) -> Any: ...
    def task(self, job_id: str, task_id: str) -> Any: ...
    def add_tasks(self, job_id: str, tasks: list[tuple[str, str, dict[str, Any]]], delay: int = 0) -> int: ...
    def send(self, bodies: list[str], delay: int = 0) -> None: ...
    def checkpoint(
        self,
        task: Any,
        *,
        cursor: Any,
        counters: Mapping[str, int],
        pending: dict[str, Any] | None = None,
        done: bool = False,
    ) -> Any: ...
    def set_state(self, job_id: str, before: tuple[str, ...], after: str, **values: Any) -> bool: ...
    def complete_if_applied(self, job_id: str) -> bool: ...


class TaskTaken(Exception):  # a state, not a failure
    """Another worker saved this task's progress first: this one stops (its work is theirs)."""


class TaskWaits(Exception):  # a state, not a failure
    """The task saved its cursor and cannot go on yet: its message comes back after `seconds`."""

    def __init__(self, seconds: int) -> None:
        super().__init__(f"back in {seconds} s")
        self.seconds = max(0, min(MAX_DELAY_SECONDS, int(seconds)))


def new_job_id(kind: str) -> str:
    """Sortable by creation time (the CLI lists newest first), unique."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{kind}-{secrets.token_hex(4)}"


def task_id_of(*parts: str | None) -> str:
    """A task's id, the same whenever it is planned from the same parts (a re-plan adds no task)."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


@dataclass
class TaskRun:
    """One task in one invocation. `save` moves its cursor and adds to the job's counters (one
    transaction); `plan` adds tasks to the job."""

    jobs: JobStore
    job: JobRecordView
    task: TaskView
    out_of_time: OutOfTime

    @property
    def spec(self) -> dict[str, Any]:
        return self.task.spec

    def save(
        self,
        cursor: Any,
        counters: Mapping[str, int] | None = None,
        *,
        pending: dict[str, Any] | None = None,
        done: bool = False,
    ) -> None:
        for attempt in range(SAVE_ATTEMPTS):
            moved = self.jobs.checkpoint(
                self.task, cursor=cursor, counters=counters or {}, pending=pending, done=done
            )
            if moved is not None:
                self.task = moved
                return
            # Cancelled: another worker moved the task on (it is theirs), or a transaction of another
            # task on the same job record was in flight (TransactionConflict: every worker of a job
            # saves to its record), which leaves the task at the step read: try again.
            now = self.jobs.task(self.task.job_id, self.task.task_id)
            if now is None or now.step != self.task.step:
                raise TaskTaken
            time.sleep(random.uniform(0, SAVE_BACKOFF_SECONDS * 2**attempt))  # noqa: S311  # nosec B311
        raise ServiceUnavailable("A job's progress could not be saved; the task is tried again.")

    def plan(self, tasks: list[tuple[str, str, dict[str, Any]]]) -> None:
        plan_tasks(self.jobs, self.job.job_id, tasks)


def plan_tasks(jobs: JobStore, job_id: str, tasks: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Add tasks to a job, and make sure each was: store.jobs.add_tasks takes a cancelled transaction
    for a task planned already, and one cancelled by another save of the job record in flight
    (TransactionConflict) leaves the task unplanned; those are planned again, jittered."""
    for attempt in range(SAVE_ATTEMPTS):
        jobs.add_tasks(job_id, tasks)
        tasks = [task for task in tasks if jobs.task(job_id, task[0]) is None]
        if not tasks:
            return
        time.sleep(random.uniform(0, SAVE_BACKOFF_SECONDS * 2**attempt))  # noqa: S311  # nosec B311
    raise ServiceUnavailable("A job's tasks could not be planned; the task is tried again.")


Kind = Callable[[TaskRun, Any], bool]
"""A task kind: runs the task from its cursor; True once it saved `done`, False if out of time; raises
TaskWaits (its cursor saved) to be run again later."""
Finish = Callable[[JobStore, JobRecordView, Any], None]
"""A job kind's end: called by every message that finds its task done (idempotent)."""


@dataclass(frozen=True)
class Outcome:
    """What one task message did (for logs: no ids of people, no events)."""

    status: str
    """"done", "continues" (out of time, sent again), "waits" (sent again with a delay: TaskWaits),
    "taken" (another worker has it), "over" (the job ended or is gone), "unknown" (no such task)."""
    kind: str = ""


def run_task(
    body: str,
    jobs: JobStore,
    stores: Any,
    out_of_time: OutOfTime,
    kinds: Mapping[str, Kind],
    finishers: Mapping[str, Finish],
) -> Outcome:
    """One JobsQueue message (the module's docstring). Raises on AWS failures: the message is retried
    and, after maxReceiveCount, kept in the JobsDLQ (the job waits: re-drive it to go on)."""
    pointer = json.loads(body)
    try:
        job = jobs.job(str(pointer["job"]))
    except NotFound:
        return Outcome("over")
    if job.state in ("done", "failed"):
        return Outcome("over", job.kind)
    task = jobs.task(job.job_id, str(pointer["task"]))
    if task is None:
        if job.state == "finishing":  # a job whose end removes its tasks, killed while ending
            finishers[job.kind](jobs, job, stores)
        return Outcome("unknown", job.kind)
    if not task.done:
        run = TaskRun(jobs, job, task, out_of_time)
        try:
            finished = kinds[task.kind](run, stores)
        except TaskTaken:
            return Outcome("taken", task.kind)
        except TaskWaits as waits:
            jobs.send([body], waits.seconds)
            return Outcome("waits", task.kind)
        if not finished:
            jobs.send([body])
            return Outcome("continues", task.kind)
    finishers[job.kind](jobs, jobs.job(job.job_id), stores)
    return Outcome("done", task.kind)


def all_tasks_done(job: JobRecordView) -> bool:
    return job.counters["tasks_done"] >= job.counters["tasks_total"] > 0
