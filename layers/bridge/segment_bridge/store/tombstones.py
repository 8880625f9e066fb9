"""What a privacy delete leaves (ProfilesTable): tombstones, the workspace's index of deleted ids, and the
archive purge's work list. Their states are tombstones.py's (the domain's).

    pk=WS#<ws>#<entity>   sk=DELETED    deleted_at (a privacy delete; events at or before it are not
                                        applied), and either status (ERASING | ERASED) and after
                                        (the last linked previousId erased, for resuming) for the deleted
                                        entity itself, or by (the deleted U#<userId> whose link brought
                                        this id in) for its linked ids
    pk=WS#<ws>#DELETED_IDS  sk=INDEX   epoch, ids (binary: the fingerprints of every key a delete
                                        tombstoned, deleted_ids.py), or full=true once it outgrew its item
                                        (no ids: every tombstone is read); written when the workspace is
                                        created, so a workspace without one is read as unknown too
    pk=WS#<ws>#PURGE      sk=<entity>   deleted_at, by, mark, marked_at: a deleted entity whose archived
                                        events (raw/, rejected/, unapplied/) the next purge removes;
                                        written again when a late event of it arrives or its receipt
                                        is marked erased (relist_for_purge), removed by the purge
"""

from __future__ import annotations

import uuid
from typing import Any

from segment_bridge.deleted_ids import DeletedIds, decoded
from segment_bridge.errors import ConditionFailed
from segment_bridge.store.aws import aws_errors, batch_get, batch_write, item, now, plain, query
from segment_bridge.store.items import READ_FAILURE, WRITE_FAILURE, Tables, checked, entity_key, entity_pk
from segment_bridge.tombstones import ERASED, ERASING, PendingPurge, Tombstone

RECORD_FAILURE = "The deletion could not be recorded."


def tombstone_key(workspace_id: str, key: str) -> dict[str, str]:
    return {"pk": entity_pk(workspace_id, key), "sk": "DELETED"}


def deleted_ids_key(workspace_id: str) -> dict[str, str]:
    return {"pk": f"WS#{workspace_id}#DELETED_IDS", "sk": "INDEX"}


def purge_key(workspace_id: str, key: str) -> dict[str, str]:
    return {"pk": f"WS#{workspace_id}#PURGE", "sk": key}


class TombstoneRepository(Tables):
    # --- tombstones ----------------------------------------------------------------------------------

    def put_tombstone(
        self, workspace_id: str, key: str, deleted_at: str, *, by: str | None = None
    ) -> Tombstone:
        """Record that the entity was deleted at `deleted_at` (an erase under way), unless a deletion at
        least as late is recorded; either way, the tombstone now stored. `by`: the deleted user whose
        link brought this id in (its erase is that user's)."""
        values: dict[str, Any] = tombstone_key(workspace_id, key) | {"deleted_at": deleted_at}
        values |= {"by": by} if by else {"status": ERASING}
        condition = "attribute_not_exists(pk) OR deleted_at < :at"
        if self._put_if(checked(values), condition, {":at": deleted_at}, RECORD_FAILURE):
            return Tombstone(deleted_at)
        return self._tombstone(workspace_id, key) or Tombstone(deleted_at)

    def _tombstone(self, workspace_id: str, key: str) -> Tombstone | None:
        with aws_errors(READ_FAILURE):
            found = self.clients.dynamodb.get_item(
                TableName=self.profiles_table, Key=item(tombstone_key(workspace_id, key)), ConsistentRead=True
            ).get("Item")
        if found is None:
            return None
        stored = plain(found)
        # Tombstones written before erases were resumable carry neither status nor by: their erase ran.
        erased = stored.get("status") == ERASED or ("status" not in stored and "by" not in stored)
        return Tombstone(str(stored["deleted_at"]), erased, stored.get("after"))

    def save_progress(self, workspace_id: str, key: str, tombstone: Tombstone) -> bool:
        """Record how far the erase of the deletion `tombstone` got (or that it is finished); False if a
        later deletion of the entity replaced it."""
        values = tombstone_key(workspace_id, key) | {
            "deleted_at": tombstone.deleted_at,
            "status": tombstone.status,
            "after": tombstone.after,
        }
        failure = "The deletion's progress could not be recorded."
        return self._put_if(checked(values), "deleted_at = :at", {":at": tombstone.deleted_at}, failure)

    def deletion_times(self, workspace_id: str, keys: list[str]) -> dict[str, str]:
        """Entity key -> its deletion time, for the entities deleted (their tombstones only)."""
        wanted = [tombstone_key(workspace_id, key) for key in keys]
        found = batch_get(
            self.clients.dynamodb,
            self.profiles_table,
            wanted,
            self.sleep,
            projection="pk, deleted_at",
            failure=READ_FAILURE,
        )
        return {entity_key(tombstone["pk"]): str(tombstone["deleted_at"]) for tombstone in found}

    # --- the index of deleted ids --------------------------------------------------------------------

    def deleted_ids(self, workspace_id: str) -> DeletedIds:
        """The workspace's index of tombstoned keys, strongly consistent (unknown if it has none)."""
        with aws_errors(READ_FAILURE):
            found = self.clients.dynamodb.get_item(
                TableName=self.profiles_table, Key=item(deleted_ids_key(workspace_id)), ConsistentRead=True
            ).get("Item")
        if found is None:
            return DeletedIds()
        stored = plain(found)
        if stored.get("full"):
            return decoded(int(stored["epoch"]), None)
        ids = stored.get("ids")  # absent while empty (DynamoDB's binary values are kept non-empty here)
        return decoded(int(stored["epoch"]), bytes(ids.value) if ids is not None else b"")

    def start_deleted_ids(self, workspace_id: str) -> None:
        """An empty index for a workspace that has no tombstones yet (a new one); one stored is kept."""
        try:
            with aws_errors("The workspace's deleted ids could not be recorded."):
                self.clients.dynamodb.put_item(
                    TableName=self.profiles_table,
                    Item=item(deleted_ids_key(workspace_id) | {"epoch": 0}),
                    ConditionExpression="attribute_not_exists(pk)",
                )
        except ConditionFailed:
            pass

    def put_deleted_ids(self, workspace_id: str, index: DeletedIds, previous_epoch: int) -> bool:
        """Store the index, only if the stored one is still at `previous_epoch`; False if another delete
        changed it first."""
        values = deleted_ids_key(workspace_id) | {
            "epoch": index.epoch,
            "ids": index.encoded() or None,
            "full": None if index.known else True,
        }
        return self._put_if(checked(values), "epoch = :epoch", {":epoch": previous_epoch}, RECORD_FAILURE)

    # --- the archive purge's work list ---------------------------------------------------------------

    def mark_for_purge(self, workspace_id: str, keys: list[str], deleted_at: str, by: str) -> None:
        """List deleted entities whose archived events the next purge removes (again, if listed before)."""
        mark = uuid.uuid4().hex
        requests = [
            (
                self.profiles_table,
                {
                    "PutRequest": {
                        "Item": item(
                            checked(
                                purge_key(workspace_id, key)
                                | {"deleted_at": deleted_at, "by": by, "mark": mark, "marked_at": now()}
                            )
                        )
                    }
                },
            )
            for key in keys
        ]
        batch_write(self.clients.dynamodb, requests, self.sleep, failure=WRITE_FAILURE)

    def relist_for_purge(self, workspace_id: str, key: str, deleted_at: str) -> None:
        """List a deleted entity for the next purge again, as of `deleted_at`, unless it is listed as of a
        later delete (never lowers what is listed): a receipt marked erased after a purge took the
        entity off the list is then purged by the next one (privacy/receipts.py)."""
        values = purge_key(workspace_id, key) | {
            "deleted_at": deleted_at,
            "by": key,
            "mark": uuid.uuid4().hex,
            "marked_at": now(),
        }
        condition = "attribute_not_exists(pk) OR deleted_at <= :at"
        self._put_if(checked(values), condition, {":at": deleted_at}, WRITE_FAILURE)

    def pending_purges(self, workspace_id: str) -> list[PendingPurge]:
        found = query(
            self.clients.dynamodb,
            self.profiles_table,
            "pk = :pk",
            {":pk": f"WS#{workspace_id}#PURGE"},
            failure=READ_FAILURE,
        )
        return [
            PendingPurge(
                str(p["sk"]), str(p["deleted_at"]), str(p["by"]), str(p["mark"]), str(p["marked_at"])
            )
            for p in found
        ]

    def purged(self, workspace_id: str, done: list[PendingPurge]) -> None:
        """Take purged entities off the list, unless listed again since (a late event of theirs)."""
        for pending in done:
            try:
                with aws_errors(WRITE_FAILURE):
                    self.clients.dynamodb.delete_item(
                        TableName=self.profiles_table,
                        Key=item(purge_key(workspace_id, pending.key)),
                        ConditionExpression="mark = :mark",
                        ExpressionAttributeValues=item({":mark": pending.mark}),
                    )
            except ConditionFailed:
                continue
