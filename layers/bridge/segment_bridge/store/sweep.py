"""What an offboarding removes: every item of one workspace in every table, page by page, and its secrets
(jobs/offboard.py; docs/archive-jobs.md).

Which items are the workspace's (the key shapes of store/workspaces.py and its neighbours,
store/profiles.py, store/jobs.py, store/receipts.py and the outbox contract):
    ProfilesTable, EventsTable   pk begins with WS#<ws># (no key or index lists a workspace's
                                 partitions: an index would cost a write on every profile and history
                                 write, for a read made once per workspace's life)
    WorkspacesTable              pk = WS#<ws> (workspace, mapping, daily counts), KEY# items whose
                                 workspace_id is <ws>, JOBS items whose workspace is <ws> (their
                                 JOB#<id> tasks and receipts go with them)
    DeletionsTable               gsi1pk = WS#<ws> (privacy requests' receipts by workspace: a Query of the
                                 index, page by page; only the workspace's receipts are read)
    OutboxTable                  pk = WS#<ws> (a Query)
A table no key identifies by workspace is read by parallel Scan segments, each a task with its cursor
(LastEvaluatedKey): the whole table is read once (~0.5 read unit per 4 KB), its workspace's items deleted.
"""

from __future__ import annotations

import json
from typing import Any

from segment_bridge.errors import NotFound
from segment_bridge.settings import Settings
from segment_bridge.store.aws import Clients, Sleep, aws_errors, batch_write, item, plain

READ_FAILURE = "The workspace's items cannot be read right now."
WRITE_FAILURE = "The workspace's items could not be deleted."
SCAN_PAGE_ITEMS = 1000
"""Items a Scan page evaluates (at most 1 MB either way)."""


def _filter(table: str, settings: Settings) -> str:
    if table == settings.workspaces_table:
        return (
            "pk = :ws OR begins_with(pk, :prefix) OR workspace_id = :id OR (pk = :jobs AND workspace = :id)"
        )
    return "begins_with(pk, :prefix)"


class WorkspaceSweep:
    def __init__(self, settings: Settings, clients: Clients, sleep: Sleep) -> None:
        self.settings = settings
        self.clients = clients
        self.sleep = sleep

    def tables(self) -> dict[str, str]:
        """The tables read by Scan segments: name in template.yaml -> table name."""
        s = self.settings
        return {
            "ProfilesTable": s.profiles_table,
            "EventsTable": s.events_table,
            "WorkspacesTable": s.workspaces_table,
        }

    def _names(self) -> dict[str, str]:
        """Every table an offboarding deletes from (a job planned before the DeletionsTable was read
        through its index still has Scan segments of it: they run as planned)."""
        return self.tables() | {
            "DeletionsTable": self.settings.deletions_table,
            "OutboxTable": self.settings.outbox_table,
        }

    def scan_page(
        self, table: str, workspace_id: str, segment: int, segments: int, start: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a Scan segment: the workspace's items in it (plain), and the cursor after it (JSON
        of LastEvaluatedKey; None when the segment is read to its end)."""
        name = self._names()[table]
        values = {":prefix": f"WS#{workspace_id}#"}
        if name == self.settings.workspaces_table:
            values |= {":ws": f"WS#{workspace_id}", ":id": workspace_id, ":jobs": "JOBS"}
        arguments: dict[str, Any] = {
            "TableName": name,
            "Segment": segment,
            "TotalSegments": segments,
            "Limit": SCAN_PAGE_ITEMS,
            "FilterExpression": _filter(name, self.settings),
            "ExpressionAttributeValues": item(values),
        }
        if start is not None:
            arguments["ExclusiveStartKey"] = item(json.loads(start))
        with aws_errors(READ_FAILURE):
            found = self.clients.dynamodb.scan(**arguments)
        last = found.get("LastEvaluatedKey")
        return [plain(stored) for stored in found.get("Items", [])], json.dumps(plain(last)) if last else None

    def outbox_page(self, workspace_id: str, start: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the workspace's outbox items (keys only) and the cursor after it."""
        return self._query_page(
            {"TableName": self.settings.outbox_table, "KeyConditionExpression": "pk = :pk"},
            workspace_id,
            start,
        )

    def receipts_page(self, workspace_id: str, start: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the workspace's privacy receipts (their table keys, read through the by-workspace
        index gsi1) and the cursor after it."""
        return self._query_page(
            {
                "TableName": self.settings.deletions_table,
                "IndexName": "gsi1",
                "KeyConditionExpression": "gsi1pk = :pk",
            },
            workspace_id,
            start,
        )

    def _query_page(
        self, query: dict[str, Any], workspace_id: str, start: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        arguments: dict[str, Any] = query | {
            "ExpressionAttributeValues": item({":pk": f"WS#{workspace_id}"}),
            "ProjectionExpression": "pk, sk",
            "Limit": SCAN_PAGE_ITEMS,
        }
        if start is not None:
            arguments["ExclusiveStartKey"] = item(json.loads(start))
        with aws_errors(READ_FAILURE):
            found = self.clients.dynamodb.query(**arguments)
        last = found.get("LastEvaluatedKey")
        return [plain(stored) for stored in found.get("Items", [])], json.dumps(plain(last)) if last else None

    def delete(self, table: str, keys: list[dict[str, Any]]) -> None:
        """Delete items by key (pk, sk) from a table named as in template.yaml."""
        name = self._names()[table]
        requests = [
            (name, {"DeleteRequest": {"Key": item({"pk": key["pk"], "sk": key["sk"]})}}) for key in keys
        ]
        batch_write(self.clients.dynamodb, requests, self.sleep, failure=WRITE_FAILURE)

    def delete_secret(self, name: str) -> bool:
        """Delete a secret at once (no recovery window: nothing of the workspace is kept); False if there
        was none."""
        try:
            with aws_errors(WRITE_FAILURE, refused={"ResourceNotFoundException": NotFound(name)}):
                self.clients.secrets.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        except NotFound:
            return False
        return True
