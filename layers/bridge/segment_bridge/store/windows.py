"""A replay job's window: its messages reserved on the job record, never more than a bound queued and not
yet applied (jobs/replay.py, docs/archive-jobs.md).

The items are store/jobs.py's (pk=JOBS sk=JOB#<job_id>: the job's counters; pk=JOB#<job_id>
sk=TASK#<task_id>: a task's step and cursor); this module adds one write to them:

    reserve  in one transaction, the task's cursor moves on (conditional on the step read, as every
             save) and the job's counters are added to, `messages_sent` only if it is at most
             `most_sent` before (so it stays within the bound after): two page tasks reserving at once
             never both take the last of the window, and a task killed after its reservation finds it
             in its cursor (nothing reserved twice, nothing lost)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from segment_bridge.errors import ConditionFailed
from segment_bridge.settings import Settings
from segment_bridge.store.aws import Clients, aws_errors, item, now
from segment_bridge.store.jobs import COUNTERS, TaskState

WRITE_FAILURE = "A job's progress could not be recorded."


@dataclass(frozen=True)
class Reservation:
    task: TaskState | None
    """The task moved on with its new cursor; None if the reservation was refused."""
    taken: bool = False
    """Refused because another worker moved the task first (else: the window had no room left)."""


class JobWindows:
    def __init__(self, settings: Settings, clients: Clients) -> None:
        self.table = settings.workspaces_table
        self.clients = clients

    def reserve(
        self, task: TaskState, *, cursor: object, counters: Mapping[str, int], most_sent: int
    ) -> Reservation:
        """Move `task` on to `cursor` and add `counters` to its job (`messages_sent` among them), only if
        the job's messages_sent is at most `most_sent` and the task is still at the step it was read at."""
        names = [name for name in COUNTERS if counters.get(name)]
        values = {f":{name}": counters[name] for name in names}
        job_update = {
            "TableName": self.table,
            "Key": item({"pk": "JOBS", "sk": f"JOB#{task.job_id}"}),
            "UpdateExpression": "SET updated_at = :now"
            + (" ADD " + ", ".join(f"{name} :{name}" for name in names) if names else ""),
            "ConditionExpression": "attribute_exists(pk) AND messages_sent <= :most",
            "ExpressionAttributeValues": item(values | {":now": now(), ":most": most_sent}),
        }
        task_key = item({"pk": f"JOB#{task.job_id}", "sk": f"TASK#{task.task_id}"})
        task_update = {
            "TableName": self.table,
            "Key": task_key,
            "UpdateExpression": "SET step = :next, #cursor = :cursor REMOVE pending",
            "ConditionExpression": "step = :step",
            "ExpressionAttributeNames": {"#cursor": "cursor"},
            "ExpressionAttributeValues": item(
                {
                    ":step": task.step,
                    ":next": task.step + 1,
                    ":cursor": json.dumps(cursor, separators=(",", ":")),
                }
            ),
        }
        try:
            with aws_errors(WRITE_FAILURE):
                self.clients.dynamodb.transact_write_items(
                    TransactItems=[{"Update": task_update}, {"Update": job_update}]  # type: ignore[typeddict-item]
                )
        except ConditionFailed:
            with aws_errors(WRITE_FAILURE):
                stored = self.clients.dynamodb.get_item(
                    TableName=self.table, Key=task_key, ConsistentRead=True, ProjectionExpression="step"
                ).get("Item")
            return Reservation(None, taken=stored is None or int(stored["step"]["N"]) != task.step)
        return Reservation(
            TaskState(task.job_id, task.task_id, task.kind, task.spec, task.step + 1, cursor, {}, False)
        )
