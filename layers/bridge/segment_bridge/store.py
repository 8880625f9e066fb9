"""The repository: every boto3 call of Segment Bridge lives here.

Clients are created lazily (never at import) and AWS errors become our own exceptions. Item shapes are
declared once, below.

WorkspacesTable items (continued below)
    pk=WS#<workspace_id>  sk=MAPPING    version, config (the Mapping as JSON), updated_at
ProfilesTable items (<entity> is U#<userId>, A#<anonymousId> or G#<groupId>)
    pk=WS#<ws>#<entity>   sk=PROFILE    kind, id, traits, trait_stamps, channels, preferences,
                                        preference_stamps, groups, anonymous_ids, counts, first_seen,
                                        last_seen, mapping_version, version, updated_at
    pk=WS#<ws>#<entity>   sk=DELETED    deleted_at (a privacy delete; older events are not applied)
    pk=WS#<ws>#G#<gid>    sk=MEMBER#<entity>   gsi1pk=WS#<ws>#<entity>  gsi1sk=GROUP#<gid>
    pk=WS#<ws>#LINK#<previousId>  sk=LINK  user_id, stamp  gsi1pk=WS#<ws>#U#<userId> gsi1sk=LINK#<previousId>
EventsTable items
    pk=WS#<ws>#<entity>   sk=MSG#<messageId>  name, type, properties, timestamp, received_at,
                                        mapping_version, expires_at (TTL)
WorkspacesTable items
    pk=WS#<workspace_id>  sk=WORKSPACE  workspace_id, name, created_at, keys {key_id: {hash, created_at}},
                                        shared_secret?
    pk=KEY#<sha256(key)>  sk=KEY        workspace_id, key_id, created_at
Archive bucket objects (gzip JSON lines)
    raw/workspace=<id>/date=<YYYY-MM-DD>/<request_id>-<message_id>.jsonl.gz   accepted events, one a line
    rejected/workspace=<id>/date=<YYYY-MM-DD>/<HHMMSS>-<request_id>.jsonl.gz  rejected events with reasons
EmitterDLQ messages
    {"reason", "record", "workspace_id"?, "response"?}: an outbound event that was not sent (its track
        call, or the outbox item itself when it is invalid), with Segment's answer if there was one
    or Lambda's on-failure record for a stream batch: {"requestContext", "DDBStreamBatchInfo"}
"""

from __future__ import annotations

import contextlib
import gzip
import json
import secrets
import time
import uuid
from collections import Counter
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
from segment_bridge.values import to_dynamo, to_json

# Every function imports this module, but each uses only its part of it: the processor's domain
# (profiles, mapping) and the emitter's (delivery, outbound) are imported where they are used, so no
# function loads the others' modules at cold start (benchmarks/README.md, "Cold start").
if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

    from segment_bridge.delivery import Destination
    from segment_bridge.mapping import Mapping
    from segment_bridge.outbound import ChangeRule
    from segment_bridge.profiles import Applied, Contribution, EntityPlan, HistoryRecord, Link, Plan, Profile

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


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    body: str
    receive_count: int
    sent_at: str
    receipt_handle: str = field(repr=False)


def _dead_letter(message: Any) -> DeadLetter:
    attributes = message.get("Attributes", {})
    sent = int(attributes.get("SentTimestamp", "0")) / 1000
    return DeadLetter(
        message_id=message["MessageId"],
        body=message["Body"],
        receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
        sent_at=datetime.fromtimestamp(sent, UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        receipt_handle=message["ReceiptHandle"],
    )


PEEK_SECONDS = 30
"""Listing a dead-letter queue hides each message this long at most; they are made visible at once."""
TAKE_SECONDS = 120
"""A re-drive hides the messages it works on this long; one not deleted by then is visible again."""


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


# --- profiles (the processor) ---------------------------------------------------------------------

WRITE_ATTEMPTS = 6


def _profile(item: dict[str, Any] | None) -> Profile | None:
    from segment_bridge.profiles import Profile

    if item is None:
        return None
    plain = to_json(item)
    return Profile(
        traits=plain.get("traits", {}),
        trait_stamps={name: (stamp[0], stamp[1]) for name, stamp in plain.get("trait_stamps", {}).items()},
        channels=plain.get("channels", {}),
        preferences=plain.get("preferences", {}),
        preference_stamps={name: (s[0], s[1]) for name, s in plain.get("preference_stamps", {}).items()},
        groups=plain.get("groups", {}),
        anonymous_ids=plain.get("anonymous_ids", {}),
        counts=plain.get("counts", {}),
        first_seen=plain.get("first_seen"),
        last_seen=plain.get("last_seen"),
    )


def _profile_item(
    workspace_id: str,
    entity: EntityPlan,
    profile: Profile,
    pending: dict[str, str],
    version: int,
    mapping: Mapping,
) -> dict[str, Any]:
    return _item(
        to_dynamo(
            {
                "pk": f"WS#{workspace_id}#{entity.key}",
                "sk": "PROFILE",
                "workspace_id": workspace_id,
                "kind": entity.kind,
                "id": entity.id,
                "traits": profile.traits,
                "trait_stamps": {name: list(stamp) for name, stamp in profile.trait_stamps.items()},
                "channels": profile.channels,
                "preferences": profile.preferences,
                "preference_stamps": {name: list(stamp) for name, stamp in profile.preference_stamps.items()},
                "groups": profile.groups,
                "anonymous_ids": profile.anonymous_ids,
                "counts": profile.counts,
                "pending": pending,
                "first_seen": profile.first_seen,
                "last_seen": profile.last_seen,
                "mapping_version": mapping.version,
                "version": version,
                "updated_at": _now(),
            }
        )
    )


def _history_item(
    workspace_id: str, entity: EntityPlan, record: HistoryRecord, mapping: Mapping
) -> dict[str, Any]:
    return _item(
        to_dynamo(
            {
                "pk": f"WS#{workspace_id}#{entity.key}",
                "sk": f"MSG#{record.message_id}",
                "name": record.name,
                "type": record.type,
                "properties": record.properties,
                "timestamp": record.timestamp,
                "received_at": record.received_at,
                "mapping_version": mapping.version,
                "expires_at": record.expires_at,
            }
        )
    )


def _member_item(workspace_id: str, entity: EntityPlan, group_id: str, mapping: Mapping) -> dict[str, Any]:
    return _item(
        {
            "pk": f"WS#{workspace_id}#G#{group_id}",
            "sk": f"MEMBER#{entity.key}",
            "gsi1pk": f"WS#{workspace_id}#{entity.key}",
            "gsi1sk": f"GROUP#{group_id}",
            "mapping_version": mapping.version,
        }
    )


class ProfileRepository:
    """Reads and writes of the processor. Mixed into Store; kept apart for reading."""

    settings: Settings
    sleep: Any

    @property
    def _dynamodb(self) -> DynamoDBClient:  # provided by Store
        raise NotImplementedError

    # mapping ---------------------------------------------------------------------------------------

    def get_mapping(self, workspace_id: str) -> Mapping:
        """The workspace's mapping; the defaults (version 0) if it never set one."""
        from segment_bridge.mapping import Mapping

        try:
            item = self._dynamodb.get_item(
                TableName=self.settings.workspaces_table,
                Key=_item({"pk": f"WS#{workspace_id}", "sk": "MAPPING"}),
                ConsistentRead=True,
            ).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("The mapping cannot be read right now.") from error
        if item is None:
            return Mapping()
        plain = _plain(item)
        return Mapping.model_validate_json(plain["config"]).model_copy(
            update={"version": int(plain["version"])}
        )

    def set_mapping(self, workspace_id: str, mapping: Mapping) -> Mapping:
        """Store a validated mapping as the next version, whole (one write: never half-applied)."""
        current = self.get_mapping(workspace_id)
        stored = mapping.model_copy(update={"version": current.version + 1})
        condition = "attribute_not_exists(pk)" if current.version == 0 else "version = :current"
        values = (
            {}
            if current.version == 0
            else {"ExpressionAttributeValues": _item({":current": current.version})}
        )
        try:
            self._dynamodb.put_item(
                TableName=self.settings.workspaces_table,
                Item=_item(
                    {
                        "pk": f"WS#{workspace_id}",
                        "sk": "MAPPING",
                        "version": stored.version,
                        "config": stored.model_dump_json(exclude={"version"}),
                        "updated_at": _now(),
                    }
                ),
                ConditionExpression=condition,
                **values,  # type: ignore[arg-type]
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                raise Conflict("The mapping changed meanwhile; read it again and retry.") from None
            raise ServiceUnavailable("The mapping could not be stored.") from error
        return stored

    # applying a plan -------------------------------------------------------------------------------

    def apply_plan(self, workspace_id: str, plan: Plan, mapping: Mapping) -> Applied:
        from segment_bridge.profiles import Applied

        applied = Applied()
        for deletion in plan.deletions:
            self.delete_identity(workspace_id, deletion.key, deletion.timestamp)
            applied.deletions += 1
        latest: dict[str, Link] = {}
        for link in plan.links:  # one write per previousId and message: the latest link wins anyway
            if link.previous_id not in latest or link.stamp > latest[link.previous_id].stamp:
                latest[link.previous_id] = link
        for link in latest.values():
            self._put_link(workspace_id, link, mapping)
        applied.links += len(plan.links)
        current = self._read_entities(workspace_id, list(plan.entities))
        stored = {key: current.get(key, _Stored()) for key in plan.entities}
        changes = {key: entity.changes(stored[key].deleted_at) for key, entity in plan.entities.items()}
        wanted = {key: {r.message_id for r in changes[key][1]} | set(stored[key].pending) for key in changes}
        existing = self.existing_history(workspace_id, wanted)
        items: list[tuple[str, dict[str, Any]]] = []
        for key, entity in plan.entities.items():
            change, history, dropped = changes[key]
            applied.unapplied.extend(_unapplied(dropped, f"the user was deleted at {stored[key].deleted_at}"))
            if dropped and change.first_seen is None:
                continue  # everything this entity got was older than its deletion
            try:
                counted, duplicates, to_write = self._write_profile(
                    workspace_id, entity, stored[key], existing.get(key, set()), change, history, mapping
                )
            except _Unstorable as error:
                applied.unapplied.extend(_unapplied(entity.contributions, error.reason))
                continue
            items += to_write
            applied.entities += 1
            applied.history_written += counted
            applied.duplicates += duplicates
        # Only after every profile write: their `pending` lists make this step safe to crash and redo.
        self._batch_write([(table, {"PutRequest": {"Item": item}}) for table, item in items])
        return applied

    def existing_history(self, workspace_id: str, wanted: dict[str, set[str]]) -> dict[str, set[str]]:
        """For each entity, which of the given messageIds already have a history item."""
        keys = [
            {"pk": f"WS#{workspace_id}#{key}", "sk": f"MSG#{mid}"}
            for key, mids in wanted.items()
            for mid in mids
        ]
        found: dict[str, set[str]] = {}
        for item in self._batch_get(self.settings.events_table, keys, "pk, sk"):
            found.setdefault(item["pk"].split("#", 2)[2], set()).add(item["sk"].removeprefix("MSG#"))
        return found

    def _read_entities(self, workspace_id: str, keys: list[str]) -> dict[str, _Stored]:
        """Each entity's profile, version, pending history and deletion time, in as few BatchGetItem
        calls as fit."""
        wanted = [
            {"pk": f"WS#{workspace_id}#{key}", "sk": sk} for key in keys for sk in ("PROFILE", "DELETED")
        ]
        out: dict[str, _Stored] = {}
        for item in self._batch_get(self.settings.profiles_table, wanted):
            stored = out.setdefault(item["pk"].split("#", 2)[2], _Stored())
            if item["sk"] == "DELETED":
                stored.deleted_at = item["deleted_at"]
            else:
                stored.profile = _profile(item)
                stored.version = int(item["version"])
                stored.pending = dict(item.get("pending", {}))
        return out

    def _batch_get(
        self, table: str, keys: list[dict[str, Any]], projection: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Strongly consistent BatchGetItem of any number of keys, unprocessed keys retried."""
        for start in range(0, len(keys), 100):
            wanted: dict[str, Any] = {
                "Keys": [_item(key) for key in keys[start : start + 100]],
                "ConsistentRead": True,
            }
            if projection:
                wanted["ProjectionExpression"] = projection
            request: dict[str, Any] = {table: wanted}
            while request:
                try:
                    response = self._dynamodb.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as error:
                    raise ServiceUnavailable("Profiles cannot be read right now.") from error
                for item in response.get("Responses", {}).get(table, []):
                    yield _plain(item)
                request = dict(response.get("UnprocessedKeys") or {})
                if request:
                    self.sleep(0.05)

    def _write_profile(
        self,
        workspace_id: str,
        entity: EntityPlan,
        stored: _Stored,
        existing: set[str],
        change: Profile,
        history: list[HistoryRecord],
        mapping: Mapping,
    ) -> tuple[int, int, list[tuple[str, dict[str, Any]]]]:
        """Merge `change` and the new history into the entity's profile in one conditional write, and
        return the history and membership items to write after it. No transaction, and still exact:

        the profile write counts the new records and lists them as `pending` (a write-ahead log); their
        history items are written after it. A record whose history item exists, or that is pending, is
        never counted again, so a redelivery after a crash between the two steps finishes the history
        without counting twice; pending entries are dropped once their items are seen. The write is
        conditional on the version read (optimistic locking across concurrent invocations).
        Returns (records counted, records already known, items to write)."""
        from segment_bridge.profiles import Profile, merge

        records = {record.message_id: record for record in history}
        for _ in range(WRITE_ATTEMPTS):
            new = [
                record for mid, record in records.items() if mid not in existing and mid not in stored.pending
            ]
            pending = {mid: name for mid, name in stored.pending.items() if mid not in existing}
            pending |= {record.message_id: record.name for record in new}
            updated = merge(stored.profile or Profile(), change)
            updated.counts = dict(updated.counts)
            for name, count in Counter(record.name for record in new).items():
                updated.counts[name] = updated.counts.get(name, 0) + count
            if stored.profile is None or updated != stored.profile or pending != stored.pending:
                try:
                    self._dynamodb.put_item(
                        TableName=self.settings.profiles_table,
                        Item=_profile_item(
                            workspace_id, entity, updated, pending, stored.version + 1, mapping
                        ),
                        ConditionExpression="attribute_not_exists(pk) OR version = :version",
                        ExpressionAttributeValues=_item({":version": stored.version}),
                    )
                except ClientError as error:
                    if _code(error) == "ConditionalCheckFailedException":  # another invocation wrote first
                        stored = self._read_entities(workspace_id, [entity.key]).get(entity.key, _Stored())
                        wanted = {entity.key: set(records) | set(stored.pending)}
                        existing = self.existing_history(workspace_id, wanted).get(entity.key, set())
                        continue
                    if _code(error) == "ValidationException":
                        raise _Unstorable("the profile is larger or deeper than DynamoDB allows") from None
                    raise ServiceUnavailable("Profiles cannot be written right now.") from error
                except BotoCoreError as error:
                    raise ServiceUnavailable("Profiles cannot be written right now.") from error
            events, profiles = self.settings.events_table, self.settings.profiles_table
            items = [
                (events, _history_item(workspace_id, entity, record, mapping))
                for mid, record in records.items()
                if mid not in existing
            ]
            items += [
                (profiles, _member_item(workspace_id, entity, group, mapping)) for group in change.groups
            ]
            return len(new), len(records) - len(new), items
        raise ServiceUnavailable(f"Profile {entity.kind} kept changing while being written; retry later.")

    def _batch_write(self, requests: list[tuple[str, dict[str, Any]]]) -> None:
        """BatchWriteItem of any number of put or delete requests, unprocessed items retried."""
        for start in range(0, len(requests), 25):
            request: dict[str, Any] = {}
            for table, entry in requests[start : start + 25]:
                request.setdefault(table, []).append(entry)
            while request:
                try:
                    response = self._dynamodb.batch_write_item(RequestItems=request)
                except ClientError as error:
                    if _code(error) == "ValidationException":
                        raise _Unstorable("an item is larger or deeper than DynamoDB allows") from None
                    raise ServiceUnavailable("Profiles cannot be written right now.") from error
                except BotoCoreError as error:
                    raise ServiceUnavailable("Profiles cannot be written right now.") from error
                request = dict(response.get("UnprocessedItems") or {})
                if request:
                    self.sleep(0.05)

    def _put_link(self, workspace_id: str, link: Link, mapping: Mapping) -> None:
        """previousId -> userId; a later alias (by timestamp) wins, an older or repeated one does nothing."""
        try:
            self._dynamodb.put_item(
                TableName=self.settings.profiles_table,
                Item=_item(
                    {
                        "pk": f"WS#{workspace_id}#LINK#{link.previous_id}",
                        "sk": "LINK",
                        "user_id": link.user_id,
                        "stamp": "#".join(link.stamp),  # fixed-width timestamp first: compares as the tuple
                        "gsi1pk": f"WS#{workspace_id}#U#{link.user_id}",
                        "gsi1sk": f"LINK#{link.previous_id}",
                        "mapping_version": mapping.version,
                    }
                ),
                ConditionExpression="attribute_not_exists(pk) OR stamp < :stamp",
                ExpressionAttributeValues=_item({":stamp": "#".join(link.stamp)}),
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise ServiceUnavailable("An identity link could not be written.") from error

    # privacy deletes -------------------------------------------------------------------------------

    def delete_identity(self, workspace_id: str, key: str, deleted_at: str) -> None:
        """Remove a user's profile, history, counts, memberships and links, and the identities linked to
        it; leave a tombstone so that older events arriving later are not applied."""
        profiles, events = self.settings.profiles_table, self.settings.events_table
        pk = f"WS#{workspace_id}#{key}"
        try:
            self._dynamodb.put_item(
                TableName=profiles,
                Item=_item({"pk": pk, "sk": "DELETED", "deleted_at": deleted_at}),
                ConditionExpression="attribute_not_exists(pk) OR deleted_at < :at",
                ExpressionAttributeValues=_item({":at": deleted_at}),
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise ServiceUnavailable("The deletion could not be recorded.") from error
        doomed: list[tuple[str, dict[str, Any]]] = []
        identities = [key]
        if key.startswith("U#"):
            links = self._query(
                profiles,
                "gsi1",
                "gsi1pk = :pk AND begins_with(gsi1sk, :prefix)",
                {":pk": pk, ":prefix": "LINK#"},
            )
            for link in links:
                previous = link["gsi1sk"].removeprefix("LINK#")
                doomed.append((profiles, {"pk": link["pk"], "sk": "LINK"}))
                identities += [f"A#{previous}", f"U#{previous}"]
        for identity in identities:
            identity_pk = f"WS#{workspace_id}#{identity}"
            memberships = self._query(
                profiles,
                "gsi1",
                "gsi1pk = :pk AND begins_with(gsi1sk, :prefix)",
                {":pk": identity_pk, ":prefix": "GROUP#"},
            )
            doomed += [(profiles, {"pk": m["pk"], "sk": m["sk"]}) for m in memberships]
            doomed.append((profiles, {"pk": identity_pk, "sk": "PROFILE"}))
            doomed += [
                (events, {"pk": h["pk"], "sk": h["sk"]})
                for h in self._query(events, None, "pk = :pk", {":pk": identity_pk})
            ]
        doomed.append((profiles, {"pk": f"WS#{workspace_id}#LINK#{key.split('#', 1)[1]}", "sk": "LINK"}))
        self._delete_all(doomed)

    def _query(
        self, table: str, index: str | None, condition: str, values: dict[str, Any]
    ) -> list[dict[str, Any]]:
        paginator = self._dynamodb.get_paginator("query")
        arguments: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": _item(values),
        }
        if index:
            arguments["IndexName"] = index
        try:
            return [
                _plain(item) for page in paginator.paginate(**arguments) for item in page.get("Items", [])
            ]
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("Profiles cannot be read right now.") from error

    def _delete_all(self, keys: list[tuple[str, dict[str, Any]]]) -> None:
        self._batch_write([(table, {"DeleteRequest": {"Key": _item(key)}}) for table, key in keys])

    # reading ---------------------------------------------------------------------------------------

    def read_profile(self, workspace_id: str, kind: str, entity_id: str) -> Profile | None:
        key = f"{kind}#{entity_id}"
        return self._read_entities(workspace_id, [key]).get(key, _Stored()).profile

    def read_history(self, workspace_id: str, kind: str, entity_id: str) -> list[dict[str, Any]]:
        """The entity's event history, oldest first (by timestamp, then messageId)."""
        items = self._query(
            self.settings.events_table, None, "pk = :pk", {":pk": f"WS#{workspace_id}#{kind}#{entity_id}"}
        )
        return sorted((to_json(item) for item in items), key=lambda item: (item["timestamp"], item["sk"]))

    def linked_ids(self, workspace_id: str, user_id: str) -> list[str]:
        """The ids (anonymous or older user ids) linked to a user by alias or identify."""
        links = self._query(
            self.settings.profiles_table,
            "gsi1",
            "gsi1pk = :pk AND begins_with(gsi1sk, :prefix)",
            {":pk": f"WS#{workspace_id}#U#{user_id}", ":prefix": "LINK#"},
        )
        return sorted(link["gsi1sk"].removeprefix("LINK#") for link in links)

    def group_members(self, workspace_id: str, group_id: str) -> list[str]:
        items = self._query(
            self.settings.profiles_table,
            None,
            "pk = :pk AND begins_with(sk, :prefix)",
            {":pk": f"WS#{workspace_id}#G#{group_id}", ":prefix": "MEMBER#"},
        )
        return sorted(item["sk"].removeprefix("MEMBER#") for item in items)


@dataclass
class _Stored:
    """An entity as read: its profile, the version to write against, history counted but not yet
    confirmed written (`pending`: messageId -> name), and when it was deleted (privacy), if ever."""

    profile: Profile | None = None
    version: int = 0
    pending: dict[str, str] = field(default_factory=dict)
    deleted_at: str | None = None


class _Unstorable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _unapplied(contributions: list[Contribution], reason: str) -> list[dict[str, Any]]:
    return [{"reason": reason, "event": c.event} for c in contributions if c.event is not None]


@dataclass
class Store(ProfileRepository):
    """`session` and `endpoint_url` let the CLI aim a Store at a stack of its choosing (a deployed one
    with the operator's credentials, or the local stack); functions use the defaults."""

    settings: Settings
    endpoint_url: str | None = None
    sleep: Any = field(default=time.sleep, repr=False)
    session: boto3.session.Session | None = field(default=None, repr=False)

    def _client(self, service: str) -> Any:
        factory = self.session.client if self.session is not None else boto3.client
        return factory(service, config=_CLIENT_CONFIG, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]

    @cached_property
    def _dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self._client("dynamodb")
        return client

    @cached_property
    def _sqs(self) -> SQSClient:
        client: SQSClient = self._client("sqs")
        return client

    @cached_property
    def _secrets(self) -> SecretsManagerClient:
        client: SecretsManagerClient = self._client("secretsmanager")
        return client

    @cached_property
    def _s3(self) -> S3Client:
        client: S3Client = self._client("s3")
        return client

    @cached_property
    def _streams(self) -> DynamoDBStreamsClient:
        client: DynamoDBStreamsClient = self._client("dynamodbstreams")
        return client

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

    # --- the workspace's Segment destination (outbound) -----------------------------------------

    def _write_key_secret(self, workspace_id: str) -> str:
        return f"{self.settings.secrets_prefix}/{workspace_id}/write-key"

    def set_segment_destination(self, workspace_id: str, write_key: str, endpoint: str = "us") -> None:
        """Where the workspace's outbound events go: its Segment source's write key (kept as a secret)
        and `us`, `eu` or an explicit URL."""
        from segment_bridge.outbound import endpoint_url

        endpoint_url(endpoint)  # refuses anything else
        self.get_workspace(workspace_id)
        name = self._write_key_secret(workspace_id)
        try:
            try:
                self._secrets.put_secret_value(SecretId=name, SecretString=write_key)
            except ClientError as error:
                if _code(error) != "ResourceNotFoundException":
                    raise
                self._secrets.create_secret(Name=name, SecretString=write_key)
            self._dynamodb.update_item(
                TableName=self.settings.workspaces_table,
                Key=_workspace_key(workspace_id),
                UpdateExpression="SET segment_endpoint = :endpoint",
                ExpressionAttributeValues=_item({":endpoint": endpoint}),
            )
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("The Segment destination could not be stored.") from error

    def segment_destination(self, workspace_id: str) -> Destination | None:
        """The workspace's /v1/batch URL and write key; None if it has none."""
        from segment_bridge.delivery import Destination
        from segment_bridge.outbound import endpoint_url

        try:
            item = self._dynamodb.get_item(
                TableName=self.settings.workspaces_table, Key=_workspace_key(workspace_id)
            ).get("Item")
            endpoint = _plain(item).get("segment_endpoint") if item else None
            if not endpoint:
                return None
            secret = self._secrets.get_secret_value(SecretId=self._write_key_secret(workspace_id))
        except ClientError as error:
            if _code(error) == "ResourceNotFoundException":
                return None
            raise ServiceUnavailable("The Segment destination cannot be read right now.") from error
        except BotoCoreError as error:
            raise ServiceUnavailable("The Segment destination cannot be read right now.") from error
        return Destination(url=endpoint_url(endpoint), write_key=secret["SecretString"])

    def put_change_rule(self, rule: ChangeRule) -> None:
        """Add or replace a change rule (deployment-wide: its `workspace` path says whose event it is)."""
        self._put_config({"pk": "RULES", "sk": f"RULE#{rule.name}", "config": rule.model_dump_json()})

    def delete_change_rule(self, name: str) -> None:
        try:
            self._dynamodb.delete_item(
                TableName=self.settings.workspaces_table, Key=_item({"pk": "RULES", "sk": f"RULE#{name}"})
            )
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("The change rule could not be deleted.") from error

    def change_rules(self) -> list[ChangeRule]:
        from segment_bridge.outbound import ChangeRule

        items = self._query(self.settings.workspaces_table, None, "pk = :pk", {":pk": "RULES"})
        return [ChangeRule.model_validate_json(item["config"]) for item in items]

    def _put_config(self, item: dict[str, Any]) -> None:
        try:
            self._dynamodb.put_item(
                TableName=self.settings.workspaces_table, Item=_item(item | {"updated_at": _now()})
            )
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("The configuration could not be stored.") from error

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
        key = f"{_day_prefix('raw', workspace_id, received_at)}{name}.jsonl.gz"
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
        for records in self._objects_jsonl(prefix):
            yield from records

    def _objects_jsonl(self, prefix: str) -> Iterator[list[dict[str, Any]]]:
        """Each object under `prefix` (gzip JSON lines) as a list of records, in key order."""
        bucket = self.settings.archive_bucket
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for summary in page.get("Contents", []):
                    body = self._s3.get_object(Bucket=bucket, Key=summary["Key"])["Body"].read()
                    yield [json.loads(line) for line in gzip.decompress(body).decode("utf-8").splitlines()]
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("The archive cannot be read right now.") from error

    def keep_unapplied(
        self, workspace_id: str, received_at: datetime, name: str, records: list[dict[str, Any]]
    ) -> None:
        """Keep events the mapping could not apply, with their reasons (unapplied/, like rejected/)."""
        key = f"{_day_prefix('unapplied', workspace_id, received_at)}{name}.jsonl.gz"
        self._put_jsonl(key, records, "Unapplied events could not be kept.")

    def list_unapplied(self, workspace_id: str, day: date) -> Iterator[dict[str, Any]]:
        return self._read_jsonl(_day_prefix("unapplied", workspace_id, day))

    def list_archived(self, workspace_id: str, day: date) -> Iterator[dict[str, Any]]:
        """The archived (accepted) events of a workspace received on a day (UTC)."""
        return self._read_jsonl(_day_prefix("raw", workspace_id, day))

    def count_archived(self, workspace_id: str, day: date) -> int:
        """How many archived batches (objects) a day holds."""
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            pages = paginator.paginate(
                Bucket=self.settings.archive_bucket, Prefix=_day_prefix("raw", workspace_id, day)
            )
            return sum(page.get("KeyCount", 0) for page in pages)
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("The archive cannot be read right now.") from error

    def archived_batches(self, workspace_id: str, day: date) -> Iterator[list[dict[str, Any]]]:
        """The archived events of a day, one list per archived queue message (as they were applied)."""
        return self._objects_jsonl(_day_prefix("raw", workspace_id, day))

    # --- parked outbound events ----------------------------------------------------------------

    def park_outbound(
        self,
        reason: str,
        record: dict[str, Any],
        response: dict[str, Any] | None = None,
        workspace_id: str | None = None,
    ) -> None:
        """Keep an outbound event that was not sent, whole, with the reason, its workspace and Segment's
        answer, in the emitter's dead-letter queue (the CLI lists and re-drives it)."""
        parked: dict[str, Any] = {"reason": reason, "record": record}
        if workspace_id is not None:
            parked["workspace_id"] = workspace_id
        if response is not None:
            parked["response"] = response
        body = json.dumps(parked, separators=(",", ":"), default=str)
        try:
            self._sqs.send_message(QueueUrl=self.settings.emitter_dlq_url, MessageBody=body)
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("The outbound event could not be parked.") from error

    # --- dead letters (the operator's view of both DLQs) ----------------------------------------

    def peek_dead_letters(self, queue_url: str, limit: int = 100) -> list[DeadLetter]:
        """Up to `limit` messages of a dead-letter queue, left on it (visible again at once)."""
        seen: dict[str, DeadLetter] = {}
        try:
            while len(seen) < limit:
                messages = self._receive(queue_url, min(10, limit - len(seen)), PEEK_SECONDS)
                fresh = [m for m in messages if m["MessageId"] not in seen]
                if not fresh:
                    break
                for message in fresh:
                    seen[message["MessageId"]] = _dead_letter(message)
        finally:
            self.release_dead_letters(queue_url, list(seen.values()))
        return list(seen.values())

    def take_dead_letters(self, queue_url: str, count: int = 10) -> list[DeadLetter]:
        """Up to `count` messages, hidden for TAKE_SECONDS: delete each once it is dealt with, or it
        returns to the queue."""
        return [_dead_letter(m) for m in self._receive(queue_url, min(count, 10), TAKE_SECONDS)]

    def _receive(self, queue_url: str, count: int, hide_seconds: int) -> list[Any]:
        try:
            return self._sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=count,
                VisibilityTimeout=hide_seconds,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            ).get("Messages", [])
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("The dead-letter queue cannot be read right now.") from error

    def release_dead_letters(self, queue_url: str, letters: list[DeadLetter]) -> None:
        """Make messages taken or peeked at visible again at once."""
        for letter in letters:
            # On failure it becomes visible again when its visibility timeout ends anyway.
            with contextlib.suppress(ClientError, BotoCoreError):
                self._sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=letter.receipt_handle, VisibilityTimeout=0
                )

    def requeue(self, queue_url: str, letters: list[DeadLetter]) -> None:
        """Send dead letters, as they are, to `queue_url` (the queue they came from)."""
        try:
            response = self._sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(n), "MessageBody": letter.body} for n, letter in enumerate(letters)],
            )
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("The messages could not be sent back to their queue.") from error
        if response.get("Failed"):
            raise ServiceUnavailable("The queue did not take every message back; nothing was lost.")

    def delete_dead_letters(self, queue_url: str, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        try:
            self._sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": letter.receipt_handle} for n, letter in enumerate(letters)
                ],
            )
        except (ClientError, BotoCoreError) as error:
            raise ServiceUnavailable("Dead letters could not be deleted; they stay on the queue.") from error

    # --- the outbox and its stream ------------------------------------------------------------

    def publish(self, item: dict[str, Any]) -> None:
        """Write an outbox item, as the product does. An item with the same keys is left as it was (an
        outbox item is sent once, when it is first written)."""
        try:
            self._dynamodb.put_item(
                TableName=self.settings.outbox_table,
                Item=_item(item),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                raise Conflict(f"The outbox already holds {item['pk']} / {item['sk']}.") from None
            raise ServiceUnavailable("The outbox item could not be written.") from error
        except BotoCoreError as error:
            raise ServiceUnavailable("The outbox item could not be written.") from error

    def stream_records(self, stream_arn: str, shard_id: str, first: str, last: str) -> list[dict[str, Any]]:
        """A stream's records from sequence number `first` to `last` of one shard (what a stream's
        on-failure record points at); fewer, or none, once the stream no longer keeps them (24 h)."""
        records: list[dict[str, Any]] = []
        try:
            iterator: str | None = self._streams.get_shard_iterator(
                StreamArn=stream_arn,
                ShardId=shard_id,
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber=first,
            )["ShardIterator"]
            while iterator:
                page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                batch = page.get("Records", [])
                for record in batch:
                    if int(record["dynamodb"]["SequenceNumber"]) > int(last):
                        return records
                    records.append(dict(record))
                if not batch:
                    break
                iterator = page.get("NextShardIterator")
        except ClientError as error:
            if _code(error) in ("TrimmedDataAccessException", "ResourceNotFoundException"):
                return records
            raise ServiceUnavailable("The outbox stream cannot be read right now.") from error
        except BotoCoreError as error:
            raise ServiceUnavailable("The outbox stream cannot be read right now.") from error
        return records

    # --- rejected events -----------------------------------------------------------------------

    def keep_rejected(
        self, workspace_id: str, request_id: str, received_at: datetime, records: list[dict[str, Any]]
    ) -> None:
        """Keep the events intake refused, with their reasons, where the CLI can list them."""
        moment = received_at.astimezone(UTC)
        key = f"{_day_prefix('rejected', workspace_id, received_at)}{moment:%H%M%S}-{request_id}.jsonl.gz"
        self._put_jsonl(key, records, "Rejected events could not be kept; retry the request.")

    def list_rejected(self, workspace_id: str, day: date) -> Iterator[dict[str, Any]]:
        """The rejected events of a workspace on a day (UTC), oldest first."""
        return self._read_jsonl(_day_prefix("rejected", workspace_id, day))


def _day_prefix(kind: str, workspace_id: str, day: date) -> str:
    """Archive objects are partitioned by kind, workspace and UTC day (Athena/Glue-style key=value)."""
    utc_day = day.astimezone(UTC).date() if isinstance(day, datetime) else day
    return f"{kind}/workspace={workspace_id}/date={utc_day:%Y-%m-%d}/"


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
