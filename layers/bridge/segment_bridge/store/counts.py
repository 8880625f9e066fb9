"""A workspace's daily counts (stats.py; `segment-bridge stats`).

WorkspacesTable items
    pk=WS#<workspace_id>  sk=STATS#<YYYY-MM-DD>  accepted, rejected, echoes, applied, duplicates,
                                                 unapplied, blocked_ids, refused_links, sent, parked
                                                 (numbers, each present once counted), added to with
                                                 UpdateItem ADD
"""

from __future__ import annotations

from datetime import date

from segment_bridge.store.aws import aws_errors, item, query
from segment_bridge.store.workspaces import WorkspacesTable, config_key


class CountRepository(WorkspacesTable):
    def add_daily_counts(self, workspace_id: str, day: date, counts: dict[str, int]) -> None:
        """Add `counts` to the workspace's STATS#<day> item (created by the first add): one write."""
        names = sorted(counts)
        with aws_errors("The daily counts could not be kept."):
            self.clients.dynamodb.update_item(
                TableName=self.table,
                Key=config_key(workspace_id, f"STATS#{day.isoformat()}"),
                UpdateExpression="ADD " + ", ".join(f"#c{n} :c{n}" for n in range(len(names))),
                ExpressionAttributeNames={f"#c{n}": name for n, name in enumerate(names)},
                ExpressionAttributeValues=item({f":c{n}": counts[name] for n, name in enumerate(names)}),
            )

    def daily_counts(self, workspace_id: str, first: date, last: date) -> dict[str, dict[str, int]]:
        """The workspace's counts of each day from `first` to `last` that has any, by ISO day."""
        found = query(
            self.clients.dynamodb,
            self.table,
            "pk = :pk AND sk BETWEEN :first AND :last",
            {
                ":pk": f"WS#{workspace_id}",
                ":first": f"STATS#{first.isoformat()}",
                ":last": f"STATS#{last.isoformat()}",
            },
            failure="The daily counts cannot be read right now.",
        )
        return {
            stored["sk"].removeprefix("STATS#"): {
                name: int(value) for name, value in stored.items() if name not in ("pk", "sk")
            }
            for stored in found
        }
