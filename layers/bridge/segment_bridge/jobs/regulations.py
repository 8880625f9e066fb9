"""Segment's regulations polled on the fleet (docs/privacy-receipts.md): the RegulationsFunction's hourly
run only lists the workspaces that poll and plans a `regulations` job of one `regulations-poll` task per
workspace; JobsFunction workers poll them in parallel, each within its invocation's time.

    plan_regulations   the job (workspace "*": the deployment's) and one task per polling workspace
    regulations-poll   one workspace's poll (privacy/regulations.poll_workspace): its cursor is the
                       workspace's REGULATIONS item's, which only moves once a listing is read to its end;
                       out of time before a request or a wait, the task is sent again and lists again
                       (what it queued has receipts: queued once). A token Segment refuses, or its API
                       down, ends the task (counted: polls_refused, polls_failed); the next hour polls again
    finish_regulations every task done: the tasks (they name workspaces) deleted, the record kept with the
                       counts until the next hourly run reads it (settle_regulations)
    settle_regulations the hourly run's first step: the finished jobs' polls_refused summed (the run then
                       fails, so the RegulationsErrorsAlarm tells an operator) and the finished jobs deleted

Why a job on the JobsQueue rather than a loop in one invocation: one slow or rate-limited Segment answer
took the whole run past its timeout and the workspaces after it were never polled; as tasks, each
workspace has its own invocation (JobsConcurrency of them at once), its own retries and its own time.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Protocol

from segment_bridge.jobs.engine import (
    JobRecordView,
    JobStore,
    TaskRun,
    all_tasks_done,
    new_job_id,
    task_id_of,
)
from segment_bridge.privacy.regulations import (
    Polled,
    PollOutOfTime,
    PublicApiUnavailable,
    Queue,
    ReceiptReads,
    RegulationSettings,
    TokenRefused,
    poll_workspace,
)
from segment_bridge.settings import Settings

_logger = logging.getLogger(__name__)
KIND = "regulations"
DEPLOYMENT = "*"
"""The job's workspace: every polling workspace of the deployment (each task names its own)."""


class RegulationStores(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def regulations(self) -> RegulationSettings: ...
    @property
    def queues(self) -> Queue: ...
    @property
    def receipts(self) -> ReceiptReads: ...
    def workspace_open(self, workspace_id: str) -> bool: ...


class RegulationJobs(JobStore, Protocol):
    def jobs(self, *, kind: str | None = None) -> Any: ...
    def delete_job(self, job_id: str) -> int: ...
    def delete_tasks(self, job_id: str) -> int: ...


def plan_regulations(workspaces: list[str], jobs: JobStore) -> JobRecordView | None:
    """A job of one poll task per workspace, its messages on the JobsQueue; None if none polls."""
    if not workspaces:
        return None
    job: JobRecordView = jobs.create_job(new_job_id(KIND), KIND, DEPLOYMENT, {})
    tasks = [(task_id_of("poll", ws), "regulations-poll", {"workspace": ws}) for ws in workspaces]
    jobs.add_tasks(job.job_id, tasks)
    return job


def regulations_poll(run: TaskRun, stores: RegulationStores) -> bool:
    workspace_id = str(run.spec["workspace"])
    if run.out_of_time():
        return False
    if not stores.workspace_open(workspace_id):  # offboarding: nothing more is queued for it
        run.save(None, done=True)
        return True
    done = Polled()
    try:
        polled = poll_workspace(
            workspace_id,
            polls=stores.regulations,
            queue=stores.queues,
            receipts=stores.receipts,
            policy=stores.settings.segment_endpoints,
            max_bytes=stores.settings.queue_message_bytes,
            out_of_time=run.out_of_time,
            done=done,
        )
    except PollOutOfTime:  # what it queued is counted; the task lists again from the cursor
        run.save(None, _figures(done))
        return False
    except TokenRefused as error:
        _logger.warning("regulations not polled", extra={"workspace_id": workspace_id, "code": error.code})
        run.save(None, {"polls_refused": 1}, done=True)
        return True
    except PublicApiUnavailable as error:  # Segment's API down or still rate-limiting: the next hour again
        _logger.warning("regulations not polled", extra={"workspace_id": workspace_id, "code": error.code})
        run.save(None, {"polls_failed": 1}, done=True)
        return True
    run.save(None, {} if polled is None else _figures(done), done=True)
    return True


def _figures(done: Polled) -> dict[str, int]:
    return {"regulations_listed": done.listed, "deletes_queued": done.deletes_queued}


def finish_regulations(jobs: JobStore, job: JobRecordView, stores: Any) -> None:
    """Every task done: the tasks deleted, the record kept (its counts) until settle_regulations."""
    if job.state == "running":
        if not all_tasks_done(job) or not jobs.set_state(job.job_id, ("running",), "finishing"):
            return
    elif job.state != "finishing":
        return
    stores.jobs.delete_tasks(job.job_id)
    jobs.set_state(
        job.job_id,
        ("finishing",),
        "done",
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def settle_regulations(jobs: RegulationJobs) -> dict[str, int]:
    """The finished regulations jobs' counts summed and the jobs deleted (those still running are left
    to go on); what they found."""
    found = {"jobs_finished": 0, "jobs_running": 0, "polls_refused": 0, "polls_failed": 0}
    for job in list(jobs.jobs(kind=KIND)):
        if job.state != "done":
            found["jobs_running"] += 1
            continue
        found["jobs_finished"] += 1
        found["polls_refused"] += job.counters.get("polls_refused", 0)
        found["polls_failed"] += job.counters.get("polls_failed", 0)
        jobs.delete_job(job.job_id)
    return found
