"""A workspace's credentials: its API keys (ingest's), its read tokens (the read API's), both as hashes,
and the shared secret Segment signs deliveries with.

WorkspacesTable items
    pk=KEY#<sha256(key)>     sk=KEY   workspace_id, key_id, created_at: an API key (ingest looks up KEY#
                                      only); the workspace item lists it in keys {key_id: {hash, created_at}}
    pk=READ#<sha256(token)>  sk=READ  workspace_id, token_id, created_at: a read token (the read API looks
                                      up READ# only: a token is never an API key, nor a key a token); the
                                      workspace item lists it in read_tokens {token_id: {hash, created_at}}
    the workspace item's shared_secret (workspaces.py)

A credential is two writes in one transaction: its lookup item (refused if it exists) and its entry in the
workspace item's map (refused once the map holds MAX_LIVE_KEYS, or the workspace is offboarding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segment_bridge.errors import ConditionFailed, Conflict, NotFound
from segment_bridge.keys import WorkspaceAuth, hash_key, hashes_match, key_id
from segment_bridge.store.aws import aws_errors, item, now
from segment_bridge.store.workspaces import OFFBOARDING, WorkspacesTable, workspace_key

MAX_LIVE_KEYS = 2
"""Two live keys (or read tokens) let a workspace rotate without downtime: add the new one, move senders,
revoke the old."""
MIN_KEY_LENGTH = 32
"""Keys are looked up by an unsalted hash, which is only safe for high-entropy keys."""


@dataclass(frozen=True, slots=True)
class IssuedKey:
    workspace_id: str
    key_id: str
    api_key: str
    """Shown once, never stored."""


@dataclass(frozen=True, slots=True)
class _Kind:
    """Where one kind of credential is kept: its lookup item's prefix and sort key, the workspace item's
    map of them, and the name its record gives its id."""

    prefix: str
    sk: str
    map_name: str
    id_name: str
    noun: str

    def lookup(self, secret_hash: str) -> dict[str, str]:
        return {"pk": f"{self.prefix}#{secret_hash}", "sk": self.sk}

    def key(self, secret_hash: str) -> dict[str, Any]:
        return item(self.lookup(secret_hash))


API_KEY = _Kind("KEY", "KEY", "keys", "key_id", "key")
READ_TOKEN = _Kind("READ", "READ", "read_tokens", "token_id", "read token")


class CredentialRepository(WorkspacesTable):
    # --- API keys (ingest) -----------------------------------------------------------------------

    def workspace_for_key_hash(self, key_hash: str) -> WorkspaceAuth | None:
        """The workspace a key (by its hash) belongs to, with what authentication needs; None if unknown."""
        failure = "Workspaces cannot be read right now; retry the request."
        record = self._get(API_KEY.key(key_hash), failure)
        if record is None:
            return None
        workspace = self._get(workspace_key(record["workspace_id"]), failure)
        if workspace is None:
            return None
        live = workspace.get("keys", {}).get(record["key_id"])
        if workspace.get("state") == OFFBOARDING or not live or not hashes_match(key_hash, live["hash"]):
            return None
        return WorkspaceAuth(
            workspace_id=record["workspace_id"], shared_secret=workspace.get("shared_secret")
        )

    def issue_key(self, workspace_id: str, api_key: str) -> IssuedKey:
        """Make `api_key` a live key of the workspace; refused once it has MAX_LIVE_KEYS keys, or while it
        is offboarding."""
        if len(api_key) < MIN_KEY_LENGTH:
            raise ValueError(f"an API key needs at least {MIN_KEY_LENGTH} characters (use auth.new_api_key)")
        return self._issue(API_KEY, workspace_id, api_key)

    def revoke_key(self, workspace_id: str, kid: str) -> None:
        self._revoke(API_KEY, workspace_id, kid)

    # --- read tokens (the read API) --------------------------------------------------------------

    def workspace_for_read_token_hash(self, token_hash: str) -> str | None:
        """The workspace a read token (by its hash) reads; None if it is not a live read token."""
        record = self._get(READ_TOKEN.key(token_hash), "Read tokens cannot be checked right now; retry.")
        return str(record["workspace_id"]) if record else None

    def issue_read_token(self, workspace_id: str, token: str) -> IssuedKey:
        """Make `token` a live read token of the workspace; refused once it has MAX_LIVE_KEYS of them."""
        if len(token) < MIN_KEY_LENGTH:
            raise ValueError(
                f"a read token needs at least {MIN_KEY_LENGTH} characters (use keys.new_read_token)"
            )
        missing = {"ConditionalCheckFailedException": NotFound(f"No workspace {workspace_id}.")}
        with aws_errors("The read token could not be stored.", refused=missing):
            self.clients.dynamodb.update_item(  # workspaces made before read tokens have no map of them
                TableName=self.table,
                Key=workspace_key(workspace_id),
                UpdateExpression="SET #tokens = if_not_exists(#tokens, :none)",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#tokens": READ_TOKEN.map_name},
                ExpressionAttributeValues=item({":none": {}}),
            )
        return self._issue(READ_TOKEN, workspace_id, token)

    def revoke_read_token(self, workspace_id: str, token_id: str) -> None:
        self._revoke(READ_TOKEN, workspace_id, token_id)

    # --- the shared secret (X-Signature) ---------------------------------------------------------

    def set_shared_secret(self, workspace_id: str, secret: str | None) -> None:
        """Set (or with None, remove) the secret Segment signs deliveries with (X-Signature)."""
        update: dict[str, Any] = (
            {"UpdateExpression": "SET shared_secret = :s", "ExpressionAttributeValues": item({":s": secret})}
            if secret
            else {"UpdateExpression": "REMOVE shared_secret"}
        )
        refused = {"ConditionalCheckFailedException": NotFound(f"No workspace {workspace_id}.")}
        with aws_errors("The shared secret could not be stored.", refused=refused):
            self.clients.dynamodb.update_item(
                TableName=self.table,
                Key=workspace_key(workspace_id),
                ConditionExpression="attribute_exists(pk)",
                **update,
            )

    # --- one transaction per credential ----------------------------------------------------------

    def _issue(self, kind: _Kind, workspace_id: str, secret: str) -> IssuedKey:
        """The lookup item and the workspace's map entry in one transaction; Conflict if the map is full
        or the workspace offboarding, NotFound if there is no such workspace."""
        secret_hash = hash_key(secret)
        cid = key_id(secret_hash)
        created_at = now()
        record = {"workspace_id": workspace_id, kind.id_name: cid, "created_at": created_at}
        try:
            self._issue_transaction(kind, workspace_id, secret_hash, cid, record)
        except ConditionFailed:
            if self._workspace_item(workspace_id).get("state") == OFFBOARDING:  # NotFound if none
                raise Conflict(f"Workspace {workspace_id} is being deleted.") from None
            raise Conflict(
                f"Workspace {workspace_id} already has {MAX_LIVE_KEYS} live {kind.noun}s; revoke one first."
            ) from None
        return IssuedKey(workspace_id=workspace_id, key_id=cid, api_key=secret)

    def _issue_transaction(
        self, kind: _Kind, workspace_id: str, secret_hash: str, cid: str, record: dict[str, Any]
    ) -> None:
        with aws_errors(f"The {kind.noun} could not be stored."):
            self.clients.dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": item({**kind.lookup(secret_hash), **record}),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": workspace_key(workspace_id),
                            "UpdateExpression": "SET #map.#id = :entry",
                            "ConditionExpression": "attribute_exists(pk) AND size(#map) < :max"
                            " AND attribute_not_exists(#state)",
                            "ExpressionAttributeNames": {
                                "#map": kind.map_name,
                                "#id": cid,
                                "#state": "state",
                            },
                            "ExpressionAttributeValues": item(
                                {
                                    ":entry": {"hash": secret_hash, "created_at": record["created_at"]},
                                    ":max": MAX_LIVE_KEYS,
                                }
                            ),
                        }
                    },
                ]
            )

    def _revoke(self, kind: _Kind, workspace_id: str, cid: str) -> None:
        live = self._workspace_item(workspace_id).get(kind.map_name, {}).get(cid)
        if live is None:
            raise NotFound(f"Workspace {workspace_id} has no live {kind.noun} {cid}.")
        with aws_errors(f"The {kind.noun} could not be revoked; try again."):
            self.clients.dynamodb.transact_write_items(
                TransactItems=[
                    {"Delete": {"TableName": self.table, "Key": kind.key(live["hash"])}},
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": workspace_key(workspace_id),
                            "UpdateExpression": "REMOVE #map.#id",
                            "ExpressionAttributeNames": {"#map": kind.map_name, "#id": cid},
                        }
                    },
                ]
            )
