"""A workspace's opt-in poll of its Segment regulations (privacy/regulations.py): where to poll, how far
it has read, and the Public API token it polls with.

WorkspacesTable items
    pk=WS#<workspace_id>  sk=REGULATIONS  endpoint (us | eu | a URL), cursor (the createdAt up to which
                                          the workspace's Segment regulations are queued), updated_at
Secrets Manager: <SECRETS_PREFIX>/<workspace_id>/public-api-token
"""

from __future__ import annotations

import contextlib
from typing import Any

from segment_bridge.errors import ConditionFailed, NotFound
from segment_bridge.store.aws import aws_errors, get_secret, item, now, put_secret
from segment_bridge.store.workspaces import WorkspacesTable, config_key, token_secret

SK = "REGULATIONS"


class RegulationsRepository(WorkspacesTable):
    def set_regulations_token(self, workspace_id: str, token: str, endpoint: str) -> None:
        """Poll the workspace's Segment regulations with this Public API token (kept as a secret) at
        `endpoint` (us, eu or a URL); the cursor is kept if it was set before."""
        self._workspace_item(workspace_id)  # NotFound if there is none
        failure = "The Public API token could not be stored."
        put_secret(self.clients, self._secret(workspace_id), token, failure)
        with aws_errors(failure):
            self.clients.dynamodb.update_item(
                TableName=self.table,
                Key=config_key(workspace_id, SK),
                UpdateExpression="SET endpoint = :endpoint, updated_at = :now",
                ExpressionAttributeValues=item({":endpoint": endpoint, ":now": now()}),
            )

    def unset_regulations_token(self, workspace_id: str) -> None:
        """Stop polling: the token's secret deleted at once (no recovery window), the cursor forgotten."""
        self._workspace_item(workspace_id)
        failure = "The Public API token could not be removed."
        with (
            contextlib.suppress(NotFound),
            aws_errors(failure, refused={"ResourceNotFoundException": NotFound(failure)}),
        ):
            self.clients.secrets.delete_secret(
                SecretId=self._secret(workspace_id), ForceDeleteWithoutRecovery=True
            )
        with aws_errors(failure):
            self.clients.dynamodb.delete_item(TableName=self.table, Key=config_key(workspace_id, SK))

    def regulations_settings(self, workspace_id: str) -> dict[str, Any] | None:
        """{"endpoint", "cursor"?} of a workspace that polls its regulations; None if it does not."""
        stored = self._get(config_key(workspace_id, SK), "Workspaces cannot be read right now.")
        return None if stored is None else {"endpoint": stored["endpoint"], "cursor": stored.get("cursor")}

    def regulations_token(self, workspace_id: str) -> str | None:
        return get_secret(
            self.clients, self._secret(workspace_id), "The Public API token cannot be read right now."
        )

    def save_regulations_cursor(self, workspace_id: str, cursor: str) -> None:
        """Move the cursor (never back: a slower run that read an older list keeps the newer cursor)."""
        try:
            with aws_errors("The regulations cursor could not be saved."):
                self.clients.dynamodb.update_item(
                    TableName=self.table,
                    Key=config_key(workspace_id, SK),
                    UpdateExpression="SET #cursor = :cursor, updated_at = :now",
                    ConditionExpression=(
                        "attribute_exists(pk) AND (attribute_not_exists(#cursor) OR #cursor < :cursor)"
                    ),
                    ExpressionAttributeNames={"#cursor": "cursor"},
                    ExpressionAttributeValues=item({":cursor": cursor, ":now": now()}),
                )
        except ConditionFailed:
            return

    def polling_workspaces(self) -> list[str]:
        """The workspaces that poll their Segment regulations."""
        found = self._scan_sk(SK, "Workspaces cannot be listed right now.")
        return sorted(str(stored["pk"]).removeprefix("WS#") for stored in found)

    def _secret(self, workspace_id: str) -> str:
        return token_secret(self.settings.secrets_prefix, workspace_id)
