"""Identity links (ProfilesTable): previousId -> userId, written by the processor (step 3), paged through
and erased by a privacy delete, which keeps the ids a user's deletion took.

    pk=WS#<ws>#LINK#<previousId>  sk=LINK  user_id, stamp ("<timestamp>#<messageId>"), mapping_version
                                        gsi1pk=WS#<ws>#U#<userId>  gsi1sk=LINK#<previousId>
    pk=WS#<ws>#U#<uid>    sk=IDGONE#<previousId>  gsi1pk=WS#<ws>#U#<uid> gsi1sk=IDGONE#<previousId>: an id
                                        a deletion of the user erased with it (its link is gone; kept
                                        like the tombstone, so a later delete of the user takes it again)
"""

from __future__ import annotations

from typing import Any

from segment_bridge.errors import ConditionFailed
from segment_bridge.planning import Link
from segment_bridge.store.aws import aws_errors, batch_get, batch_write, item, plain
from segment_bridge.store.items import READ_FAILURE, WRITE_FAILURE, Tables, checked, entity_pk
from segment_bridge.tombstones import ERASED_LINK_PREFIX, LINK_PREFIX, Linked


def link_key(workspace_id: str, previous_id: str) -> dict[str, str]:
    return {"pk": f"WS#{workspace_id}#LINK#{previous_id}", "sk": "LINK"}


def erased_link_item(workspace_id: str, user_id: str, previous_id: str) -> dict[str, str]:
    pk = entity_pk(workspace_id, f"U#{user_id}")
    sk = f"{ERASED_LINK_PREFIX}{previous_id}"
    return {"pk": pk, "sk": sk, "gsi1pk": pk, "gsi1sk": sk}


class LinkRepository(Tables):
    def put_link(self, workspace_id: str, link: Link, mapping_version: int) -> bool:
        """previousId -> userId, unless a link at least as new is stored. False if it was not newer."""
        stamp = "#".join(link.stamp)  # fixed-width timestamp first: compares as the tuple
        values = link_key(workspace_id, link.previous_id) | {
            "user_id": link.user_id,
            "stamp": stamp,
            "gsi1pk": entity_pk(workspace_id, f"U#{link.user_id}"),
            "gsi1sk": f"{LINK_PREFIX}{link.previous_id}",
            "mapping_version": mapping_version,
        }
        condition = "attribute_not_exists(pk) OR stamp < :stamp"
        return self._put_if(
            checked(values), condition, {":stamp": stamp}, "An identity link could not be written."
        )

    def linked_ids(self, workspace_id: str, user_id: str) -> list[str]:
        """The ids (anonymous or older user ids) linked to a user by alias or identify."""
        return sorted(self._index(workspace_id, f"U#{user_id}", LINK_PREFIX))

    def linked_page(self, workspace_id: str, user_id: str, after: str | None, limit: int) -> list[Linked]:
        """At most `limit` ids linked to the user, in key order after the cursor `after`: first the
        ids its earlier deletions took (`IDGONE#`), then its stored links (`LINK#`): in gsi1's key order,
        so what this deletion takes (IDGONE# items written behind its cursor) is not paged again."""
        prefixes = (LINK_PREFIX, ERASED_LINK_PREFIX)
        if after is not None and not after.startswith(prefixes):
            after = f"{LINK_PREFIX}{after}"  # a cursor recorded before erased links were kept: a previousId
        arguments: dict[str, Any] = {
            "TableName": self.profiles_table,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :pk AND gsi1sk > :after",
            "ExpressionAttributeValues": item(
                {":pk": entity_pk(workspace_id, f"U#{user_id}"), ":after": after or ERASED_LINK_PREFIX}
            ),
            "Limit": limit,
        }
        with aws_errors(READ_FAILURE):
            found = self.clients.dynamodb.query(**arguments).get("Items", [])
        keys = [str(plain(entry)["gsi1sk"]) for entry in found]
        return [
            Linked(key.split("#", 1)[1], key.startswith(LINK_PREFIX), key)
            for key in keys
            if key.startswith(prefixes)
        ]

    def keep_erased_links(self, workspace_id: str, user_id: str, previous_ids: list[str]) -> None:
        """Remember that the deleted user's erase took these ids (their links are gone): a later delete
        of the user, at a later time, deletes them again as of its own time."""
        requests = [
            (
                self.profiles_table,
                {"PutRequest": {"Item": item(checked(erased_link_item(workspace_id, user_id, previous)))}},
            )
            for previous in dict.fromkeys(previous_ids)
        ]
        batch_write(self.clients.dynamodb, requests, self.sleep, failure=WRITE_FAILURE)

    def link_stamps(self, workspace_id: str, previous_ids: list[str]) -> dict[str, str]:
        """previousId -> the stamp ("<timestamp>#<messageId>") of its stored link, for those stored."""
        keys = [link_key(workspace_id, previous) for previous in previous_ids]
        found = batch_get(
            self.clients.dynamodb,
            self.profiles_table,
            keys,
            self.sleep,
            projection="pk, stamp",
            failure=READ_FAILURE,
        )
        return {str(link["pk"]).split("#LINK#", 1)[1]: str(link["stamp"]) for link in found}

    def remove_link(self, workspace_id: str, previous_id: str, through: str) -> bool:
        """Delete the link of `previous_id` if it was made at or before `through` (a timestamp); False if
        a newer link is stored."""
        try:
            with aws_errors("An identity link could not be deleted."):
                self.clients.dynamodb.delete_item(
                    TableName=self.profiles_table,
                    Key=item(link_key(workspace_id, previous_id)),
                    # stamp is "<timestamp>#<messageId>": "$" sorts right after "#"
                    ConditionExpression="attribute_not_exists(pk) OR stamp < :bound",
                    ExpressionAttributeValues=item({":bound": f"{through}$"}),
                )
        except ConditionFailed:
            return False
        return True
