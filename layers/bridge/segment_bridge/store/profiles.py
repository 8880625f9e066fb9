"""Profiles (ProfilesTable), and `ProfileRepository`: the processor's and a delete's reads and
single-purpose writes over the repositories of each kind of thing they store (history.py, links.py,
tombstones.py), as one object (`Store.profiles`). Nothing here decides what a message changes or counts
(processor/ does); a conditional write that loses says so (`put_profile` returns False) instead of
retrying.

    pk=WS#<ws>#<entity>   sk=PROFILE    kind, id, traits, trait_stamps, channels, preferences,
                                        preference_stamps, groups, anonymous_ids, counts, pending,
                                        first_seen, last_seen, mapping_version, version, updated_at
(<entity> is U#<userId>, A#<anonymousId> or G#<groupId>.)
"""

from __future__ import annotations

from typing import Any

from segment_bridge.errors import ConditionFailed
from segment_bridge.profiles import Profile, Stored
from segment_bridge.store.aws import aws_errors, batch_get, item, now
from segment_bridge.store.history import HistoryRepository
from segment_bridge.store.items import READ_FAILURE, WRITE_FAILURE, checked, entity_key, entity_pk
from segment_bridge.store.links import LinkRepository
from segment_bridge.store.tombstones import TombstoneRepository, tombstone_key
from segment_bridge.values import to_dynamo, to_json


def profile_key(workspace_id: str, key: str) -> dict[str, str]:
    return {"pk": entity_pk(workspace_id, key), "sk": "PROFILE"}


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
    return profile_key(workspace_id, f"{kind}#{entity_id}") | {
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


class ProfileRepository(TombstoneRepository, HistoryRepository, LinkRepository):
    """Profiles, and (inherited) their history and memberships, links, tombstones and purge list."""

    def read_entities(
        self, workspace_id: str, keys: list[str], tombstones: list[str] | None = None
    ) -> dict[str, Stored]:
        """Each entity's profile, version and pending history, and the deletion time of the keys in
        `tombstones` (default: every key; the processor names only those its DeletedIds may hold), in as
        few BatchGetItem calls as fit. Entities with neither item are absent."""
        wanted = [profile_key(workspace_id, key) for key in keys] + [
            tombstone_key(workspace_id, key) for key in (keys if tombstones is None else tombstones)
        ]
        out: dict[str, Stored] = {}
        for found in batch_get(
            self.clients.dynamodb, self.profiles_table, wanted, self.sleep, failure=READ_FAILURE
        ):
            stored = out.setdefault(entity_key(found["pk"]), Stored())
            if found["sk"] == "DELETED":
                stored.deleted_at = found["deleted_at"]
            else:
                stored.profile = _profile(found)
                stored.version = int(found["version"])
                stored.pending = dict(found.get("pending", {}))
        return out

    def read_profile(self, workspace_id: str, kind: str, entity_id: str) -> Profile | None:
        key = f"{kind}#{entity_id}"
        return self.read_entities(workspace_id, [key]).get(key, Stored()).profile

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

    def remove_profile(self, workspace_id: str, key: str, version: int) -> bool:
        """Delete the entity's profile if it is still `version`; False if another writer changed it."""
        try:
            with aws_errors(WRITE_FAILURE):
                self.clients.dynamodb.delete_item(
                    TableName=self.profiles_table,
                    Key=item(profile_key(workspace_id, key)),
                    ConditionExpression="attribute_not_exists(pk) OR version = :version",
                    ExpressionAttributeValues=item({":version": version}),
                )
        except ConditionFailed:
            return False
        return True
