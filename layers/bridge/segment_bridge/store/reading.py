"""What the read model reads (segment_bridge/read/): profiles, tombstones, links, memberships and history,
read-only. Item shapes: store/profiles.py (ProfilesTable, EventsTable); the mapping: store/mappings.py.

Only the calls the ReaderFunction's role allows: BatchGetItem and Query on the ProfilesTable (and its
gsi1) and the EventsTable (and its by_time index), GetItem on the WorkspacesTable (the mapping; read
tokens are store/credentials.py's). Nothing here writes.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

from segment_bridge.concurrency import each_at_once, pool_of
from segment_bridge.profiles import Profile
from segment_bridge.store.aws import Clients, Sleep, all_at_once, aws_errors, batch_get, item, plain
from segment_bridge.store.history import HISTORY_BY_TIME
from segment_bridge.store.profiles import _profile as stored_profile
from segment_bridge.values import to_json

if TYPE_CHECKING:
    import boto3

    from segment_bridge.identity import MergeProtection

READ_FAILURE = "Profiles cannot be read right now; retry."
FILTERED_PAGE = 100
"""Index entries a filtered history Query evaluates a page (include/exclude by name)."""
KEY_ATTRIBUTES = ("pk", "sk", "user_id", "deleted_at", "status")
"""Of every item entities() reads: keys, a link's user, a tombstone's time and status."""
VIEW_ATTRIBUTES = (
    *KEY_ATTRIBUTES,
    *("traits", "trait_stamps", "channels", "preferences", "preference_stamps", "groups"),
    *("anonymous_ids", "counts", "first_seen", "last_seen"),
)
"""A profile as a view shows it (store.profiles._profile reads these; pending, versions never)."""
BRIEF_ATTRIBUTES = (*KEY_ATTRIBUTES, "counts", "first_seen")
"""A linked id's profile: whether a reader may see it (first_seen) and its counts."""
_together = pool_of("read-together", 2)
"""Two reads of one request in flight at once (their own pool: batch_get's calls use the batch pool)."""
HistorySlice = tuple[str, str | None, bool]
"""(entity key, the time_key it starts from or None for its first, whether that time_key is included)."""


class ReadRepository:
    """The read model's source (read.model.ReadSource) over one stack's tables."""

    def __init__(
        self,
        *,
        profiles_table: str,
        events_table: str,
        workspaces_table: str,
        clients: Clients,
        sleep: Sleep,
    ) -> None:
        self.profiles_table = profiles_table
        self.events_table = events_table
        self.workspaces_table = workspaces_table
        self.clients = clients
        self.sleep = sleep

    def entities(
        self, workspace_id: str, keys: list[str], links: list[str], *, brief: bool = False
    ) -> tuple[dict[str, tuple[Profile | None, tuple[str, bool] | None]], dict[str, str]]:
        """(entity key -> its profile and tombstone, previousId -> the user its stored link names), in one
        BatchGetItem (as few as fit). Entities with neither item are absent. A tombstone reads as
        (deleted_at, erased): erased unless its own erase is under way (status erasing); a linked id's
        (`by`) says nothing of its erase, and reads as erased. Only what a view shows is read (never
        `pending` or the versions); `brief`: a profile's first_seen and counts only (linked ids')."""
        prefix = f"WS#{workspace_id}#"
        wanted = [{"pk": prefix + key, "sk": sk} for key in keys for sk in ("PROFILE", "DELETED")]
        wanted += [{"pk": f"{prefix}LINK#{previous}", "sk": "LINK"} for previous in links]
        attributes = BRIEF_ATTRIBUTES if brief else VIEW_ATTRIBUTES
        profiles: dict[str, dict[str, Any]] = {}
        tombstones: dict[str, dict[str, Any]] = {}
        linked: dict[str, str] = {}
        for found in batch_get(
            self.clients.dynamodb,
            self.profiles_table,
            wanted,
            self.sleep,
            projection=", ".join(f"#a{n}" for n in range(len(attributes))),
            names={f"#a{n}": name for n, name in enumerate(attributes)},
            failure=READ_FAILURE,
        ):
            key = str(found["pk"]).removeprefix(prefix)
            if found["sk"] == "LINK":
                linked[key.removeprefix("LINK#")] = str(found["user_id"])
            elif found["sk"] == "DELETED":
                tombstones[key] = found
            else:
                profiles[key] = found
        out: dict[str, tuple[Profile | None, tuple[str, bool] | None]] = {}
        for key in set(profiles) | set(tombstones):
            stone = tombstones.get(key)
            out[key] = (
                stored_profile(profiles[key]) if key in profiles else None,
                (str(stone["deleted_at"]), stone.get("status") != "erasing") if stone else None,
            )
        return out, linked

    def entities_and_linked(
        self, workspace_id: str, keys: list[str], links: list[str], user_id: str
    ) -> tuple[dict[str, tuple[Profile | None, tuple[str, bool] | None]], dict[str, str], list[str]]:
        """`entities(keys, links)` and `linked_ids(user_id)`, the two calls in flight together."""
        both: list[Any] = each_at_once(
            [
                partial(self.entities, workspace_id, keys, links),
                partial(self.linked_ids, workspace_id, user_id),
            ],
            _together,
        )
        (found, linked), ids = both
        return found, linked, ids

    def linked_ids(self, workspace_id: str, user_id: str) -> list[str]:
        """The previousIds whose stored link names the user (gsi1's LINK# entries: keys only)."""
        found = self._query(
            {
                "TableName": self.profiles_table,
                "IndexName": "gsi1",
                "KeyConditionExpression": "gsi1pk = :pk AND begins_with(gsi1sk, :prefix)",
                "ExpressionAttributeValues": item(
                    {":pk": f"WS#{workspace_id}#U#{user_id}", ":prefix": "LINK#"}
                ),
            }
        )
        return [str(entry["gsi1sk"]).removeprefix("LINK#") for entry in found]

    def group_members(self, workspace_id: str, group_id: str) -> list[str]:
        """The entity keys (U#…, A#…) of the group's MEMBER# items."""
        found = self._query(
            {
                "TableName": self.profiles_table,
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
                "ExpressionAttributeValues": item(
                    {":pk": f"WS#{workspace_id}#G#{group_id}", ":prefix": "MEMBER#"}
                ),
                "ProjectionExpression": "sk",
            }
        )
        return [str(member["sk"]).removeprefix("MEMBER#") for member in found]

    def history_slices(
        self,
        workspace_id: str,
        slices: list[HistorySlice],
        *,
        want: int,
        newest_first: bool,
        include: frozenset[str] | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> dict[str, list[tuple[str, str]]]:
        """Entity key -> up to `want` (time_key, name) of its history items past its slice's start, in
        time order (newest first if `newest_first`), whose name `include` lists (None: any) and `exclude`
        does not: a Query of the `by_time` index per entity (keys and name only, `want` entries a
        page), the entities' queries in flight together."""
        values: dict[str, Any] = {}
        filters = []
        for word, listed in (("", include), ("NOT ", exclude or None)):
            if listed is not None:
                marks = []
                for name in sorted(listed):
                    marks.append(f":n{len(values)}")
                    values[marks[-1]] = name
                filters.append(f"{word}(#name IN ({', '.join(marks)}))")

        def slice_of(entry: HistorySlice) -> list[dict[str, Any]]:
            key, start, inclusive = entry
            condition = "pk = :pk"
            wanted: dict[str, Any] = {":pk": f"WS#{workspace_id}#{key}"} | values
            if start is not None:
                before = "<" if newest_first else ">"
                condition += f" AND time_key {before}{'=' if inclusive else ''} :start"
                wanted[":start"] = start
            arguments: dict[str, Any] = {
                "TableName": self.events_table,
                "IndexName": HISTORY_BY_TIME,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": item(wanted),
                "ExpressionAttributeNames": {"#name": "name"},
                "ProjectionExpression": "pk, time_key, #name",
                "ScanIndexForward": not newest_first,
                # a filter is applied after Limit: ask for more per page, and go on while short
                "Limit": max(want, FILTERED_PAGE) if filters else want,
            }
            if filters:
                arguments["FilterExpression"] = " AND ".join(filters)
            found: list[dict[str, Any]] = []
            while len(found) < want:
                with aws_errors(READ_FAILURE):
                    response = self.clients.dynamodb.query(**arguments)
                found += [plain(entry) for entry in response.get("Items", [])]
                if "LastEvaluatedKey" not in response:
                    break
                arguments["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            return found[:want]

        prefix = f"WS#{workspace_id}#"
        out: dict[str, list[tuple[str, str]]] = {key: [] for key, _, _ in slices}
        for entry in all_at_once([partial(slice_of, entry) for entry in slices]):  # in flight together
            key = str(entry["pk"]).removeprefix(prefix)
            out[key].append((str(entry["time_key"]), str(entry.get("name", ""))))
        return out

    def history_items(
        self, workspace_id: str, wanted: list[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """(entity key, messageId) -> the history item, for those of `wanted` still stored."""
        prefix = f"WS#{workspace_id}#"
        keys = [{"pk": prefix + entity, "sk": f"MSG#{message_id}"} for entity, message_id in wanted]
        return {
            (str(found["pk"]).removeprefix(prefix), str(found["sk"]).removeprefix("MSG#")): to_json(found)
            for found in batch_get(
                self.clients.dynamodb, self.events_table, keys, self.sleep, failure=READ_FAILURE
            )
        }

    def protection(self, workspace_id: str) -> MergeProtection:
        """The workspace's merge protection (its mapping's; the defaults without one)."""
        from segment_bridge.mapping import Mapping

        with aws_errors(READ_FAILURE):
            found = self.clients.dynamodb.get_item(
                TableName=self.workspaces_table,
                Key=item({"pk": f"WS#{workspace_id}", "sk": "MAPPING"}),
                ProjectionExpression="config",
            ).get("Item")
        if found is None:
            return Mapping().merge_protection
        return Mapping.model_validate_json(str(plain(found)["config"])).merge_protection

    def _query(self, arguments: dict[str, Any]) -> list[dict[str, Any]]:
        with aws_errors(READ_FAILURE):
            pages = self.clients.dynamodb.get_paginator("query").paginate(**arguments)
            return [plain(found) for page in pages for found in page.get("Items", [])]


def connect(
    *,
    profiles_table: str,
    events_table: str,
    workspaces_table: str,
    session: boto3.session.Session | None = None,
    endpoint_url: str | None = None,
) -> ReadRepository:
    """A ReadRepository of its own clients (made on first use): the Python client's (read/client.py)."""
    return ReadRepository(
        profiles_table=profiles_table,
        events_table=events_table,
        workspaces_table=workspaces_table,
        clients=Clients(session, endpoint_url),
        sleep=time.sleep,
    )
