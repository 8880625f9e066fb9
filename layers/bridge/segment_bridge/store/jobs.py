"""Archive jobs (purge, replay, offboarding): their records and tasks in the WorkspacesTable, and the
JobsQueue's task messages (docs/archive-jobs.md).

WorkspacesTable items
    pk=JOBS          sk=JOB#<job_id>   kind, workspace (an offboarding's: the SHA-256 of the id), created_at,
                                       state (running | applying | done | failed), params (gzip JSON),
                                       tasks_total, tasks_done, objects_read, objects_changed, events_read,
                                       events_changed, messages_sent, messages_applied, profiles_changed,
                                       history_written, items_deleted, receipts_purged,
                                       regulations_listed, deletes_queued, polls_refused, polls_failed
                                       (numbers, added to with UpdateItem ADD),
                                       updated_at, finished_at?, receipt? (JSON)
    pk=JOB#<job_id>  sk=TASK#<task_id> kind, spec (JSON), step, cursor?, pending? (JSON), state (open | done)
    pk=JOB#<job_id>  sk=APPLIED#<name> a replay message the processor applied (its figures counted once)
JobsQueue messages: {"job": <job_id>, "task": <task_id>}: a pointer; the cursor is the task item's.

Every progress write is one transaction: the task's cursor moves (conditional on the step read, so two
workers on one task never both count) together with the job's counters.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from segment_bridge.errors import ConditionFailed, Conflict, NotFound
from segment_bridge.settings import Settings
from segment_bridge.store.aws import Clients, aws_errors, item, now, plain, query
from segment_bridge.store.queues import sqs_batches

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

COUNTERS = (
    "tasks_total",
    "tasks_done",
    "objects_read",
    "objects_changed",
    "events_read",
    "events_changed",
    "messages_sent",
    "messages_applied",
    "profiles_changed",
    "history_written",
    "items_deleted",
    "receipts_purged",
    "regulations_listed",
    "deletes_queued",
    "polls_refused",
    "polls_failed",
)
READ_FAILURE = "Jobs cannot be read right now."
WRITE_FAILURE = "A job's progress could not be recorded."


@dataclass(frozen=True)
class TaskState:
    job_id: str
    task_id: str
    kind: str
    spec: dict[str, Any]
    step: int
    cursor: Any
    pending: dict[str, Any]
    done: bool


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    kind: str
    workspace: str
    created_at: str
    state: str
    params: dict[str, Any] = field(repr=False)
    counters: dict[str, int]
    updated_at: str = ""
    finished_at: str | None = None
    receipt: dict[str, Any] | None = None

    def figures(self) -> dict[str, Any]:
        """What the CLI shows (counts only: never ids or events)."""
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "workspace": self.workspace,
            "created_at": self.created_at,
            "state": self.state,
            **self.counters,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
        }


def _job_key(job_id: str) -> dict[str, Any]:
    return item({"pk": "JOBS", "sk": f"JOB#{job_id}"})


def _task_key(job_id: str, task_id: str) -> dict[str, Any]:
    return item({"pk": f"JOB#{job_id}", "sk": f"TASK#{task_id}"})


def _job(stored: dict[str, Any]) -> JobRecord:
    params = json.loads(gzip.decompress(bytes(stored["params"]))) if "params" in stored else {}
    return JobRecord(
        job_id=str(stored["sk"]).removeprefix("JOB#"),
        kind=str(stored["kind"]),
        workspace=str(stored["workspace"]),
        created_at=str(stored["created_at"]),
        state=str(stored["state"]),
        params=params,
        counters={name: int(stored.get(name, 0)) for name in COUNTERS},
        updated_at=str(stored.get("updated_at", "")),
        finished_at=str(stored["finished_at"]) if "finished_at" in stored else None,
        receipt=json.loads(stored["receipt"]) if "receipt" in stored else None,
    )


def _add(counters: Mapping[str, int]) -> tuple[str, dict[str, Any]]:
    """An UpdateExpression adding `counters` (and stamping updated_at) and its values."""
    names = [name for name in COUNTERS if counters.get(name)]
    values: dict[str, Any] = {f":{name}": counters[name] for name in names} | {":now": now()}
    expression = "SET updated_at = :now" + (
        " ADD " + ", ".join(f"{name} :{name}" for name in names) if names else ""
    )
    return expression, values


class JobRepository:
    def __init__(self, settings: Settings, clients: Clients) -> None:
        self.table = settings.workspaces_table
        self.queue_url = settings.jobs_queue_url
        self.clients = clients

    # --- jobs ------------------------------------------------------------------------------------

    def create_job(
        self, job_id: str, kind: str, workspace: str, params: dict[str, Any], *, state: str = "running"
    ) -> JobRecord:
        created_at = now()
        values: dict[str, Any] = {
            "pk": "JOBS",
            "sk": f"JOB#{job_id}",
            "kind": kind,
            "workspace": workspace,
            "created_at": created_at,
            "updated_at": created_at,
            "state": state,
            "params": gzip.compress(json.dumps(params, separators=(",", ":")).encode(), mtime=0),
        } | dict.fromkeys(COUNTERS, 0)
        refused = {"ConditionalCheckFailedException": Conflict(f"Job {job_id} exists already.")}
        with aws_errors("The job could not be created.", refused=refused):
            self.clients.dynamodb.put_item(
                TableName=self.table, Item=item(values), ConditionExpression="attribute_not_exists(pk)"
            )
        return _job(plain(item(values)))

    def job(self, job_id: str) -> JobRecord:
        with aws_errors(READ_FAILURE):
            stored = self.clients.dynamodb.get_item(
                TableName=self.table, Key=_job_key(job_id), ConsistentRead=True
            ).get("Item")
        if stored is None:
            raise NotFound(f"No job {job_id}.")
        return _job(plain(stored))

    def jobs(self, *, kind: str | None = None) -> Iterator[JobRecord]:
        """Every job, newest first (job ids begin with their creation time)."""
        with aws_errors(READ_FAILURE):
            pages = self.clients.dynamodb.get_paginator("query").paginate(
                TableName=self.table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": "JOBS"}},
                ScanIndexForward=False,
            )
            for page in pages:
                for stored in page.get("Items", []):
                    job = _job(plain(stored))
                    if kind is None or job.kind == kind:
                        yield job

    def set_state(self, job_id: str, before: tuple[str, ...], after: str, **values: Any) -> bool:
        """Move the job from one of `before` to `after` (and set `values`); False if it was not in them."""
        names = {f"#s{n}": name for n, name in enumerate(values)}
        sets = ", ".join(f"#s{n} = :s{n}" for n in range(len(values)))
        try:
            with aws_errors(WRITE_FAILURE):
                self.clients.dynamodb.update_item(
                    TableName=self.table,
                    Key=_job_key(job_id),
                    UpdateExpression="SET #state = :after, updated_at = :now" + (f", {sets}" if sets else ""),
                    ConditionExpression="#state IN (" + ", ".join(f":b{n}" for n in range(len(before))) + ")",
                    ExpressionAttributeNames={"#state": "state", **names},
                    ExpressionAttributeValues=item(
                        {":after": after, ":now": now()}
                        | {f":b{n}": state for n, state in enumerate(before)}
                        | {f":s{n}": value for n, value in enumerate(values.values())}
                    ),
                )
        except ConditionFailed:
            return False
        return True

    def delete_job(self, job_id: str) -> int:
        """Remove the job's record, tasks and receipts of applied messages; how many items."""
        return self.delete_tasks(job_id) + self._delete([{"pk": "JOBS", "sk": f"JOB#{job_id}"}])

    def delete_tasks(self, job_id: str) -> int:
        """Remove the job's tasks and receipts (an offboarding's hold cursors naming the workspace's
        keys); how many items."""
        found = query(
            self.clients.dynamodb, self.table, "pk = :pk", {":pk": f"JOB#{job_id}"}, failure=READ_FAILURE
        )
        return self._delete([{"pk": stored["pk"], "sk": stored["sk"]} for stored in found])

    def _delete(self, keys: list[dict[str, Any]]) -> int:
        with aws_errors(WRITE_FAILURE):
            for key in keys:
                self.clients.dynamodb.delete_item(TableName=self.table, Key=item(key))
        return len(keys)

    # --- tasks -----------------------------------------------------------------------------------

    def add_tasks(self, job_id: str, tasks: list[tuple[str, str, dict[str, Any]]], delay: int = 0) -> int:
        """Plan tasks (task_id, kind, spec) and queue them; a task planned already is not counted again
        (its message is sent again: a task that is done does nothing). How many were new."""
        new = 0
        for task_id, kind, spec in tasks:
            planned = {
                "pk": f"JOB#{job_id}",
                "sk": f"TASK#{task_id}",
                "kind": kind,
                "spec": json.dumps(spec, separators=(",", ":")),
                "step": 0,
                "state": "open",
            }
            try:
                self._counted(job_id, {"tasks_total": 1}, _put_new(self.table, planned))
                new += 1
            except ConditionFailed:
                pass  # planned already (a planner or a page task run again)
        self.send([json.dumps({"job": job_id, "task": task_id}) for task_id, _, _ in tasks], delay)
        return new

    def send(self, bodies: list[str], delay: int = 0) -> None:
        for batch in sqs_batches(bodies):
            with aws_errors("Tasks could not be queued; run the command again."):
                response = self.clients.sqs.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(n), "MessageBody": body, "DelaySeconds": delay}
                        for n, body in enumerate(batch)
                    ],
                )
            if response.get("Failed"):
                raise ConditionFailed("Tasks could not be queued; run the command again.")

    def task(self, job_id: str, task_id: str) -> TaskState | None:
        with aws_errors(READ_FAILURE):
            stored = self.clients.dynamodb.get_item(
                TableName=self.table, Key=_task_key(job_id, task_id), ConsistentRead=True
            ).get("Item")
        if stored is None:
            return None
        found = plain(stored)
        return TaskState(
            job_id=job_id,
            task_id=task_id,
            kind=str(found["kind"]),
            spec=json.loads(found["spec"]),
            step=int(found["step"]),
            cursor=json.loads(found["cursor"]) if "cursor" in found else None,
            pending=json.loads(found["pending"]) if "pending" in found else {},
            done=found.get("state") == "done",
        )

    def checkpoint(
        self,
        task: TaskState,
        *,
        cursor: Any,
        counters: Mapping[str, int],
        pending: dict[str, Any] | None = None,
        done: bool = False,
    ) -> TaskState | None:
        """Move the task on from the step it was read at, and add `counters` (+1 tasks_done when `done`)
        to the job, in one transaction; None if another worker moved it first."""
        counted = dict(counters) | ({"tasks_done": 1} if done else {})
        task_values: dict[str, Any] = {
            ":step": task.step,
            ":next": task.step + 1,
            ":cursor": json.dumps(cursor, separators=(",", ":")),
            ":state": "done" if done else "open",
        }
        task_expression = "SET step = :next, #cursor = :cursor, #state = :state"
        if pending:
            task_expression += ", pending = :pending"
            task_values[":pending"] = json.dumps(pending, separators=(",", ":"))
        else:
            task_expression += " REMOVE pending"
        moved: TransactWriteItemTypeDef = {
            "Update": {
                "TableName": self.table,
                "Key": _task_key(task.job_id, task.task_id),
                "UpdateExpression": task_expression,
                "ConditionExpression": "step = :step",
                "ExpressionAttributeNames": {"#cursor": "cursor", "#state": "state"},
                "ExpressionAttributeValues": item(task_values),
            }
        }
        try:
            self._counted(task.job_id, counted, moved)
        except ConditionFailed:
            return None
        return TaskState(
            task.job_id, task.task_id, task.kind, task.spec, task.step + 1, cursor, pending or {}, done
        )

    def count_applied(self, job_id: str, name: str, counters: Mapping[str, int]) -> bool:
        """A replay message applied: its figures added to the job once (a receipt item per message name,
        so a redelivered or duplicated message is not counted again). False if counted already."""
        receipt = {"pk": f"JOB#{job_id}", "sk": f"APPLIED#{name}"}
        try:
            self._counted(job_id, counters, _put_new(self.table, receipt))
        except ConditionFailed:
            return False
        return True

    def complete_if_applied(self, job_id: str) -> bool:
        """A replay job whose pages are all queued ("applying") ends once every message is applied."""
        try:
            with aws_errors(WRITE_FAILURE):
                self.clients.dynamodb.update_item(
                    TableName=self.table,
                    Key=_job_key(job_id),
                    UpdateExpression="SET #state = :done, finished_at = :now, updated_at = :now",
                    ConditionExpression="#state = :applying AND messages_applied >= messages_sent",
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues=item({":done": "done", ":applying": "applying", ":now": now()}),
                )
        except ConditionFailed:
            return False
        return True

    def _counted(self, job_id: str, counters: Mapping[str, int], action: TransactWriteItemTypeDef) -> None:
        """`action` (a task's or a receipt's write) and `counters` added to the job, in one transaction;
        ConditionFailed if the action's condition fails or the job is gone."""
        expression, values = _add(counters)
        with aws_errors(WRITE_FAILURE):
            self.clients.dynamodb.transact_write_items(
                TransactItems=[
                    action,
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _job_key(job_id),
                            "UpdateExpression": expression,
                            "ConditionExpression": "attribute_exists(pk)",
                            "ExpressionAttributeValues": item(values),
                        }
                    },
                ]
            )


def _put_new(table: str, values: dict[str, Any]) -> TransactWriteItemTypeDef:
    """A transaction's Put of an item that must not exist yet."""
    return {
        "Put": {"TableName": table, "Item": item(values), "ConditionExpression": "attribute_not_exists(pk)"}
    }
