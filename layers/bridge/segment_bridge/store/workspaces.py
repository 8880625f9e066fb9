"""Workspaces and their configuration: API keys (as hashes), the shared secret, mapping versions, the
Segment destination (its write key in Secrets Manager) and the deployment's change rules.

WorkspacesTable items
    pk=WS#<workspace_id>  sk=WORKSPACE  workspace_id, name, created_at, keys {key_id: {hash, created_at}},
                                        shared_secret?, segment_endpoint?, state? ("offboarding", with
                                        offboarding_job and offboarding_at: `workspaces delete` began)
    pk=WS#<workspace_id>  sk=MAPPING    version, config (the Mapping as JSON), updated_at
    pk=KEY#<sha256(key)>  sk=KEY        workspace_id, key_id, created_at
    pk=READ#<sha256(token)>  sk=READ    workspace_id, token_id, created_at: a read token (the read API's;
                                        never an API key: ingest looks up KEY# only, the read API READ#
                                        only); the workspace item lists it in read_tokens {token_id: {hash,
                                        created_at}}
    pk=RULES              sk=RULE#<name>  config (the ChangeRule as JSON), updated_at
    pk=WS#<workspace_id>  sk=STATS#<YYYY-MM-DD>  accepted, rejected, echoes, applied, duplicates,
                                        unapplied, blocked_ids, refused_links, sent, parked (numbers,
                                        each present once counted): the workspace's daily counts
                                        (stats.py), added to with UpdateItem ADD
    pk=WS#<workspace_id>  sk=REGULATIONS  endpoint (us | eu | a URL), cursor (the createdAt up to which
                                        the workspace's Segment regulations are queued), updated_at: the
                                        opt-in poll of Segment's Public API (privacy/regulations.py)
Secrets Manager: <SECRETS_PREFIX>/<workspace_id>/write-key, <SECRETS_PREFIX>/<workspace_id>/public-api-token
"""

from __future__ import annotations

import contextlib
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from segment_bridge.errors import ConditionFailed, Conflict, InvalidWorkspaceId, NotFound
from segment_bridge.keys import WorkspaceAuth, hash_key, hashes_match, key_id
from segment_bridge.limits import MAX_WORKSPACE_ID_BYTES, WORKSPACE_ID_PATTERN, valid_workspace_id
from segment_bridge.settings import Settings
from segment_bridge.store.aws import Clients, aws_errors, item, now, plain, query

# The mapping and outbound models are imported where used: the ingest function never loads them.
if TYPE_CHECKING:
    from segment_bridge.destinations import ChangeRule, Destination, InvalidRule
    from segment_bridge.mapping import Mapping

OFFBOARDING = "offboarding"
"""A workspace's state once its offboarding began: no key authenticates it, the processor applies none of
its messages, and it cannot get a key again (jobs/offboard.py)."""
MAX_LIVE_KEYS = 2
"""Two live keys let a workspace rotate without downtime: add the new one, move senders, revoke the old."""
MIN_KEY_LENGTH = 32
"""Keys are looked up by an unsalted hash, which is only safe for high-entropy keys."""


@dataclass(frozen=True, slots=True)
class Workspace:
    workspace_id: str
    name: str
    created_at: str
    key_ids: tuple[str, ...] = ()
    has_shared_secret: bool = False
    read_token_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IssuedKey:
    workspace_id: str
    key_id: str
    api_key: str
    """Shown once, never stored."""


def same_name(one: str, other: str) -> bool:
    """Whether two workspace names read as one: Unicode-compatible forms, case and spacing aside."""
    return _name_key(one) == _name_key(other)


def _name_key(name: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def _workspace_key(workspace_id: str) -> dict[str, Any]:
    return item({"pk": f"WS#{workspace_id}", "sk": "WORKSPACE"})


def _key_key(key_hash: str) -> dict[str, Any]:
    return item({"pk": f"KEY#{key_hash}", "sk": "KEY"})


def _workspace(stored: dict[str, Any]) -> Workspace:
    return Workspace(
        workspace_id=stored["workspace_id"],
        name=stored.get("name", ""),
        created_at=stored.get("created_at", ""),
        key_ids=tuple(sorted(stored.get("keys", {}))),
        has_shared_secret=bool(stored.get("shared_secret")),
        read_token_ids=tuple(sorted(stored.get("read_tokens", {}))),
    )


class WorkspaceRepository:
    def __init__(self, settings: Settings, clients: Clients) -> None:
        self.table = settings.workspaces_table
        self.secrets_prefix = settings.secrets_prefix
        self.endpoint_policy = settings.segment_endpoints
        self.clients = clients

    def _get(self, key: dict[str, Any], failure: str, *, consistent: bool = True) -> dict[str, Any] | None:
        with aws_errors(failure):
            found = self.clients.dynamodb.get_item(TableName=self.table, Key=key, ConsistentRead=consistent)
        stored = found.get("Item")
        return plain(stored) if stored is not None else None

    def _workspace_item(self, workspace_id: str) -> dict[str, Any]:
        """The workspace's item; NotFound if there is none, an id no workspace can have included (a '#',
        too long), which is never looked up."""
        if not valid_workspace_id(workspace_id):
            raise NotFound(f"No workspace {workspace_id}.")
        stored = self._get(_workspace_key(workspace_id), "Workspaces cannot be read right now.")
        if stored is None:
            raise NotFound(f"No workspace {workspace_id}.")
        return stored

    # --- workspaces and keys -------------------------------------------------------------------

    def workspace_for_key_hash(self, key_hash: str) -> WorkspaceAuth | None:
        """The workspace a key (by its hash) belongs to, with what authentication needs; None if unknown."""
        failure = "Workspaces cannot be read right now; retry the request."
        record = self._get(_key_key(key_hash), failure)
        if record is None:
            return None
        workspace = self._get(_workspace_key(record["workspace_id"]), failure)
        if workspace is None:
            return None
        live = workspace.get("keys", {}).get(record["key_id"])
        if workspace.get("state") == OFFBOARDING or not live or not hashes_match(key_hash, live["hash"]):
            return None
        return WorkspaceAuth(
            workspace_id=record["workspace_id"], shared_secret=workspace.get("shared_secret")
        )

    def create_workspace(
        self, name: str, *, workspace_id: str | None = None, allow_duplicate_name: bool = False
    ) -> Workspace:
        """A new workspace. Conflict if its id exists, or (unless `allow_duplicate_name`) if a workspace
        of the same name does (`same_name`: case, width and spacing aside): a second "Acme" is most often
        a create run twice, which would leave a tenant nobody uses holding a live key. The name check
        reads the workspaces first (a scan: operators create workspaces, not traffic), so two creates of
        one name at the same moment can both pass it; ids stay unique whatever happens."""
        workspace_id = workspace_id or f"ws_{uuid.uuid4().hex[:20]}"
        if not valid_workspace_id(workspace_id):
            raise InvalidWorkspaceId(
                f"A workspace id is 1-{MAX_WORKSPACE_ID_BYTES} letters, digits, '_' or '-' "
                f"({WORKSPACE_ID_PATTERN}): '#' and other characters would break its keys."
            )
        if not allow_duplicate_name:
            taken = sorted(w.workspace_id for w in self.list_workspaces() if same_name(w.name, name))
            if taken:
                raise Conflict(
                    f"A workspace of that name exists already ({', '.join(taken)}); use it, or create "
                    "another with --allow-duplicate-name."
                )
        created_at = now()
        values = {"workspace_id": workspace_id, "name": name, "created_at": created_at, "keys": {}}
        refused = {"ConditionalCheckFailedException": Conflict(f"Workspace {workspace_id} already exists.")}
        with aws_errors("The workspace could not be created.", refused=refused):
            self.clients.dynamodb.put_item(
                TableName=self.table,
                Item=item({"pk": f"WS#{workspace_id}", "sk": "WORKSPACE", **values}),
                ConditionExpression="attribute_not_exists(pk)",
            )
        return Workspace(workspace_id=workspace_id, name=name, created_at=created_at)

    def get_workspace(self, workspace_id: str) -> Workspace:
        return _workspace(self._workspace_item(workspace_id))

    def list_workspaces(self) -> Iterator[Workspace]:
        with aws_errors("Workspaces cannot be listed right now."):
            pages = self.clients.dynamodb.get_paginator("scan").paginate(
                TableName=self.table,
                FilterExpression="sk = :sk",
                ExpressionAttributeValues={":sk": {"S": "WORKSPACE"}},
            )
            found = [_workspace(plain(stored)) for page in pages for stored in page.get("Items", [])]
        return iter(found)

    def issue_key(self, workspace_id: str, api_key: str) -> IssuedKey:
        """Make `api_key` a live key of the workspace; refused once it has MAX_LIVE_KEYS keys."""
        if len(api_key) < MIN_KEY_LENGTH:
            raise ValueError(f"an API key needs at least {MIN_KEY_LENGTH} characters (use auth.new_api_key)")
        key_hash = hash_key(api_key)
        kid = key_id(key_hash)
        created_at = now()
        record = {"workspace_id": workspace_id, "key_id": kid, "created_at": created_at}
        try:
            with aws_errors("The key could not be stored."):
                self.clients.dynamodb.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self.table,
                                "Item": item({"pk": f"KEY#{key_hash}", "sk": "KEY", **record}),
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                        {
                            "Update": {
                                "TableName": self.table,
                                "Key": _workspace_key(workspace_id),
                                "UpdateExpression": "SET #keys.#kid = :key",
                                "ConditionExpression": "attribute_exists(pk) AND size(#keys) < :max"
                                " AND attribute_not_exists(#state)",
                                "ExpressionAttributeNames": {"#keys": "keys", "#kid": kid, "#state": "state"},
                                "ExpressionAttributeValues": item(
                                    {
                                        ":key": {"hash": key_hash, "created_at": created_at},
                                        ":max": MAX_LIVE_KEYS,
                                    }
                                ),
                            }
                        },
                    ]
                )
        except ConditionFailed:
            if self._workspace_item(workspace_id).get("state") == OFFBOARDING:  # NotFound if none
                raise Conflict(f"Workspace {workspace_id} is being deleted.") from None
            raise Conflict(
                f"Workspace {workspace_id} already has {MAX_LIVE_KEYS} live keys; revoke one first."
            ) from None
        return IssuedKey(workspace_id=workspace_id, key_id=kid, api_key=api_key)

    def revoke_key(self, workspace_id: str, kid: str) -> None:
        live = self._workspace_item(workspace_id).get("keys", {}).get(kid)
        if live is None:
            raise NotFound(f"Workspace {workspace_id} has no live key {kid}.")
        with aws_errors("The key could not be revoked; try again."):
            self.clients.dynamodb.transact_write_items(
                TransactItems=[
                    {"Delete": {"TableName": self.table, "Key": _key_key(live["hash"])}},
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _workspace_key(workspace_id),
                            "UpdateExpression": "REMOVE #keys.#kid",
                            "ExpressionAttributeNames": {"#keys": "keys", "#kid": kid},
                        }
                    },
                ]
            )

    def begin_offboarding(self, workspace_id: str, job_id: str) -> str:
        """Mark the workspace offboarding (from now on no key authenticates it and the processor applies
        none of its messages) and revoke every key (their KEY# items deleted: a container that has not
        cached a key finds none). The job already marking it if it was (a second `workspaces delete`
        resumes it). NotFound if there is no such workspace."""
        stored = self._workspace_item(workspace_id)
        if stored.get("state") == OFFBOARDING:
            return str(stored["offboarding_job"])
        refused = {"ConditionalCheckFailedException": NotFound(f"No workspace {workspace_id}.")}
        with aws_errors("The workspace could not be marked for deletion.", refused=refused):
            self.clients.dynamodb.update_item(
                TableName=self.table,
                Key=_workspace_key(workspace_id),
                UpdateExpression="SET #state = :state, offboarding_job = :job, offboarding_at = :now",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(#state)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=item({":state": OFFBOARDING, ":job": job_id, ":now": now()}),
            )
        for kid in stored.get("keys", {}):
            self.revoke_key(workspace_id, kid)
        return job_id

    def is_open(self, workspace_id: str) -> bool:
        """Whether the workspace exists and is not being deleted (the processor applies a message only
        then): one consistent read of its item's state."""
        if not valid_workspace_id(workspace_id):
            return False
        with aws_errors("Workspaces cannot be read right now."):
            found = self.clients.dynamodb.get_item(
                TableName=self.table,
                Key=_workspace_key(workspace_id),
                ConsistentRead=True,
                ProjectionExpression="pk, #state",
                ExpressionAttributeNames={"#state": "state"},
            ).get("Item")
        return found is not None and plain(found).get("state") != OFFBOARDING

    def forget_workspace(self, workspace_id: str) -> None:
        """The workspace's own item deleted: offboarding's last write."""
        with aws_errors("The workspace could not be deleted."):
            self.clients.dynamodb.delete_item(TableName=self.table, Key=_workspace_key(workspace_id))

    def secret_names(self, workspace_id: str) -> list[str]:
        """The names of every secret the workspace may have: its Segment write key's, its Segment Public
        API token's (the regulations poll)."""
        return [self._write_key_secret(workspace_id), self._token_secret(workspace_id)]

    # --- read tokens (the read API's) -------------------------------------------------------------

    def workspace_for_read_token_hash(self, token_hash: str) -> str | None:
        """The workspace a read token (by its hash) reads; None if it is not a live read token."""
        record = self._get(
            item({"pk": f"READ#{token_hash}", "sk": "READ"}),
            "Read tokens cannot be checked right now; retry.",
        )
        return str(record["workspace_id"]) if record else None

    def issue_read_token(self, workspace_id: str, token: str) -> IssuedKey:
        """Make `token` a live read token of the workspace; refused once it has MAX_LIVE_KEYS of them."""
        if len(token) < MIN_KEY_LENGTH:
            raise ValueError(
                f"a read token needs at least {MIN_KEY_LENGTH} characters (use keys.new_read_token)"
            )
        token_hash = hash_key(token)
        tid = key_id(token_hash)
        created_at = now()
        record = {"workspace_id": workspace_id, "token_id": tid, "created_at": created_at}
        missing = {"ConditionalCheckFailedException": NotFound(f"No workspace {workspace_id}.")}
        with aws_errors("The read token could not be stored.", refused=missing):
            self.clients.dynamodb.update_item(  # workspaces made before read tokens have no map of them
                TableName=self.table,
                Key=_workspace_key(workspace_id),
                UpdateExpression="SET #tokens = if_not_exists(#tokens, :none)",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#tokens": "read_tokens"},
                ExpressionAttributeValues=item({":none": {}}),
            )
        try:
            with aws_errors("The read token could not be stored."):
                self.clients.dynamodb.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self.table,
                                "Item": item({"pk": f"READ#{token_hash}", "sk": "READ", **record}),
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                        {
                            "Update": {
                                "TableName": self.table,
                                "Key": _workspace_key(workspace_id),
                                "UpdateExpression": "SET #tokens.#tid = :token",
                                "ConditionExpression": "size(#tokens) < :max",
                                "ExpressionAttributeNames": {"#tokens": "read_tokens", "#tid": tid},
                                "ExpressionAttributeValues": item(
                                    {
                                        ":token": {"hash": token_hash, "created_at": created_at},
                                        ":max": MAX_LIVE_KEYS,
                                    }
                                ),
                            }
                        },
                    ]
                )
        except ConditionFailed:
            raise Conflict(
                f"Workspace {workspace_id} already has {MAX_LIVE_KEYS} live read tokens; revoke one first."
            ) from None
        return IssuedKey(workspace_id=workspace_id, key_id=tid, api_key=token)

    def revoke_read_token(self, workspace_id: str, token_id: str) -> None:
        live = self._workspace_item(workspace_id).get("read_tokens", {}).get(token_id)
        if live is None:
            raise NotFound(f"Workspace {workspace_id} has no live read token {token_id}.")
        with aws_errors("The read token could not be revoked; try again."):
            self.clients.dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self.table,
                            "Key": item({"pk": f"READ#{live['hash']}", "sk": "READ"}),
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _workspace_key(workspace_id),
                            "UpdateExpression": "REMOVE #tokens.#tid",
                            "ExpressionAttributeNames": {"#tokens": "read_tokens", "#tid": token_id},
                        }
                    },
                ]
            )

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
                Key=_workspace_key(workspace_id),
                ConditionExpression="attribute_exists(pk)",
                **update,
            )

    # --- the workspace's mapping -----------------------------------------------------------------

    def get_mapping(self, workspace_id: str) -> Mapping:
        """The workspace's mapping; the defaults (version 0) if it never set one."""
        from segment_bridge.mapping import Mapping

        stored = self._get(
            item({"pk": f"WS#{workspace_id}", "sk": "MAPPING"}), "The mapping cannot be read right now."
        )
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
                Key=item({"pk": f"WS#{workspace_id}", "sk": "MAPPING"}),
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

    # --- the workspace's Segment destination (outbound) -----------------------------------------

    def _write_key_secret(self, workspace_id: str) -> str:
        return f"{self.secrets_prefix}/{workspace_id}/write-key"

    def set_segment_destination(self, workspace_id: str, write_key: str, endpoint: str = "us") -> None:
        """Where the workspace's outbound events go: its Segment source's write key (kept as a secret)
        and `us`, `eu` or an explicit URL."""
        from segment_bridge.destinations import endpoint_url

        endpoint_url(endpoint, self.endpoint_policy)  # refuses anything else
        self.get_workspace(workspace_id)
        name = self._write_key_secret(workspace_id)
        failure = "The Segment destination could not be stored."
        try:
            with aws_errors(failure, refused={"ResourceNotFoundException": NotFound(name)}):
                self.clients.secrets.put_secret_value(SecretId=name, SecretString=write_key)
        except NotFound:
            with aws_errors(failure):
                self.clients.secrets.create_secret(Name=name, SecretString=write_key)
        with aws_errors(failure):
            self.clients.dynamodb.update_item(
                TableName=self.table,
                Key=_workspace_key(workspace_id),
                UpdateExpression="SET segment_endpoint = :endpoint",
                ExpressionAttributeValues=item({":endpoint": endpoint}),
            )

    def segment_destination(self, workspace_id: str) -> Destination | None:
        """The workspace's /v1/batch URL and write key; None if it has none."""
        from segment_bridge.destinations import Destination, batch_url

        failure = "The Segment destination cannot be read right now."
        stored = self._get(_workspace_key(workspace_id), failure, consistent=False)
        endpoint = stored.get("segment_endpoint") if stored else None
        if not endpoint:
            return None
        try:
            with aws_errors(failure, refused={"ResourceNotFoundException": NotFound(failure)}):
                secret = self.clients.secrets.get_secret_value(SecretId=self._write_key_secret(workspace_id))
        except NotFound:
            return None
        # Checked when sent (HttpSender): an endpoint the policy now refuses parks its events, with why.
        return Destination(url=batch_url(endpoint), write_key=secret["SecretString"])

    # --- the workspace's Segment regulations (privacy, opt-in) -------------------------------------

    def _token_secret(self, workspace_id: str) -> str:
        return f"{self.secrets_prefix}/{workspace_id}/public-api-token"

    def set_regulations_token(self, workspace_id: str, token: str, endpoint: str) -> None:
        """Poll the workspace's Segment regulations with this Public API token (kept as a secret) at
        `endpoint` (us, eu or a URL); the cursor is kept if it was set before."""
        self.get_workspace(workspace_id)
        name = self._token_secret(workspace_id)
        failure = "The Public API token could not be stored."
        try:
            with aws_errors(failure, refused={"ResourceNotFoundException": NotFound(name)}):
                self.clients.secrets.put_secret_value(SecretId=name, SecretString=token)
        except NotFound:
            with aws_errors(failure):
                self.clients.secrets.create_secret(Name=name, SecretString=token)
        with aws_errors(failure):
            self.clients.dynamodb.update_item(
                TableName=self.table,
                Key=item({"pk": f"WS#{workspace_id}", "sk": "REGULATIONS"}),
                UpdateExpression="SET endpoint = :endpoint, updated_at = :now",
                ExpressionAttributeValues=item({":endpoint": endpoint, ":now": now()}),
            )

    def unset_regulations_token(self, workspace_id: str) -> None:
        """Stop polling: the token's secret deleted at once (no recovery window), the cursor forgotten."""
        self.get_workspace(workspace_id)
        failure = "The Public API token could not be removed."
        with (
            contextlib.suppress(NotFound),
            aws_errors(failure, refused={"ResourceNotFoundException": NotFound(failure)}),
        ):
            self.clients.secrets.delete_secret(
                SecretId=self._token_secret(workspace_id), ForceDeleteWithoutRecovery=True
            )
        with aws_errors(failure):
            self.clients.dynamodb.delete_item(
                TableName=self.table, Key=item({"pk": f"WS#{workspace_id}", "sk": "REGULATIONS"})
            )

    def regulations_settings(self, workspace_id: str) -> dict[str, Any] | None:
        """{"endpoint", "cursor"?} of a workspace that polls its regulations; None if it does not."""
        stored = self._get(
            item({"pk": f"WS#{workspace_id}", "sk": "REGULATIONS"}), "Workspaces cannot be read right now."
        )
        return None if stored is None else {"endpoint": stored["endpoint"], "cursor": stored.get("cursor")}

    def regulations_token(self, workspace_id: str) -> str | None:
        failure = "The Public API token cannot be read right now."
        try:
            with aws_errors(failure, refused={"ResourceNotFoundException": NotFound(failure)}):
                secret = self.clients.secrets.get_secret_value(SecretId=self._token_secret(workspace_id))
        except NotFound:
            return None
        return str(secret["SecretString"])

    def save_regulations_cursor(self, workspace_id: str, cursor: str) -> None:
        """Move the cursor (never back: a slower run that read an older list keeps the newer cursor)."""
        try:
            with aws_errors("The regulations cursor could not be saved."):
                self.clients.dynamodb.update_item(
                    TableName=self.table,
                    Key=item({"pk": f"WS#{workspace_id}", "sk": "REGULATIONS"}),
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
        with aws_errors("Workspaces cannot be listed right now."):
            pages = self.clients.dynamodb.get_paginator("scan").paginate(
                TableName=self.table,
                FilterExpression="sk = :sk",
                ExpressionAttributeValues={":sk": {"S": "REGULATIONS"}},
            )
            return sorted(
                str(plain(stored)["pk"]).removeprefix("WS#")
                for page in pages
                for stored in page.get("Items", [])
            )

    # --- change rules (deployment-wide) ----------------------------------------------------------

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

    # --- daily counts (segment-bridge stats) -----------------------------------------------------

    def add_daily_counts(self, workspace_id: str, day: date, counts: dict[str, int]) -> None:
        """Add `counts` to the workspace's STATS#<day> item (created by the first add): one write."""
        names = sorted(counts)
        with aws_errors("The daily counts could not be kept."):
            self.clients.dynamodb.update_item(
                TableName=self.table,
                Key=item({"pk": f"WS#{workspace_id}", "sk": f"STATS#{day.isoformat()}"}),
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
