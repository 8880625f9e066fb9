"""Profiles, identity links, group memberships and event history: the processor's reads and its
single-purpose writes. Nothing here decides what a message changes or counts (processing.py does); a
conditional write that loses says so (`put_profile` returns False) instead of retrying.

ProfilesTable items (<entity> is U#<userId>, A#<anonymousId> or G#<groupId>)
    pk=WS#<ws>#<entity>   sk=PROFILE    kind, id, traits, trait_stamps, channels, preferences,
                                        preference_stamps, groups, anonymous_ids, counts, pending,
                                        first_seen, last_seen, mapping_version, version, updated_at
    pk=WS#<ws>#<entity>   sk=DELETED    deleted_at (a privacy delete; events at or before it are not
                                        applied), and either status ("erasing" | "erased") and after
                                        (the last linked previousId erased, for resuming) for the deleted
                                        entity itself, or by (the deleted U#<userId> whose link brought
                                        this id in) for its linked ids
    pk=WS#<ws>#U#<uid>    sk=IDGONE#<previousId>  gsi1pk=WS#<ws>#U#<uid> gsi1sk=IDGONE#<previousId>: an id
                                        a deletion of the user erased with it (its link is gone; kept
                                        like the tombstone, so a later delete of the user takes it again)
    pk=WS#<ws>#DELETED_IDS  sk=INDEX   epoch, ids (binary: the fingerprints of every key a delete
                                        tombstoned, deleted_ids.py), or full=true once it outgrew its item
                                        (no ids: every tombstone is read); written when the workspace is
                                        created, so a workspace without one is read as unknown too
    pk=WS#<ws>#PURGE      sk=<entity>   deleted_at, by, mark, marked_at: a deleted entity whose archived
                                        events (raw/, rejected/, unapplied/) the next purge removes;
                                        written again when a late event of it arrives, removed by the purge
    pk=WS#<ws>#G#<gid>    sk=MEMBER#<entity>   gsi1pk=WS#<ws>#<entity>  gsi1sk=GROUP#<gid>
    pk=WS#<ws>#LINK#<previousId>  sk=LINK  user_id, stamp  gsi1pk=WS#<ws>#U#<userId> gsi1sk=LINK#<previousId>
EventsTable items
    pk=WS#<ws>#<entity>   sk=MSG#<messageId>  name, type, properties, timestamp, received_at,
                                        mapping_version, expires_at (TTL)
"""

from __future__ import annotations

import uuid
from typing import Any

from segment_bridge.deleted_ids import DeletedIds, decoded
from segment_bridge.errors import ConditionFailed, Unstorable
from segment_bridge.limits import ITEM_BYTES, item_size, keys_fit
from segment_bridge.profiles import HistoryRecord, Link, Linked, PendingPurge, Profile, Stored, Tombstone
from segment_bridge.settings import Settings
from segment_bridge.store.aws import (
    Clients,
    Sleep,
    aws_errors,
    batch_get,
    batch_write,
    item,
    now,
    plain,
    query,
)
from segment_bridge.values import to_dynamo, to_json

READ_FAILURE = "Profiles cannot be read right now."
WRITE_FAILURE = "Profiles cannot be written right now."


def checked(values: dict[str, Any]) -> dict[str, Any]:
    """`values` if its keys (and gsi1's) fit DynamoDB's key limits and the item its size limit; Unstorable
    otherwise, before any call: ingest refuses such ids, this is defence in depth."""
    if not keys_fit(values["pk"], values["sk"]) or not keys_fit(
        values.get("gsi1pk", ""), values.get("gsi1sk", "")
    ):
        raise Unstorable("A key is longer than DynamoDB allows.")
    if item_size(values) > ITEM_BYTES:
        raise Unstorable("An item is larger than DynamoDB allows.")
    return values


def profile_item(
    workspace_id: str,
    kind: str,
    entity_id: str,
    profile: Profile,
    *,
    pending: dict[str, str],
    version: int,
    mapping_version: int,
) -> dict[str, Any]:
    """A profile as the ProfilesTable item `put_profile` writes."""
    return {
        "pk": f"WS#{workspace_id}#{kind}#{entity_id}",
        "sk": "PROFILE",
        "workspace_id": workspace_id,
        "kind": kind,
        "id": entity_id,
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
        "mapping_version": mapping_version,
        "version": version,
        "updated_at": now(),
    }


def _deleted_ids_key(workspace_id: str) -> dict[str, str]:
    return {"pk": f"WS#{workspace_id}#DELETED_IDS", "sk": "INDEX"}


def _entity_key(pk: str) -> str:
    """`U#<id>` (the entity key) of a pk `WS#<ws>#U#<id>`."""
    return pk.split("#", 2)[2]


def _profile(stored: dict[str, Any]) -> Profile:
    values = to_json(stored)
    return Profile(
        traits=values.get("traits", {}),
        trait_stamps={name: (stamp[0], stamp[1]) for name, stamp in values.get("trait_stamps", {}).items()},
        channels=values.get("channels", {}),
        preferences=values.get("preferences", {}),
        preference_stamps={name: (s[0], s[1]) for name, s in values.get("preference_stamps", {}).items()},
        groups=values.get("groups", {}),
        anonymous_ids=values.get("anonymous_ids", {}),
        counts=values.get("counts", {}),
        first_seen=values.get("first_seen"),
        last_seen=values.get("last_seen"),
    )


class ProfileRepository:
    def __init__(self, settings: Settings, clients: Clients, sleep: Sleep) -> None:
        self.profiles_table = settings.profiles_table
        self.events_table = settings.events_table
        self.clients = clients
        self.sleep = sleep

    # --- reads ---------------------------------------------------------------------------------

    def read_entities(
        self, workspace_id: str, keys: list[str], tombstones: list[str] | None = None
    ) -> dict[str, Stored]:
        """Each entity's profile, version and pending history, and the deletion time of the keys in
        `tombstones` (default: every key; the processor names only those its DeletedIds may hold), in as
        few BatchGetItem calls as fit. Entities with neither item are absent."""
        wanted = [{"pk": f"WS#{workspace_id}#{key}", "sk": "PROFILE"} for key in keys] + [
            {"pk": f"WS#{workspace_id}#{key}", "sk": "DELETED"}
            for key in (keys if tombstones is None else tombstones)
        ]
        out: dict[str, Stored] = {}
        for found in batch_get(
            self.clients.dynamodb, self.profiles_table, wanted, self.sleep, failure=READ_FAILURE
        ):
            stored = out.setdefault(_entity_key(found["pk"]), Stored())
            if found["sk"] == "DELETED":
                stored.deleted_at = found["deleted_at"]
            else:
                stored.profile = _profile(found)
                stored.version = int(found["version"])
                stored.pending = dict(found.get("pending", {}))
        return out

    def deletion_times(self, workspace_id: str, keys: list[str]) -> dict[str, str]:
        """Entity key -> its deletion time, for the entities deleted (their tombstones only)."""
        wanted = [{"pk": f"WS#{workspace_id}#{key}", "sk": "DELETED"} for key in keys]
        found = batch_get(
            self.clients.dynamodb,
            self.profiles_table,
            wanted,
            self.sleep,
            projection="pk, deleted_at",
            failure=READ_FAILURE,
        )
        return {_entity_key(tombstone["pk"]): str(tombstone["deleted_at"]) for tombstone in found}

    def existing_history(self, workspace_id: str, wanted: dict[str, set[str]]) -> dict[str, set[str]]:
        """For each entity key, which of the given messageIds already have a history item."""
        keys = [
            {"pk": f"WS#{workspace_id}#{key}", "sk": f"MSG#{mid}"}
            for key, mids in wanted.items()
            for mid in mids
        ]
        found: dict[str, set[str]] = {}
        for history in batch_get(
            self.clients.dynamodb,
            self.events_table,
            keys,
            self.sleep,
            projection="pk, sk",
            failure=READ_FAILURE,
        ):
            found.setdefault(_entity_key(history["pk"]), set()).add(history["sk"].removeprefix("MSG#"))
        return found

    def read_profile(self, workspace_id: str, kind: str, entity_id: str) -> Profile | None:
        key = f"{kind}#{entity_id}"
        return self.read_entities(workspace_id, [key]).get(key, Stored()).profile

    def read_history(self, workspace_id: str, kind: str, entity_id: str) -> list[dict[str, Any]]:
        """The entity's event history, oldest first (by timestamp, then messageId)."""
        found = query(
            self.clients.dynamodb,
            self.events_table,
            "pk = :pk",
            {":pk": f"WS#{workspace_id}#{kind}#{entity_id}"},
            failure=READ_FAILURE,
        )
        return sorted((to_json(history) for history in found), key=lambda h: (h["timestamp"], h["sk"]))

    def linked_ids(self, workspace_id: str, user_id: str) -> list[str]:
        """The ids (anonymous or older user ids) linked to a user by alias or identify."""
        return sorted(self._index(workspace_id, f"U#{user_id}", "LINK#"))

    def group_members(self, workspace_id: str, group_id: str) -> list[str]:
        found = query(
            self.clients.dynamodb,
            self.profiles_table,
            "pk = :pk AND begins_with(sk, :prefix)",
            {":pk": f"WS#{workspace_id}#G#{group_id}", ":prefix": "MEMBER#"},
            failure=READ_FAILURE,
        )
        return sorted(member["sk"].removeprefix("MEMBER#") for member in found)

    def _index(self, workspace_id: str, key: str, prefix: str) -> list[str]:
        """What gsi1 lists under an entity with a sort-key prefix (LINK# or GROUP#), prefix removed."""
        found = query(
            self.clients.dynamodb,
            self.profiles_table,
            "gsi1pk = :pk AND begins_with(gsi1sk, :prefix)",
            {":pk": f"WS#{workspace_id}#{key}", ":prefix": prefix},
            index="gsi1",
            failure=READ_FAILURE,
        )
        return [entry["gsi1sk"].removeprefix(prefix) for entry in found]

    # --- writes --------------------------------------------------------------------------------

    def _put_if(self, stored: dict[str, Any], condition: str, values: dict[str, Any], failure: str) -> bool:
        """Put the item (`stored`: values as `item` takes them) only if `condition` holds of the stored
        one; False if it did not."""
        try:
            with aws_errors(failure):
                self.clients.dynamodb.put_item(
                    TableName=self.profiles_table,
                    Item=item(stored),
                    ConditionExpression=condition,
                    ExpressionAttributeValues=item(values),
                )
        except ConditionFailed:
            return False
        return True

    def put_profile(
        self,
        workspace_id: str,
        kind: str,
        entity_id: str,
        profile: Profile,
        *,
        pending: dict[str, str],
        version: int,
        mapping_version: int,
    ) -> bool:
        """Write the profile as `version`, only if the stored one is still `version - 1` (or none).
        False if another writer got there first. Unstorable if DynamoDB refuses the item."""
        values = profile_item(
            workspace_id,
            kind,
            entity_id,
            profile,
            pending=pending,
            version=version,
            mapping_version=mapping_version,
        )
        condition = "attribute_not_exists(pk) OR version = :version"
        return self._put_if(to_dynamo(checked(values)), condition, {":version": version - 1}, WRITE_FAILURE)

    def record(
        self,
        workspace_id: str,
        history: dict[str, list[HistoryRecord]],
        memberships: dict[str, list[str]],
        mapping_version: int,
    ) -> None:
        """Write history items (entity key -> records) and group memberships (entity key -> group ids),
        as few BatchWriteItem calls as fit. Idempotent: the same records write the same items."""
        puts: list[tuple[str, dict[str, Any]]] = []
        for key, records in history.items():
            puts += [
                (
                    self.events_table,
                    {
                        "pk": f"WS#{workspace_id}#{key}",
                        "sk": f"MSG#{record.message_id}",
                        "name": record.name,
                        "type": record.type,
                        "properties": record.properties,
                        "timestamp": record.timestamp,
                        "received_at": record.received_at,
                        "mapping_version": mapping_version,
                        "expires_at": record.expires_at,
                    },
                )
                for record in records
            ]
        for key, groups in memberships.items():
            puts += [
                (
                    self.profiles_table,
                    {
                        "pk": f"WS#{workspace_id}#G#{group_id}",
                        "sk": f"MEMBER#{key}",
                        "gsi1pk": f"WS#{workspace_id}#{key}",
                        "gsi1sk": f"GROUP#{group_id}",
                        "mapping_version": mapping_version,
                    },
                )
                for group_id in groups
            ]
        requests = [
            (table, {"PutRequest": {"Item": item(to_dynamo(checked(values)))}}) for table, values in puts
        ]
        batch_write(self.clients.dynamodb, requests, self.sleep, failure=WRITE_FAILURE)

    def put_link(self, workspace_id: str, link: Link, mapping_version: int) -> bool:
        """previousId -> userId, unless a link at least as new is stored. False if it was not newer."""
        stamp = "#".join(link.stamp)  # fixed-width timestamp first: compares as the tuple
        values = {
            "pk": f"WS#{workspace_id}#LINK#{link.previous_id}",
            "sk": "LINK",
            "user_id": link.user_id,
            "stamp": stamp,
            "gsi1pk": f"WS#{workspace_id}#U#{link.user_id}",
            "gsi1sk": f"LINK#{link.previous_id}",
            "mapping_version": mapping_version,
        }
        condition = "attribute_not_exists(pk) OR stamp < :stamp"
        return self._put_if(
            checked(values), condition, {":stamp": stamp}, "An identity link could not be written."
        )

    # --- privacy deletes -----------------------------------------------------------------------

    def put_tombstone(
        self, workspace_id: str, key: str, deleted_at: str, *, by: str | None = None
    ) -> Tombstone:
        """Record that the entity was deleted at `deleted_at` (an erase under way), unless a deletion at
        least as late is recorded; either way, the tombstone now stored. `by`: the deleted user whose
        link brought this id in (its erase is that user's)."""
        values: dict[str, Any] = {"pk": f"WS#{workspace_id}#{key}", "sk": "DELETED", "deleted_at": deleted_at}
        values |= {"by": by} if by else {"status": "erasing"}
        condition = "attribute_not_exists(pk) OR deleted_at < :at"
        if self._put_if(
            checked(values), condition, {":at": deleted_at}, "The deletion could not be recorded."
        ):
            return Tombstone(deleted_at)
        return self._tombstone(workspace_id, key) or Tombstone(deleted_at)

    def _tombstone(self, workspace_id: str, key: str) -> Tombstone | None:
        with aws_errors(READ_FAILURE):
            found = self.clients.dynamodb.get_item(
                TableName=self.profiles_table,
                Key=item({"pk": f"WS#{workspace_id}#{key}", "sk": "DELETED"}),
                ConsistentRead=True,
            ).get("Item")
        if found is None:
            return None
        stored = plain(found)
        # Tombstones written before erases were resumable carry neither status nor by: their erase ran.
        erased = stored.get("status") == "erased" or ("status" not in stored and "by" not in stored)
        return Tombstone(str(stored["deleted_at"]), erased, stored.get("after"))

    def deleted_ids(self, workspace_id: str) -> DeletedIds:
        """The workspace's index of tombstoned keys, strongly consistent (unknown if it has none)."""
        with aws_errors(READ_FAILURE):
            found = self.clients.dynamodb.get_item(
                TableName=self.profiles_table, Key=item(_deleted_ids_key(workspace_id)), ConsistentRead=True
            ).get("Item")
        if found is None:
            return DeletedIds()
        stored = plain(found)
        if stored.get("full"):
            return decoded(int(stored["epoch"]), None)
        ids = stored.get("ids")  # absent while empty (DynamoDB's binary values are kept non-empty here)
        return decoded(int(stored["epoch"]), bytes(ids.value) if ids is not None else b"")

    def start_deleted_ids(self, workspace_id: str) -> None:
        """An empty index for a workspace that has no tombstones yet (a new one); one stored is kept."""
        try:
            with aws_errors("The workspace's deleted ids could not be recorded."):
                self.clients.dynamodb.put_item(
                    TableName=self.profiles_table,
                    Item=item(_deleted_ids_key(workspace_id) | {"epoch": 0}),
                    ConditionExpression="attribute_not_exists(pk)",
                )
        except ConditionFailed:
            pass

    def put_deleted_ids(self, workspace_id: str, index: DeletedIds, previous_epoch: int) -> bool:
        """Store the index, only if the stored one is still at `previous_epoch`; False if another delete
        changed it first."""
        values = _deleted_ids_key(workspace_id) | {
            "epoch": index.epoch,
            "ids": index.encoded() or None,
            "full": None if index.known else True,
        }
        failure = "The deletion could not be recorded."
        return self._put_if(checked(values), "epoch = :epoch", {":epoch": previous_epoch}, failure)

    def save_progress(self, workspace_id: str, key: str, tombstone: Tombstone) -> bool:
        """Record how far the erase of the deletion `tombstone` got (or that it is finished); False if a
        later deletion of the entity replaced it."""
        values = {
            "pk": f"WS#{workspace_id}#{key}",
            "sk": "DELETED",
            "deleted_at": tombstone.deleted_at,
            "status": "erased" if tombstone.erased else "erasing",
            "after": tombstone.after,
        }
        failure = "The deletion's progress could not be recorded."
        return self._put_if(checked(values), "deleted_at = :at", {":at": tombstone.deleted_at}, failure)

    def linked_page(self, workspace_id: str, user_id: str, after: str | None, limit: int) -> list[Linked]:
        """At most `limit` ids linked to the user, in key order after the cursor `after`: first the
        ids its earlier deletions took (`IDGONE#`), then its stored links (`LINK#`): in gsi1's key order,
        so what this deletion takes (IDGONE# items written behind its cursor) is not paged again."""
        if after is not None and not after.startswith(("LINK#", "IDGONE#")):
            after = f"LINK#{after}"  # a cursor recorded before erased links were kept: a previousId
        arguments: dict[str, Any] = {
            "TableName": self.profiles_table,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :pk AND gsi1sk > :after",
            "ExpressionAttributeValues": item(
                {":pk": f"WS#{workspace_id}#U#{user_id}", ":after": after or "IDGONE#"}
            ),
            "Limit": limit,
        }
        with aws_errors(READ_FAILURE):
            found = self.clients.dynamodb.query(**arguments).get("Items", [])
        keys = [str(plain(entry)["gsi1sk"]) for entry in found]
        return [
            Linked(key.split("#", 1)[1], key.startswith("LINK#"), key)
            for key in keys
            if key.startswith(("LINK#", "IDGONE#"))
        ]

    def keep_erased_links(self, workspace_id: str, user_id: str, previous_ids: list[str]) -> None:
        """Remember that the deleted user's erase took these ids (their links are gone): a later delete
        of the user, at a later time, deletes them again as of its own time."""
        requests = [
            (
                self.profiles_table,
                {
                    "PutRequest": {
                        "Item": item(
                            checked(
                                {
                                    "pk": f"WS#{workspace_id}#U#{user_id}",
                                    "sk": f"IDGONE#{previous}",
                                    "gsi1pk": f"WS#{workspace_id}#U#{user_id}",
                                    "gsi1sk": f"IDGONE#{previous}",
                                }
                            )
                        )
                    }
                },
            )
            for previous in dict.fromkeys(previous_ids)
        ]
        batch_write(self.clients.dynamodb, requests, self.sleep, failure=WRITE_FAILURE)

    def link_stamps(self, workspace_id: str, previous_ids: list[str]) -> dict[str, str]:
        """previousId -> the stamp ("<timestamp>#<messageId>") of its stored link, for those stored."""
        keys = [{"pk": f"WS#{workspace_id}#LINK#{previous}", "sk": "LINK"} for previous in previous_ids]
        found = batch_get(
            self.clients.dynamodb,
            self.profiles_table,
            keys,
            self.sleep,
            projection="pk, stamp",
            failure=READ_FAILURE,
        )
        return {str(link["pk"]).split("#LINK#", 1)[1]: str(link["stamp"]) for link in found}

    def history_index(self, workspace_id: str, key: str) -> list[tuple[str, str, str]]:
        """(messageId, name, timestamp) of each of the entity's history items."""
        found = query(
            self.clients.dynamodb,
            self.events_table,
            "pk = :pk",
            {":pk": f"WS#{workspace_id}#{key}"},
            failure=READ_FAILURE,
        )
        return [(h["sk"].removeprefix("MSG#"), str(h["name"]), str(h["timestamp"])) for h in found]

    def memberships(self, workspace_id: str, key: str) -> list[str]:
        """The groups the entity is a member of (its MEMBER# items)."""
        return self._index(workspace_id, key, "GROUP#")

    def remove(self, workspace_id: str, key: str, history: list[str], groups: list[str]) -> None:
        """Delete history items (messageIds) and memberships (group ids) of an entity."""
        doomed = [
            (self.events_table, {"pk": f"WS#{workspace_id}#{key}", "sk": f"MSG#{mid}"}) for mid in history
        ]
        doomed += [
            (self.profiles_table, {"pk": f"WS#{workspace_id}#G#{group_id}", "sk": f"MEMBER#{key}"})
            for group_id in groups
        ]
        requests = [(table, {"DeleteRequest": {"Key": item(values)}}) for table, values in doomed]
        batch_write(self.clients.dynamodb, requests, self.sleep, failure=WRITE_FAILURE)

    def remove_profile(self, workspace_id: str, key: str, version: int) -> bool:
        """Delete the entity's profile if it is still `version`; False if another writer changed it."""
        try:
            with aws_errors(WRITE_FAILURE):
                self.clients.dynamodb.delete_item(
                    TableName=self.profiles_table,
                    Key=item({"pk": f"WS#{workspace_id}#{key}", "sk": "PROFILE"}),
                    ConditionExpression="attribute_not_exists(pk) OR version = :version",
                    ExpressionAttributeValues=item({":version": version}),
                )
        except ConditionFailed:
            return False
        return True

    def remove_link(self, workspace_id: str, previous_id: str, through: str) -> bool:
        """Delete the link of `previous_id` if it was made at or before `through` (a timestamp); False if
        a newer link is stored."""
        try:
            with aws_errors("An identity link could not be deleted."):
                self.clients.dynamodb.delete_item(
                    TableName=self.profiles_table,
                    Key=item({"pk": f"WS#{workspace_id}#LINK#{previous_id}", "sk": "LINK"}),
                    # stamp is "<timestamp>#<messageId>": "$" sorts right after "#"
                    ConditionExpression="attribute_not_exists(pk) OR stamp < :bound",
                    ExpressionAttributeValues=item({":bound": f"{through}$"}),
                )
        except ConditionFailed:
            return False
        return True

    # --- the archive purge's work list -----------------------------------------------------------

    def mark_for_purge(self, workspace_id: str, keys: list[str], deleted_at: str, by: str) -> None:
        """List deleted entities whose archived events the next purge removes (again, if listed before)."""
        mark = uuid.uuid4().hex
        requests = [
            (
                self.profiles_table,
                {
                    "PutRequest": {
                        "Item": item(
                            checked(
                                {
                                    "pk": f"WS#{workspace_id}#PURGE",
                                    "sk": key,
                                    "deleted_at": deleted_at,
                                    "by": by,
                                    "mark": mark,
                                    "marked_at": now(),
                                }
                            )
                        )
                    }
                },
            )
            for key in keys
        ]
        batch_write(self.clients.dynamodb, requests, self.sleep, failure=WRITE_FAILURE)

    def relist_for_purge(self, workspace_id: str, key: str, deleted_at: str) -> None:
        """List a deleted entity for the next purge again, as of `deleted_at`, unless it is listed as of a
        later delete (never lowers what is listed): a receipt marked erased after a purge took the
        entity off the list is then purged by the next one (privacy/receipts.py)."""
        values = {
            "pk": f"WS#{workspace_id}#PURGE",
            "sk": key,
            "deleted_at": deleted_at,
            "by": key,
            "mark": uuid.uuid4().hex,
            "marked_at": now(),
        }
        condition = "attribute_not_exists(pk) OR deleted_at <= :at"
        self._put_if(checked(values), condition, {":at": deleted_at}, WRITE_FAILURE)

    def pending_purges(self, workspace_id: str) -> list[PendingPurge]:
        found = query(
            self.clients.dynamodb,
            self.profiles_table,
            "pk = :pk",
            {":pk": f"WS#{workspace_id}#PURGE"},
            failure=READ_FAILURE,
        )
        return [
            PendingPurge(
                str(p["sk"]), str(p["deleted_at"]), str(p["by"]), str(p["mark"]), str(p["marked_at"])
            )
            for p in found
        ]

    def purged(self, workspace_id: str, done: list[PendingPurge]) -> None:
        """Take purged entities off the list, unless listed again since (a late event of theirs)."""
        for pending in done:
            try:
                with aws_errors(WRITE_FAILURE):
                    self.clients.dynamodb.delete_item(
                        TableName=self.profiles_table,
                        Key=item({"pk": f"WS#{workspace_id}#PURGE", "sk": pending.key}),
                        ConditionExpression="mark = :mark",
                        ExpressionAttributeValues=item({":mark": pending.mark}),
                    )
            except ConditionFailed:
                continue
