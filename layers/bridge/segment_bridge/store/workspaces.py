"""Workspaces themselves: their items in the WorkspacesTable, their names, and their offboarding state.
What else a workspace keeps sits beside, one module per kind: credentials.py (API keys, read tokens, the
shared secret), mappings.py, destinations.py (its Segment write key), regulations.py (the opt-in poll),
counts.py (daily counts); rules.py holds the deployment's change rules.

WorkspacesTable items
    pk=WS#<workspace_id>  sk=WORKSPACE  workspace_id, name, created_at, keys {key_id: {hash, created_at}},
                                        read_tokens? {token_id: {hash, created_at}}, shared_secret?,
                                        segment_endpoint?, state? ("offboarding", with offboarding_job and
                                        offboarding_at: `workspaces delete` began)
Secrets Manager: <SECRETS_PREFIX>/<workspace_id>/write-key (destinations.py),
                 <SECRETS_PREFIX>/<workspace_id>/public-api-token (regulations.py)
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from segment_bridge.errors import Conflict, InvalidWorkspaceId, NotFound
from segment_bridge.limits import MAX_WORKSPACE_ID_BYTES, WORKSPACE_ID_PATTERN, valid_workspace_id
from segment_bridge.settings import Settings
from segment_bridge.store.aws import Clients, aws_errors, item, now, plain

OFFBOARDING = "offboarding"
"""A workspace's state once its offboarding began: no key authenticates it, the processor applies none of
its messages, and it cannot get a key again (jobs/offboard.py)."""


@dataclass(frozen=True, slots=True)
class Workspace:
    workspace_id: str
    name: str
    created_at: str
    key_ids: tuple[str, ...] = ()
    has_shared_secret: bool = False
    read_token_ids: tuple[str, ...] = ()


def same_name(one: str, other: str) -> bool:
    """Whether two workspace names read as one: Unicode-compatible forms, case and spacing aside."""
    return _name_key(one) == _name_key(other)


def _name_key(name: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def workspace_key(workspace_id: str) -> dict[str, Any]:
    return item({"pk": f"WS#{workspace_id}", "sk": "WORKSPACE"})


def config_key(workspace_id: str, sk: str) -> dict[str, Any]:
    """The key of one of the workspace's own configuration items (MAPPING, REGULATIONS, STATS#<day>)."""
    return item({"pk": f"WS#{workspace_id}", "sk": sk})


def write_key_secret(secrets_prefix: str, workspace_id: str) -> str:
    """The name of the secret holding the workspace's Segment write key (its outbound destination)."""
    return f"{secrets_prefix}/{workspace_id}/write-key"


def token_secret(secrets_prefix: str, workspace_id: str) -> str:
    """The name of the secret holding the workspace's Segment Public API token (the regulations poll)."""
    return f"{secrets_prefix}/{workspace_id}/public-api-token"


def _workspace(stored: dict[str, Any]) -> Workspace:
    return Workspace(
        workspace_id=stored["workspace_id"],
        name=stored.get("name", ""),
        created_at=stored.get("created_at", ""),
        key_ids=tuple(sorted(stored.get("keys", {}))),
        has_shared_secret=bool(stored.get("shared_secret")),
        read_token_ids=tuple(sorted(stored.get("read_tokens", {}))),
    )


class WorkspacesTable:
    """What every repository of the WorkspacesTable shares: the table, the clients, a read, and the
    workspace's own item."""

    def __init__(self, settings: Settings, clients: Clients) -> None:
        self.settings = settings
        self.table = settings.workspaces_table
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
        stored = self._get(workspace_key(workspace_id), "Workspaces cannot be read right now.")
        if stored is None:
            raise NotFound(f"No workspace {workspace_id}.")
        return stored

    def _scan_sk(self, sk: str, failure: str) -> list[dict[str, Any]]:
        """Every item of the table with this sort key (a scan: operators' and schedules' calls, not
        traffic's)."""
        with aws_errors(failure):
            pages = self.clients.dynamodb.get_paginator("scan").paginate(
                TableName=self.table,
                FilterExpression="sk = :sk",
                ExpressionAttributeValues={":sk": {"S": sk}},
            )
            return [plain(stored) for page in pages for stored in page.get("Items", [])]


class WorkspaceRepository(WorkspacesTable):
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
        found = self._scan_sk("WORKSPACE", "Workspaces cannot be listed right now.")
        return iter([_workspace(stored) for stored in found])

    # --- offboarding (jobs/offboard.py) ----------------------------------------------------------

    def begin_offboarding(self, workspace_id: str, job_id: str) -> tuple[str, list[str]]:
        """Mark the workspace offboarding: from now on no key authenticates it and the processor applies
        none of its messages. The job marking it and the ids of its live keys (for the caller to revoke,
        CredentialRepository.revoke_key): the job already marking it if it was (a second `workspaces
        delete` resumes it). NotFound if there is no such workspace."""
        stored = self._workspace_item(workspace_id)
        keys = sorted(stored.get("keys", {}))
        if stored.get("state") == OFFBOARDING:
            return str(stored["offboarding_job"]), keys
        refused = {"ConditionalCheckFailedException": NotFound(f"No workspace {workspace_id}.")}
        with aws_errors("The workspace could not be marked for deletion.", refused=refused):
            self.clients.dynamodb.update_item(
                TableName=self.table,
                Key=workspace_key(workspace_id),
                UpdateExpression="SET #state = :state, offboarding_job = :job, offboarding_at = :now",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(#state)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=item({":state": OFFBOARDING, ":job": job_id, ":now": now()}),
            )
        return job_id, keys

    def is_open(self, workspace_id: str) -> bool:
        """Whether the workspace exists and is not being deleted (the processor applies a message only
        then): one consistent read of its item's state."""
        if not valid_workspace_id(workspace_id):
            return False
        with aws_errors("Workspaces cannot be read right now."):
            found = self.clients.dynamodb.get_item(
                TableName=self.table,
                Key=workspace_key(workspace_id),
                ConsistentRead=True,
                ProjectionExpression="pk, #state",
                ExpressionAttributeNames={"#state": "state"},
            ).get("Item")
        return found is not None and plain(found).get("state") != OFFBOARDING

    def secret_names(self, workspace_id: str) -> list[str]:
        """The names of every secret the workspace may have (offboarding deletes them)."""
        prefix = self.settings.secrets_prefix
        return [write_key_secret(prefix, workspace_id), token_secret(prefix, workspace_id)]

    def forget_workspace(self, workspace_id: str) -> None:
        """The workspace's own item deleted: offboarding's last write."""
        with aws_errors("The workspace could not be deleted."):
            self.clients.dynamodb.delete_item(TableName=self.table, Key=workspace_key(workspace_id))
