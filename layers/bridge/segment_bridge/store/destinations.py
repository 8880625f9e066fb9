"""A workspace's Segment destination (outbound): where its events go and the write key they go with.

WorkspacesTable items
    the workspace item's segment_endpoint (us | eu | a URL; workspaces.py)
Secrets Manager: <SECRETS_PREFIX>/<workspace_id>/write-key (the Segment source's write key)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segment_bridge.store.aws import aws_errors, get_secret, item, put_secret
from segment_bridge.store.workspaces import WorkspacesTable, workspace_key, write_key_secret

if TYPE_CHECKING:  # imported where used: the ingest function never loads the outbound models
    from segment_bridge.destinations import Destination


class DestinationRepository(WorkspacesTable):
    def set_segment_destination(self, workspace_id: str, write_key: str, endpoint: str = "us") -> None:
        """Where the workspace's outbound events go: its Segment source's write key (kept as a secret)
        and `us`, `eu` or an explicit URL (refused if the deployment's endpoint policy refuses it)."""
        from segment_bridge.destinations import endpoint_url

        endpoint_url(endpoint, self.settings.segment_endpoints)  # refuses anything else
        self._workspace_item(workspace_id)  # NotFound if there is none
        failure = "The Segment destination could not be stored."
        put_secret(self.clients, self._secret(workspace_id), write_key, failure)
        with aws_errors(failure):
            self.clients.dynamodb.update_item(
                TableName=self.table,
                Key=workspace_key(workspace_id),
                UpdateExpression="SET segment_endpoint = :endpoint",
                ExpressionAttributeValues=item({":endpoint": endpoint}),
            )

    def segment_destination(self, workspace_id: str) -> Destination | None:
        """The workspace's /v1/batch URL and write key; None if it has none."""
        from segment_bridge.destinations import Destination, batch_url

        failure = "The Segment destination cannot be read right now."
        stored = self._get(workspace_key(workspace_id), failure, consistent=False)
        endpoint = stored.get("segment_endpoint") if stored else None
        if not endpoint:
            return None
        write_key = get_secret(self.clients, self._secret(workspace_id), failure)
        if write_key is None:
            return None
        # Checked when sent (HttpSender): an endpoint the policy now refuses parks its events, with why.
        return Destination(url=batch_url(endpoint), write_key=write_key)

    def _secret(self, workspace_id: str) -> str:
        return write_key_secret(self.settings.secrets_prefix, workspace_id)
