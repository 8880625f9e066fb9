"""A workspace's mapping, stored whole under a version (processor/mappings.py reads it per message).

WorkspacesTable items
    pk=WS#<workspace_id>  sk=MAPPING  version, config (the Mapping as JSON, its version aside), updated_at
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from segment_bridge.errors import Conflict
from segment_bridge.store.aws import aws_errors, item, now, plain
from segment_bridge.store.workspaces import WorkspacesTable, config_key

if TYPE_CHECKING:  # imported where used: the ingest function never loads the mapping's models
    from segment_bridge.mapping import Mapping


class MappingRepository(WorkspacesTable):
    def get_mapping(self, workspace_id: str) -> Mapping:
        """The workspace's mapping; the defaults (version 0) if it never set one."""
        from segment_bridge.mapping import Mapping

        stored = self._get(config_key(workspace_id, "MAPPING"), "The mapping cannot be read right now.")
        if stored is None:
            return Mapping()
        return Mapping.model_validate_json(stored["config"]).model_copy(
            update={"version": int(stored["version"])}
        )

    def mapping_version(self, workspace_id: str) -> int:
        """The stored mapping's version (0: never set), strongly consistent: one read unit, whatever the
        mapping's size is not read (the processor asks once per message, docs/exactness.md)."""
        with aws_errors("The mapping cannot be read right now."):
            found = self.clients.dynamodb.get_item(
                TableName=self.table,
                Key=config_key(workspace_id, "MAPPING"),
                ConsistentRead=True,
                ProjectionExpression="version",
            ).get("Item")
        return int(plain(found)["version"]) if found is not None else 0

    def set_mapping(self, workspace_id: str, mapping: Mapping) -> Mapping:
        """Store a validated mapping as the next version, whole (one write: never half-applied)."""
        current = self.get_mapping(workspace_id)
        stored = mapping.model_copy(update={"version": current.version + 1})
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(pk)"}
            if current.version == 0
            else {
                "ConditionExpression": "version = :current",
                "ExpressionAttributeValues": item({":current": current.version}),
            }
        )
        refused = {
            "ConditionalCheckFailedException": Conflict(
                "The mapping changed meanwhile; read it again and retry."
            )
        }
        with aws_errors("The mapping could not be stored.", refused=refused):
            self.clients.dynamodb.put_item(
                TableName=self.table,
                Item=item(
                    {
                        "pk": f"WS#{workspace_id}",
                        "sk": "MAPPING",
                        "version": stored.version,
                        "config": stored.model_dump_json(exclude={"version"}),
                        "updated_at": now(),
                    }
                ),
                **condition,
            )
        return stored
