"""What the repositories of the ProfilesTable and EventsTable share (profiles.py, history.py, links.py,
tombstones.py): the tables and clients, the conditional put, gsi1's listing, and the checks every item
passes before any call. Every item's key is `WS#<ws>#...`; an entity is U#<userId>, A#<anonymousId> or
G#<groupId>."""

from __future__ import annotations

from typing import Any

from segment_bridge.errors import ConditionFailed, Unstorable
from segment_bridge.limits import ITEM_BYTES, item_size, keys_fit
from segment_bridge.settings import Settings
from segment_bridge.store.aws import Clients, Sleep, aws_errors, item, query

READ_FAILURE = "Profiles cannot be read right now."
WRITE_FAILURE = "Profiles cannot be written right now."


def checked(values: dict[str, Any]) -> dict[str, Any]:
    """`values` if its keys (and its indexes': gsi1's, by_time's) fit DynamoDB's key limits and the item
    its size limit; Unstorable otherwise, before any call: ingest refuses such ids, this is defence in
    depth."""
    if (
        not keys_fit(values["pk"], values["sk"])
        or not keys_fit(values.get("gsi1pk", ""), values.get("gsi1sk", ""))
        or not keys_fit(values["pk"], values.get("time_key", ""))
    ):
        raise Unstorable("A key is longer than DynamoDB allows.")
    if item_size(values) > ITEM_BYTES:
        raise Unstorable("An item is larger than DynamoDB allows.")
    return values


def entity_pk(workspace_id: str, key: str) -> str:
    """The partition of an entity's items (`key`: U#<id>, A#<id>, G#<id>)."""
    return f"WS#{workspace_id}#{key}"


def entity_key(pk: str) -> str:
    """`U#<id>` (the entity key) of a pk `WS#<ws>#U#<id>`."""
    return pk.split("#", 2)[2]


class Tables:
    """The ProfilesTable and EventsTable over the store's clients (each repository of them extends it)."""

    def __init__(self, settings: Settings, clients: Clients, sleep: Sleep) -> None:
        self.profiles_table = settings.profiles_table
        self.events_table = settings.events_table
        self.clients = clients
        self.sleep = sleep

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

    def _index(self, workspace_id: str, key: str, prefix: str) -> list[str]:
        """What gsi1 lists under an entity with a sort-key prefix (LINK# or GROUP#), prefix removed."""
        found = query(
            self.clients.dynamodb,
            self.profiles_table,
            "gsi1pk = :pk AND begins_with(gsi1sk, :prefix)",
            {":pk": entity_pk(workspace_id, key), ":prefix": prefix},
            index="gsi1",
            failure=READ_FAILURE,
        )
        return [entry["gsi1sk"].removeprefix(prefix) for entry in found]
