"""Event history (EventsTable) and group memberships (ProfilesTable): what the processor records after
its profile writes (step 5) and a delete erases.

EventsTable
    pk=WS#<ws>#<entity>   sk=MSG#<messageId>  name, type, properties, timestamp, received_at,
                                        mapping_version, expires_at (TTL), time_key
                                        (`<timestamp>#<messageId>`: the `by_time` index's sort key,
                                        KEYS and name projected: an entity's history in time order)
    pk=WS#<ws>#<entity>   sk=COUNTED#<messageId>  name, timestamp, expires_at (TTL: receipt +
                                        ArchiveRetentionDays + 30 days): the event was counted; it
                                        outlives the history item (docs/exactness.md)
ProfilesTable
    pk=WS#<ws>#G#<gid>    sk=MEMBER#<entity>   gsi1pk=WS#<ws>#<entity>  gsi1sk=GROUP#<gid>  mapping_version
"""

from __future__ import annotations

from typing import Any

from segment_bridge.planning import HistoryRecord
from segment_bridge.profiles import Counted, Seen
from segment_bridge.store.aws import batch_get, batch_write, item, query
from segment_bridge.store.items import READ_FAILURE, WRITE_FAILURE, Tables, checked, entity_key, entity_pk
from segment_bridge.timestamps import time_key
from segment_bridge.values import to_dynamo, to_json


def history_key(workspace_id: str, key: str, message_id: str) -> dict[str, str]:
    return {"pk": entity_pk(workspace_id, key), "sk": f"MSG#{message_id}"}


HISTORY_BY_TIME = "by_time"
"""The EventsTable's index of history items by entity, in time order (template.yaml)."""


def history_item(workspace_id: str, key: str, record: HistoryRecord, mapping_version: int) -> dict[str, Any]:
    return history_key(workspace_id, key, record.message_id) | {
        "time_key": time_key(record.timestamp, record.message_id),
        "name": record.name,
        "type": record.type,
        "properties": record.properties,
        "timestamp": record.timestamp,
        "received_at": record.received_at,
        "mapping_version": mapping_version,
        "expires_at": record.expires_at,
    }


def counted_item(workspace_id: str, key: str, counted: Counted) -> dict[str, Any]:
    return {
        "pk": entity_pk(workspace_id, key),
        "sk": f"COUNTED#{counted.message_id}",
        "name": counted.name,
        "timestamp": counted.timestamp,
        "expires_at": counted.counted_until,
    }


def membership_key(workspace_id: str, group_id: str, key: str) -> dict[str, str]:
    return {"pk": entity_pk(workspace_id, f"G#{group_id}"), "sk": f"MEMBER#{key}"}


def membership_item(workspace_id: str, group_id: str, key: str, mapping_version: int) -> dict[str, Any]:
    return membership_key(workspace_id, group_id, key) | {
        "gsi1pk": entity_pk(workspace_id, key),
        "gsi1sk": f"GROUP#{group_id}",
        "mapping_version": mapping_version,
    }


class HistoryRepository(Tables):
    def existing_history(self, workspace_id: str, wanted: dict[str, set[str]]) -> dict[str, set[str]]:
        """For each entity key, which of the given messageIds were applied already (a history item or a
        counted marker)."""
        return {key: seen.counted for key, seen in self.seen_history(workspace_id, wanted).items()}

    def seen_history(self, workspace_id: str, wanted: dict[str, set[str]]) -> dict[str, Seen]:
        """For each entity key, which of the given messageIds have a history item and which a counted
        marker (keys only, in as few BatchGetItem calls as fit)."""
        keys = [
            {"pk": entity_pk(workspace_id, key), "sk": f"{prefix}#{mid}"}
            for key, mids in wanted.items()
            for mid in mids
            for prefix in ("MSG", "COUNTED")
        ]
        found: dict[str, Seen] = {}
        for history in batch_get(
            self.clients.dynamodb,
            self.events_table,
            keys,
            self.sleep,
            projection="pk, sk",
            failure=READ_FAILURE,
        ):
            seen = found.setdefault(entity_key(history["pk"]), Seen())
            prefix, mid = str(history["sk"]).split("#", 1)
            (seen.items if prefix == "MSG" else seen.markers).add(mid)
        return found

    def read_history(self, workspace_id: str, kind: str, entity_id: str) -> list[dict[str, Any]]:
        """The entity's event history, oldest first (by timestamp, then messageId)."""
        found = self._history(workspace_id, f"{kind}#{entity_id}", "MSG#")
        return sorted((to_json(history) for history in found), key=lambda h: (h["timestamp"], h["sk"]))

    def history_index(self, workspace_id: str, key: str) -> list[tuple[str, str, str]]:
        """(sort key, name, timestamp) of each of the entity's history items (`MSG#<messageId>`) and
        counted markers (`COUNTED#<messageId>`)."""
        found = self._history(workspace_id, key, "")
        return [(str(h["sk"]), str(h.get("name", "")), str(h.get("timestamp", ""))) for h in found]

    def _history(self, workspace_id: str, key: str, prefix: str) -> list[dict[str, Any]]:
        """The entity's items in the EventsTable whose sort key starts with `prefix` (all of them: "")."""
        condition, values = "pk = :pk", {":pk": entity_pk(workspace_id, key)}
        if prefix:
            condition, values = f"{condition} AND begins_with(sk, :prefix)", values | {":prefix": prefix}
        return query(self.clients.dynamodb, self.events_table, condition, values, failure=READ_FAILURE)

    def group_members(self, workspace_id: str, group_id: str) -> list[str]:
        found = query(
            self.clients.dynamodb,
            self.profiles_table,
            "pk = :pk AND begins_with(sk, :prefix)",
            {":pk": entity_pk(workspace_id, f"G#{group_id}"), ":prefix": "MEMBER#"},
            failure=READ_FAILURE,
        )
        return sorted(member["sk"].removeprefix("MEMBER#") for member in found)

    def memberships(self, workspace_id: str, key: str) -> list[str]:
        """The groups the entity is a member of (its MEMBER# items)."""
        return self._index(workspace_id, key, "GROUP#")

    def record(
        self,
        workspace_id: str,
        history: dict[str, list[HistoryRecord]],
        memberships: dict[str, list[str]],
        mapping_version: int,
        counted: dict[str, list[Counted]] | None = None,
    ) -> None:
        """Write history items (entity key -> records), group memberships (entity key -> group ids) and
        counted markers (entity key -> the records counted), as few BatchWriteItem calls as fit.
        Idempotent: the same records write the same items."""
        puts = [
            (self.events_table, history_item(workspace_id, key, record, mapping_version))
            for key, records in history.items()
            for record in records
        ]
        puts += [
            (self.events_table, counted_item(workspace_id, key, marker))
            for key, markers in (counted or {}).items()
            for marker in markers
        ]
        puts += [
            (self.profiles_table, membership_item(workspace_id, group_id, key, mapping_version))
            for key, groups in memberships.items()
            for group_id in groups
        ]
        requests = [
            (table, {"PutRequest": {"Item": item(to_dynamo(checked(values)))}}) for table, values in puts
        ]
        batch_write(self.clients.dynamodb, requests, self.sleep, failure=WRITE_FAILURE)

    def remove(self, workspace_id: str, key: str, history: list[str], groups: list[str]) -> None:
        """Delete history items and counted markers (their sort keys, as history_index gives them) and
        memberships (group ids) of an entity."""
        doomed = [(self.events_table, {"pk": entity_pk(workspace_id, key), "sk": sk}) for sk in history]
        doomed += [(self.profiles_table, membership_key(workspace_id, group_id, key)) for group_id in groups]
        requests = [(table, {"DeleteRequest": {"Key": item(values)}}) for table, values in doomed]
        batch_write(self.clients.dynamodb, requests, self.sleep, failure=WRITE_FAILURE)
