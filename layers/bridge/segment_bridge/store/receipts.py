"""Privacy requests' receipts (receipts.py): one kind of item, in the DeletionsTable.

DeletionsTable items
    pk=WS#<ws>#<entity>  sk=<deleted_at>   workspace_id, entity (U#<userId> | A#<anonymousId>), deleted_at,
                                          received_at, source, request_id, state (received | erased |
                                          purged), erased_at?, purged_at?, reapplied_at?, updated_at
                                          gsi1pk=WS#<ws>  gsi1sk=<received_at>#<fingerprint>   (by workspace,
                                          in the order received: `deletions list`, `deletions reapply`)
                                          open_pk=OPEN  open_sk=<received_at>#<ws>#<fingerprint>  while not
                                          purged (sparse index `open`: the deployment's oldest unfinished)
The table is apart from the ProfilesTable and EventsTable on purpose: restoring those to a point in time
(PITR) leaves the receipts as they are, and they say what to apply again (docs/privacy-receipts.md).
"""

from __future__ import annotations

from typing import Any

from segment_bridge.errors import ConditionFailed
from segment_bridge.receipts import ERASED, PURGED, RECEIVED, Receipt, Requested
from segment_bridge.settings import Settings
from segment_bridge.store.aws import Clients, aws_errors, item, now, plain, query

READ_FAILURE = "Privacy receipts cannot be read right now."
WRITE_FAILURE = "A privacy receipt could not be written."
OPEN = "OPEN"


def _receipt(stored: dict[str, Any]) -> Receipt:
    return Receipt(
        workspace_id=str(stored["workspace_id"]),
        key=str(stored["entity"]),
        deleted_at=str(stored["deleted_at"]),
        received_at=str(stored["received_at"]),
        source=str(stored["source"]),
        request_id=str(stored["request_id"]),
        state=str(stored["state"]),
        erased_at=stored.get("erased_at"),
        purged_at=stored.get("purged_at"),
        reapplied_at=stored.get("reapplied_at"),
    )


class ReceiptRepository:
    def __init__(self, settings: Settings, clients: Clients) -> None:
        self.table = settings.deletions_table
        self.clients = clients

    def _key(self, workspace_id: str, key: str, deleted_at: str) -> dict[str, Any]:
        return item({"pk": f"WS#{workspace_id}#{key}", "sk": deleted_at})

    def _advance(
        self,
        workspace_id: str,
        key: str,
        deleted_at: str,
        expression: str,
        condition: str,
        values: dict[str, Any],
    ) -> bool:
        """One UpdateItem of a receipt, only if `condition` holds of it; False if it did not."""
        try:
            with aws_errors(WRITE_FAILURE):
                self.clients.dynamodb.update_item(
                    TableName=self.table,
                    Key=self._key(workspace_id, key, deleted_at),
                    UpdateExpression=expression,
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues=item(values),
                )
        except ConditionFailed:
            return False
        return True

    # --- writes: each state once, forward only ---------------------------------------------------

    def received(self, workspace_id: str, requests: list[Requested]) -> None:
        """A receipt for each request, unless it has one (its first writer says where it came from)."""
        for request in requests:
            values = {
                "pk": f"WS#{workspace_id}#{request.key}",
                "sk": request.deleted_at,
                "workspace_id": workspace_id,
                "entity": request.key,
                "deleted_at": request.deleted_at,
                "received_at": request.received_at,
                "source": request.source,
                "request_id": request.request_id,
                "state": RECEIVED,
                "updated_at": now(),
                "gsi1pk": f"WS#{workspace_id}",
                "gsi1sk": f"{request.received_at}#{request.fingerprint}",
                "open_pk": OPEN,
                "open_sk": f"{request.received_at}#{workspace_id}#{request.fingerprint}",
            }
            try:
                with aws_errors(WRITE_FAILURE):
                    self.clients.dynamodb.put_item(
                        TableName=self.table,
                        Item=item(values),
                        ConditionExpression="attribute_not_exists(pk)",
                    )
            except ConditionFailed:
                continue

    def erased(self, workspace_id: str, requests: list[Requested]) -> None:
        """received -> erased, with the time (a receipt erased or purged already stays as it is)."""
        for request in requests:
            self._advance(
                workspace_id,
                request.key,
                request.deleted_at,
                "SET #state = :erased, erased_at = :now, updated_at = :now",
                "#state = :received",
                {":erased": ERASED, ":received": RECEIVED, ":now": now()},
            )

    def purged(self, workspace_id: str, through: dict[str, str]) -> int:
        """erased -> purged for each entity's receipts of deletes at or before `through[entity]` (what a
        purge of the archive covered); they leave the index of unfinished requests. Returns how many."""
        done = 0
        for key, deleted_at in through.items():
            for receipt in self.of_entity(workspace_id, key):
                if receipt.state != ERASED or receipt.deleted_at > deleted_at:
                    continue
                done += self._advance(
                    workspace_id,
                    key,
                    receipt.deleted_at,
                    "SET #state = :purged, purged_at = :now, updated_at = :now REMOVE open_pk, open_sk",
                    "#state = :erased",
                    {":purged": PURGED, ":erased": ERASED, ":now": now()},
                )
        return done

    def reapplied(self, workspace_id: str, receipts: list[Receipt]) -> None:
        """Record that the requests were queued again (`deletions reapply`): their state stays."""
        for receipt in receipts:
            self._advance(
                workspace_id,
                receipt.key,
                receipt.deleted_at,
                "SET reapplied_at = :now, updated_at = :now",
                "attribute_exists(pk) AND #state <> :none",
                {":now": now(), ":none": ""},
            )

    # --- reads -----------------------------------------------------------------------------------

    def of_entity(self, workspace_id: str, key: str) -> list[Receipt]:
        """An entity's receipts, oldest delete first."""
        found = query(
            self.clients.dynamodb,
            self.table,
            "pk = :pk",
            {":pk": f"WS#{workspace_id}#{key}"},
            failure=READ_FAILURE,
        )
        return [_receipt(stored) for stored in found]

    def of_workspace(self, workspace_id: str, since: str | None = None) -> list[Receipt]:
        """The workspace's receipts in the order received, those received at or after `since` (an ISO
        time) if given."""
        condition, values = "gsi1pk = :pk", {":pk": f"WS#{workspace_id}"}
        if since is not None:
            condition += " AND gsi1sk >= :since"
            values[":since"] = since
        found = query(
            self.clients.dynamodb, self.table, condition, values, index="gsi1", failure=READ_FAILURE
        )
        return [_receipt(stored) for stored in found]

    def newest_of_workspace(
        self, workspace_id: str, limit: int, *, after: dict[str, str] | None = None, pending: bool = False
    ) -> tuple[list[Receipt], dict[str, str] | None]:
        """Up to `limit` of the workspace's receipts, the newest received first, from `after` (the key a
        previous page returned); only those not yet purged if `pending`. The key to go on from (None
        when there are no more). Reads `limit` + 1 receipts (the one past the page says there is more),
        plus, with `pending`, the purged ones it passes over."""
        arguments: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :pk",
            "ExpressionAttributeValues": item({":pk": f"WS#{workspace_id}"}),
            "ScanIndexForward": False,
        }
        if pending:
            arguments["FilterExpression"] = "attribute_exists(open_pk)"
        start = None if after is None else item({"gsi1pk": f"WS#{workspace_id}", **after})
        found: list[dict[str, Any]] = []
        while len(found) <= limit:
            if start is not None:
                arguments["ExclusiveStartKey"] = start
            with aws_errors(READ_FAILURE):
                answer = self.clients.dynamodb.query(**arguments, Limit=limit + 1 - len(found))
            found += [plain(stored) for stored in answer.get("Items", [])]
            start = answer.get("LastEvaluatedKey")
            if start is None:
                break
        shown = found[:limit]
        more = len(found) > limit
        last = shown[-1] if shown else None
        cursor = None if not more or last is None else {k: str(last[k]) for k in ("gsi1sk", "pk", "sk")}
        return [_receipt(stored) for stored in shown], cursor

    def oldest_unfinished(self) -> Receipt | None:
        """The deployment's oldest receipt not yet purged (by the time it was received), if any."""
        with aws_errors(READ_FAILURE):
            found = self.clients.dynamodb.query(
                TableName=self.table,
                IndexName="open",
                KeyConditionExpression="open_pk = :open",
                ExpressionAttributeValues=item({":open": OPEN}),
                ScanIndexForward=True,
                Limit=1,
            ).get("Items", [])
        return _receipt(plain(found[0])) if found else None
