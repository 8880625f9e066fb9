"""The deployment's change rules (outbound/changes.py): which profile changes become `track` calls.

WorkspacesTable items
    pk=RULES  sk=RULE#<name>  config (the ChangeRule as JSON), updated_at
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segment_bridge.errors import NotFound
from segment_bridge.store.aws import aws_errors, item, now, query
from segment_bridge.store.workspaces import WorkspacesTable

if TYPE_CHECKING:  # imported where used: the ingest function never loads the outbound models
    from segment_bridge.destinations import ChangeRule, InvalidRule


class RuleRepository(WorkspacesTable):
    def put_change_rule(self, rule: ChangeRule) -> None:
        """Add or replace a change rule (deployment-wide: its `workspace` path says whose event it is)."""
        values = {
            "pk": "RULES",
            "sk": f"RULE#{rule.name}",
            "config": rule.model_dump_json(),
            "updated_at": now(),
        }
        with aws_errors("The change rule could not be stored."):
            self.clients.dynamodb.put_item(TableName=self.table, Item=item(values))

    def delete_change_rule(self, name: str) -> None:
        """Delete a change rule; NotFound if there is none by that name (a stored rule that no longer
        validates can still be deleted: nothing is read first)."""
        missing = {"ConditionalCheckFailedException": NotFound(f"No change rule {name}.")}
        with aws_errors("The change rule could not be deleted.", refused=missing):
            self.clients.dynamodb.delete_item(
                TableName=self.table,
                Key=item({"pk": "RULES", "sk": f"RULE#{name}"}),
                ConditionExpression="attribute_exists(pk)",
            )

    def change_rules(self) -> list[ChangeRule | InvalidRule]:
        """Every stored rule; one that no longer validates comes back as an InvalidRule (the emitter parks
        its records, `rules list` shows why), never as an exception."""
        from segment_bridge.destinations import stored_rule

        found = query(
            self.clients.dynamodb,
            self.table,
            "pk = :pk",
            {":pk": "RULES"},
            failure="The change rules cannot be read right now.",
        )
        return [stored_rule(str(rule["sk"]).removeprefix("RULE#"), rule.get("config")) for rule in found]
