"""The repository: every boto3 call of Segment Bridge lives here.

Clients are created lazily (never at import) and AWS errors become our own exceptions. Item shapes are
declared once, below.

WorkspacesTable items
    pk=WS#<workspace_id>  sk=WORKSPACE  workspace_id, name, created_at, keys {key_id: {hash, created_at}},
                                        shared_secret?
    pk=KEY#<sha256(key)>  sk=KEY        workspace_id, key_id, created_at
Archive bucket objects (gzip JSON lines)
    raw/workspace=<id>/date=<YYYY-MM-DD>/<request_id>-<message_id>.jsonl.gz   accepted events, one a line
    rejected/workspace=<id>/date=<YYYY-MM-DD>/<HHMMSS>-<request_id>.jsonl.gz  rejected events with reasons
EmitterDLQ messages
    {"reason", "record"}: an outbox item that could not be sent, with its full payload
"""

from __future__ import annotations

import gzip
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from segment_bridge.auth import WorkspaceAuth, hash_key, hashes_match, key_id
from segment_bridge.errors import BridgeError, Conflict, NotFound, ServiceUnavailable
from segment_bridge.settings import Settings, get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

MAX_LIVE_KEYS = 2
"""Two live keys let a workspace rotate without downtime: add the new one, move senders, revoke the old."""
MIN_KEY_LENGTH = 32
"""Keys are looked up by an unsalted hash, which is only safe for high-entropy keys."""
SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 1_048_576
SEND_ATTEMPTS = 4
_BACKOFF_SECONDS = (0.05, 0.2, 0.5)
_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"})

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


@dataclass(frozen=True, slots=True)
class Workspace:
    workspace_id: str
    name: str
    created_at: str
    key_ids: tuple[str, ...] = ()
    has_shared_secret: bool = False


@dataclass(frozen=True, slots=True)
class IssuedKey:
    workspace_id: str
    key_id: str
    api_key: str
    """Shown once, never stored."""


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in values.items() if value is not None}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _workspace_key(workspace_id: str) -> dict[str, Any]:
    return _item({"pk": f"WS#{workspace_id}", "sk": "WORKSPACE"})


def _key_key(key_hash: str) -> dict[str, Any]:
    return _item({"pk": f"KEY#{key_hash}", "sk": "KEY"})


@dataclass
class Store:
    settings: Settings
    endpoint_url: str | None = None
    sleep: Any = field(default=time.sleep, repr=False)

    @cached_property
    def _dynamodb(self) -> DynamoDBClient:
        return boto3.client("dynamodb", config=_CLIENT_CONFIG, endpoint_url=self.endpoint_url)

    @cached_property
    def _sqs(self) -> SQSClient:
        return boto3.client("sqs", config=_CLIENT_CONFIG, endpoint_url=self.endpoint_url)

    @cached_property
    def _s3(self) -> S3Client:
        return boto3.client("s3", config=_CLIENT_CONFIG, endpoint_url=self.endpoint_url)

    # --- workspaces and keys -------------------------------------------------------------------

    def workspace_for_key_hash(self, key_hash: str) -> WorkspaceAuth | None:
        """The workspace a key (by its hash) belongs to, with what authentication needs; None if unknown."""
        table = self.settings.workspaces_table
        try:
            key_item = self._dynamodb.get_item(
                TableName=table, Key=_key_key(key_hash), ConsistentRead=True
            ).get("Item")
            if key_item is None:
                return None
            record = _plain(key_item)
            workspace_item = self._dynamodb.get_item(
                TableName=table, Key=_workspace_key(record["workspace_id"]), ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("Workspaces cannot be read right now; retry the request.") from error
        if workspace_item is None:
            return None
        workspace = _plain(workspace_item)
        live = workspace.get("keys", {}).get(record["key_id"])
        if not live or not hashes_match(key_hash, live["hash"]):
            return None
        return WorkspaceAuth(
            workspace_id=record["workspace_id"], shared_secret=workspace.get("shared_secret")
        )

    def create_workspace(self, name: str, *, workspace_id: str | None = None) -> Workspace:
        workspace_id = workspace_id or f"ws_{uuid.uuid4().hex[:20]}"
        created_at = _now()
        item = _item(
            {
                "pk": f"WS#{workspace_id}",
                "sk": "WORKSPACE",
                "workspace_id": workspace_id,
                "name": name,
                "created_at": created_at,
                "keys": {},
            }
        )
        try:
            self._dynamodb.put_item(
                TableName=self.settings.workspaces_table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                raise Conflict(f"Workspace {workspace_id} already exists.") from None
            raise ServiceUnavailable("The workspace could not be created.") from error
        return Workspace(workspace_id=workspace_id, name=name, created_at=created_at)

    def get_workspace(self, workspace_id: str) -> Workspace:
        try:
            item = self._dynamodb.get_item(
                TableName=self.settings.workspaces_table,
                Key=_workspace_key(workspace_id),
                ConsistentRead=True,
            ).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("Workspaces cannot be read right now.") from error
        if item is None:
            raise NotFound(f"No workspace {workspace_id}.")
        return _workspace(_plain(item))

    def list_workspaces(self) -> Iterator[Workspace]:
        paginator = self._dynamodb.get_paginator("scan")
        pages = paginator.paginate(
            TableName=self.settings.workspaces_table,
            FilterExpression="sk = :sk",
            ExpressionAttributeValues={":sk": {"S": "WORKSPACE"}},
        )
        for page in pages:
            for item in page.get("Items", []):
                yield _workspace(_plain(item))

    def issue_key(self, workspace_id: str, api_key: str) -> IssuedKey:
        """Make `api_key` a live key of the workspace; refused once it has MAX_LIVE_KEYS keys."""
        if len(api_key) < MIN_KEY_LENGTH:
            raise ValueError(f"an API key needs at least {MIN_KEY_LENGTH} characters (use auth.new_api_key)")
        key_hash = hash_key(api_key)
        kid = key_id(key_hash)
        created_at = _now()
        table = self.settings.workspaces_table
        try:
            self._dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": table,
                            "Item": _item(
                                {
                                    "pk": f"KEY#{key_hash}",
                                    "sk": "KEY",
                                    "workspace_id": workspace_id,
                                    "key_id": kid,
                                    "created_at": created_at,
                                }
                            ),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": table,
                            "Key": _workspace_key(workspace_id),
                            "UpdateExpression": "SET #keys.#kid = :key",
                            "ConditionExpression": "attribute_exists(pk) AND size(#keys) < :max",
                            "ExpressionAttributeNames": {"#keys": "keys", "#kid": kid},
                            "ExpressionAttributeValues": _item(
                                {":key": {"hash": key_hash, "created_at": created_at}, ":max": MAX_LIVE_KEYS}
                            ),
                        }
                    },
                ]
            )
        except ClientError as error:
            if _code(error) == "TransactionCanceledException":
                self.get_workspace(workspace_id)  # NotFound if it does not exist
                raise Conflict(
                    f"Workspace {workspace_id} already has {MAX_LIVE_KEYS} live keys; revoke one first."
                ) from None
            raise ServiceUnavailable("The key could not be stored.") from error
        return IssuedKey(workspace_id=workspace_id, key_id=kid, api_key=api_key)

    def revoke_key(self, workspace_id: str, kid: str) -> None:
        workspace_item = self._dynamodb.get_item(
            TableName=self.settings.workspaces_table, Key=_workspace_key(workspace_id), ConsistentRead=True
        ).get("Item")
        if workspace_item is None:
            raise NotFound(f"No workspace {workspace_id}.")
        live = _plain(workspace_item).get("keys", {}).get(kid)
        if live is None:
            raise NotFound(f"Workspace {workspace_id} has no live key {kid}.")
        table = self.settings.workspaces_table
        try:
            self._revoke(table, workspace_id, kid, live["hash"])
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("The key could not be revoked; try again.") from error

    def _revoke(self, table: str, workspace_id: str, kid: str, key_hash: str) -> None:
        self._dynamodb.transact_write_items(
            TransactItems=[
                {"Delete": {"TableName": table, "Key": _key_key(key_hash)}},
                {
                    "Update": {
                        "TableName": table,
                        "Key": _workspace_key(workspace_id),
                        "UpdateExpression": "REMOVE #keys.#kid",
                        "ExpressionAttributeNames": {"#keys": "keys", "#kid": kid},
                    }
                },
            ]
        )

    def set_shared_secret(self, workspace_id: str, secret: str | None) -> None:
        """Set (or with None, remove) the secret Segment signs deliveries with (X-Signature)."""
        update: dict[str, Any] = (
            {"UpdateExpression": "SET shared_secret = :s", "ExpressionAttributeValues": _item({":s": secret})}
            if secret
            else {"UpdateExpression": "REMOVE shared_secret"}
        )
        try:
            self._dynamodb.update_item(
                TableName=self.settings.workspaces_table,
                Key=_workspace_key(workspace_id),
                ConditionExpression="attribute_exists(pk)",
                **update,
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                raise NotFound(f"No workspace {workspace_id}.") from None
            raise

    # --- the ingest queue ----------------------------------------------------------------------

    def enqueue(self, bodies: list[str]) -> None:
        """Put every body on the ingest queue, retrying failed entries; ServiceUnavailable if one fails."""
        for batch in _sqs_batches(bodies):
            self._send_batch(batch)

    def _send_batch(self, bodies: list[str]) -> None:
        pending = {str(index): body for index, body in enumerate(bodies)}
        for attempt in range(SEND_ATTEMPTS):
            if attempt:
                self.sleep(
                    _BACKOFF_SECONDS[min(attempt - 1, len(_BACKOFF_SECONDS) - 1)]
                    * (1 + secrets.randbelow(100) / 100)
                )
            try:
                response = self._sqs.send_message_batch(
                    QueueUrl=self.settings.ingest_queue_url,
                    Entries=[{"Id": entry_id, "MessageBody": body} for entry_id, body in pending.items()],
                )
            except (ClientError, BotoCoreError):
                continue
            failed = response.get("Failed", [])
            if any(entry.get("SenderFault") for entry in failed):
                reasons = sorted({entry.get("Code", "") for entry in failed if entry.get("SenderFault")})
                raise BridgeError(f"The queue refused a message ({', '.join(reasons)}).")
            pending = {entry["Id"]: pending[entry["Id"]] for entry in failed}
            if not pending:
                return
        raise ServiceUnavailable("The queue did not take every event; retry the request.")

    # --- the raw archive -----------------------------------------------------------------------

    def archive_raw(
        self, workspace_id: str, received_at: datetime, name: str, events: list[dict[str, Any]]
    ) -> str:
        """Keep accepted events as they were queued, so they can be replayed. The same `name` overwrites
        (a redelivered queue message archives once)."""
        key = f"raw/workspace={workspace_id}/date={received_at.astimezone(UTC):%Y-%m-%d}/{name}.jsonl.gz"
        self._put_jsonl(key, events, "Events could not be archived.")
        return key

    def _put_jsonl(self, key: str, records: list[dict[str, Any]], failure: str) -> None:
        lines = "".join(json.dumps(record, separators=(",", ":"), default=str) + "\n" for record in records)
        try:
            self._s3.put_object(
                Bucket=self.settings.archive_bucket,
                Key=key,
                Body=gzip.compress(lines.encode("utf-8"), mtime=0),
                ContentType="application/x-ndjson",
                ContentEncoding="gzip",
            )
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable(failure) from error

    def _read_jsonl(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.settings.archive_bucket, Prefix=prefix):
            for summary in page.get("Contents", []):
                body = self._s3.get_object(Bucket=self.settings.archive_bucket, Key=summary["Key"])[
                    "Body"
                ].read()
                for line in gzip.decompress(body).decode("utf-8").splitlines():
                    yield json.loads(line)

    def list_archived(self, workspace_id: str, day: date) -> Iterator[dict[str, Any]]:
        """The archived (accepted) events of a workspace received on a day (UTC)."""
        return self._read_jsonl(f"raw/workspace={workspace_id}/date={day:%Y-%m-%d}/")

    # --- parked outbound events ----------------------------------------------------------------

    def park_outbound(self, reason: str, record: dict[str, Any]) -> None:
        """Keep an outbox item that was not sent, whole, in the emitter's dead-letter queue."""
        body = json.dumps({"reason": reason, "record": record}, separators=(",", ":"), default=str)
        try:
            self._sqs.send_message(QueueUrl=self.settings.emitter_dlq_url, MessageBody=body)
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("The outbound event could not be parked.") from error

    # --- rejected events -----------------------------------------------------------------------

    def keep_rejected(
        self, workspace_id: str, request_id: str, received_at: datetime, records: list[dict[str, Any]]
    ) -> None:
        """Keep the events intake refused, with their reasons, where the CLI can list them."""
        key = (
            f"rejected/workspace={workspace_id}/date={received_at.astimezone(UTC):%Y-%m-%d}/"
            f"{received_at.astimezone(UTC):%H%M%S}-{request_id}.jsonl.gz"
        )
        self._put_jsonl(key, records, "Rejected events could not be kept; retry the request.")

    def list_rejected(self, workspace_id: str, day: date) -> Iterator[dict[str, Any]]:
        """The rejected events of a workspace on a day (UTC), oldest first."""
        return self._read_jsonl(f"rejected/workspace={workspace_id}/date={day:%Y-%m-%d}/")


def _sqs_batches(bodies: list[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for body in bodies:
        if batch and (len(batch) == SQS_BATCH_ENTRIES or size + len(body) > SQS_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(body)
        size += len(body)
    if batch:
        yield batch


def _workspace(item: dict[str, Any]) -> Workspace:
    return Workspace(
        workspace_id=item["workspace_id"],
        name=item.get("name", ""),
        created_at=item.get("created_at", ""),
        key_ids=tuple(sorted(item.get("keys", {}))),
        has_shared_secret=bool(item.get("shared_secret")),
    )


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@lru_cache(maxsize=1)
def get_store() -> Store:
    return Store(settings=get_settings())
