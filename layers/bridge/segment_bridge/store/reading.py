"""What the read model reads (segment_bridge/read/): profiles, tombstones, links, memberships and history,
read-only. Item shapes: store/profiles.py (ProfilesTable, EventsTable); the mapping: store/mappings.py.

Only the calls the ReaderFunction's role allows: BatchGetItem and Query on the ProfilesTable (and its
gsi1) and the EventsTable, GetItem on the WorkspacesTable (the mapping; read tokens are the workspace
repository's). Nothing here writes.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

from segment_bridge.profiles import Profile
from segment_bridge.store.aws import Clients, Sleep, all_at_once, aws_errors, batch_get, item, plain
from segment_bridge.store.profiles import _profile as stored_profile
from segment_bridge.values import to_json

if TYPE_CHECKING:
    import boto3

    from segment_bridge.identity import MergeProtection

READ_FAILURE = "Profiles cannot be read right now; retry."


class ReadRepository:
    """The read model's source (read.model.ReadSource) over one stack's tables."""

    def __init__(
        self,
        *,
        profiles_table: str,
        events_table: str,
        workspaces_table: str,
        clients: Clients,
        sleep: Sleep,
    ) -> None:
        self.profiles_table = profiles_table
        self.events_table = events_table
        self.workspaces_table = workspaces_table
        self.clients = clients
        self.sleep = sleep

    def entities(
        self, workspace_id: str, keys: list[str], links: list[str]
    ) -> tuple[dict[str, tuple[Profile | None, tuple[str, bool] | None]], dict[str, str]]:
        """(entity key -> its profile and tombstone, previousId -> the user its stored link names), in one
        BatchGetItem (as few as fit). Entities with neither item are absent. A tombstone reads as
        (deleted_at, erased): erased unless its own erase is under way (status erasing); a linked id's
        (`by`) says nothing of its erase, and reads as erased."""
        prefix = f"WS#{workspace_id}#"
        wanted = [{"pk": prefix + key, "sk": sk} for key in keys for sk in ("PROFILE", "DELETED")]
        wanted += [{"pk": f"{prefix}LINK#{previous}", "sk": "LINK"} for previous in links]
        profiles: dict[str, dict[str, Any]] = {}
        tombstones: dict[str, dict[str, Any]] = {}
        linked: dict[str, str] = {}
        for found in batch_get(
            self.clients.dynamodb, self.profiles_table, wanted, self.sleep, failure=READ_FAILURE
        ):
            key = str(found["pk"]).removeprefix(prefix)
            if found["sk"] == "LINK":
                linked[key.removeprefix("LINK#")] = str(found["user_id"])
            elif found["sk"] == "DELETED":
                tombstones[key] = found
            else:
                profiles[key] = found
        out: dict[str, tuple[Profile | None, tuple[str, bool] | None]] = {}
        for key in set(profiles) | set(tombstones):
            stone = tombstones.get(key)
            out[key] = (
                stored_profile(profiles[key]) if key in profiles else None,
                (str(stone["deleted_at"]), stone.get("status") != "erasing") if stone else None,
            )
        return out, linked

    def linked_ids(self, workspace_id: str, user_id: str) -> list[str]:
        """The previousIds whose stored link names the user (gsi1's LINK# entries: keys only)."""
        found = self._query(
            {
                "TableName": self.profiles_table,
                "IndexName": "gsi1",
                "KeyConditionExpression": "gsi1pk = :pk AND begins_with(gsi1sk, :prefix)",
                "ExpressionAttributeValues": item(
                    {":pk": f"WS#{workspace_id}#U#{user_id}", ":prefix": "LINK#"}
                ),
            }
        )
        return [str(entry["gsi1sk"]).removeprefix("LINK#") for entry in found]

    def group_members(self, workspace_id: str, group_id: str) -> list[str]:
        """The entity keys (U#…, A#…) of the group's MEMBER# items."""
        found = self._query(
            {
                "TableName": self.profiles_table,
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
                "ExpressionAttributeValues": item(
                    {":pk": f"WS#{workspace_id}#G#{group_id}", ":prefix": "MEMBER#"}
                ),
                "ProjectionExpression": "sk",
            }
        )
        return [str(member["sk"]).removeprefix("MEMBER#") for member in found]

    def history_index(self, workspace_id: str, keys: list[str]) -> list[tuple[str, str, str, str]]:
        """(timestamp, messageId, entity key, name) of each history item of the entities: keys, name and
        timestamp only, small to sort."""

        def index_of(key: str) -> list[dict[str, Any]]:
            return self._query(
                {
                    "TableName": self.events_table,
                    # history items only: the EventsTable also holds counted markers (COUNTED#)
                    "KeyConditionExpression": "pk = :pk AND begins_with(sk, :msg)",
                    "ExpressionAttributeValues": item({":pk": f"WS#{workspace_id}#{key}", ":msg": "MSG#"}),
                    "ProjectionExpression": "pk, sk, #name, #ts",
                    "ExpressionAttributeNames": {"#name": "name", "#ts": "timestamp"},
                }
            )

        prefix = f"WS#{workspace_id}#"
        return [  # the entities' queries in flight together
            (
                str(h.get("timestamp", "")),
                str(h["sk"]).removeprefix("MSG#"),
                str(h["pk"]).removeprefix(prefix),
                str(h.get("name", "")),
            )
            for h in all_at_once([partial(index_of, key) for key in keys])
        ]

    def history_items(
        self, workspace_id: str, wanted: list[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """(entity key, messageId) -> the history item, for those of `wanted` still stored."""
        prefix = f"WS#{workspace_id}#"
        keys = [{"pk": prefix + entity, "sk": f"MSG#{message_id}"} for entity, message_id in wanted]
        return {
            (str(found["pk"]).removeprefix(prefix), str(found["sk"]).removeprefix("MSG#")): to_json(found)
            for found in batch_get(
                self.clients.dynamodb, self.events_table, keys, self.sleep, failure=READ_FAILURE
            )
        }

    def protection(self, workspace_id: str) -> MergeProtection:
        """The workspace's merge protection (its mapping's; the defaults without one)."""
        from segment_bridge.mapping import Mapping

        with aws_errors(READ_FAILURE):
            found = self.clients.dynamodb.get_item(
                TableName=self.workspaces_table,
                Key=item({"pk": f"WS#{workspace_id}", "sk": "MAPPING"}),
                ProjectionExpression="config",
            ).get("Item")
        if found is None:
            return Mapping().merge_protection
        return Mapping.model_validate_json(str(plain(found)["config"])).merge_protection

    def _query(self, arguments: dict[str, Any]) -> list[dict[str, Any]]:
        with aws_errors(READ_FAILURE):
            pages = self.clients.dynamodb.get_paginator("query").paginate(**arguments)
            return [plain(found) for page in pages for found in page.get("Items", [])]


def connect(
    *,
    profiles_table: str,
    events_table: str,
    workspaces_table: str,
    session: boto3.session.Session | None = None,
    endpoint_url: str | None = None,
) -> ReadRepository:
    """A ReadRepository of its own clients (made on first use): the Python client's (read/client.py)."""
    return ReadRepository(
        profiles_table=profiles_table,
        events_table=events_table,
        workspaces_table=workspaces_table,
        clients=Clients(session, endpoint_url),
        sleep=time.sleep,
    )
