"""The read API's requests and answers, shaped like Segment's Profile API (docs/read-api.md has both
side by side): `GET /v1/spaces/<workspace>/collections/<users|accounts>/profiles/<id_type>:<id>/<facet>`
with facet traits, external_ids, events, links or metadata. Pure: `parse` checks a request, `answer`
asks the read model (model.py) and shapes what it says. The ReaderFunction and the Python client
(client.py) both answer through these two, so their answers are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from segment_bridge.errors import BridgeError
from segment_bridge.read.model import USER_ID_TYPES, IdType, Reader, UserView
from segment_bridge.read.paging import Page, paged

COLLECTIONS: dict[str, tuple[IdType, ...]] = {"users": USER_ID_TYPES, "accounts": ("group_id",)}
FACETS = ("traits", "external_ids", "events", "links", "metadata")
LIMITS: dict[str, tuple[int, int]] = {
    # facet: (default, most); Segment: traits 10 by default and up to 200, lists 1-100, links 20
    "traits": (10, 200),
    "external_ids": (10, 100),
    "events": (10, 100),
    "links": (20, 100),
}
PARAMETERS: dict[str, frozenset[str]] = {
    "traits": frozenset({"limit", "include", "next", "cursor", "verbose"}),
    "external_ids": frozenset({"limit", "include", "next", "cursor", "verbose"}),
    "events": frozenset({"limit", "include", "exclude", "next", "cursor", "sort", "linked"}),
    "links": frozenset({"limit", "next", "cursor"}),
    "metadata": frozenset({"verbose"}),
}
MAX_LIST_ITEMS = 100
"""Names in one include/exclude list."""
UNAUTHORIZED: Final = "Missing or invalid read token."


class BadRequest(BridgeError):
    """A request the API cannot answer as asked: 400 with a code naming what is wrong."""

    status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def error_body(error: BridgeError) -> dict[str, object]:
    """Our {"code", "message"}, and the same under "error", where Segment's Profile API puts it."""
    return {
        "code": error.code,
        "message": error.message,
        "error": {"code": error.code, "message": error.message},
    }


@dataclass(frozen=True)
class ReadRequest:
    workspace_id: str
    collection: str
    id_type: IdType
    id: str
    facet: str
    limit: int = 10
    after: str | None = None
    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()
    verbose: bool = False
    newest_first: bool = True
    linked: bool = True

    @property
    def path(self) -> str:
        return (
            f"/v1/spaces/{self.workspace_id}/collections/{self.collection}/profiles/"
            f"{self.id_type}:{self.id}/{self.facet}"
        )


def parse(
    workspace_id: str, collection: str, external_id: str, facet: str, query: dict[str, str]
) -> ReadRequest:
    """The request, checked; BadRequest (400, its code saying what) for anything this API cannot answer."""
    if collection not in COLLECTIONS:
        raise BadRequest("invalid_collection", "The collection is users or accounts.")
    if facet not in FACETS:
        raise BadRequest("invalid_route", f"The route is one of {', '.join(FACETS)}.")
    id_type, colon, value = external_id.partition(":")
    if not colon or not value:
        raise BadRequest("invalid_external_id", "The profile is named <id_type>:<id>, e.g. user_id:u-42.")
    if id_type not in COLLECTIONS[collection]:
        raise BadRequest(
            "invalid_id_type",
            f"The {collection} collection is looked up by {' or '.join(COLLECTIONS[collection])}.",
        )
    unknown = sorted(set(query) - PARAMETERS[facet])
    if unknown:
        allowed = ", ".join(sorted(PARAMETERS[facet])) or "none"
        raise BadRequest(
            "invalid_parameter", f"Unknown parameter {unknown[0]!r} (this route takes: {allowed})."
        )
    if "next" in query and "cursor" in query:
        raise BadRequest("invalid_parameter", "Give the cursor once, as next (or cursor).")
    default, most = LIMITS.get(facet, (0, 0))
    after = query.get("next", query.get("cursor")) or None
    return ReadRequest(
        workspace_id=workspace_id,
        collection=collection,
        id_type=COLLECTIONS[collection][COLLECTIONS[collection].index(id_type)],  # as an IdType
        id=value,
        facet=facet,
        limit=_limit(query.get("limit"), default, most),
        after=after,
        include=_names(query, "include"),
        exclude=_names(query, "exclude") or frozenset(),
        verbose=_flag(query, "verbose", False),
        newest_first=_sort(query.get("sort")),
        linked=_flag(query, "linked", True),
    )


def _limit(value: str | None, default: int, most: int) -> int:
    if value is None:
        return default
    if not value.isdecimal() or not 1 <= int(value) <= most:
        raise BadRequest("invalid_limit", f"limit is a whole number from 1 to {most}.")
    return int(value)


def _names(query: dict[str, str], name: str) -> frozenset[str] | None:
    if name not in query:
        return None
    names = frozenset(part.strip() for part in query[name].split(",") if part.strip())
    if not names or len(names) > MAX_LIST_ITEMS:
        raise BadRequest(
            "invalid_parameter", f"{name} is a comma-separated list of 1 to {MAX_LIST_ITEMS} names."
        )
    return names


def _flag(query: dict[str, str], name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise BadRequest("invalid_parameter", f"{name} is true or false.")
    return value.lower() == "true"


def _sort(value: str | None) -> bool:
    if value is None or value == "desc":
        return True
    if value == "asc":
        return False
    raise BadRequest("invalid_parameter", "sort is asc or desc.")


# --- answers -----------------------------------------------------------------------------------------


def answer(request: ReadRequest, reader: Reader) -> dict[str, Any]:
    """What the API answers (200) to a checked request; NotFound (404) for a profile no one may see."""
    if request.collection == "accounts":
        return _account(request, reader)
    user = reader.user(request.workspace_id, request.id_type, request.id)
    if request.facet == "traits":
        return _traits(request, user.profile.traits, user.profile.trait_stamps)
    if request.facet == "external_ids":
        return _external_ids(request, user)
    if request.facet == "events":
        page = reader.events(
            user,
            limit=request.limit,
            after=request.after,
            linked=request.linked,
            include=request.include,
            exclude=request.exclude,
            newest_first=request.newest_first,
        )
        data = [
            {
                "external_ids": [_external_id(event.id_type, event.id, None, "users", brief=True)],
                "type": event.type,
                "event": event.name,
                "message_id": event.message_id,
                "source_id": None,
                "timestamp": event.timestamp,
                "received_at": event.received_at,
                "properties": event.properties,
            }
            for event in page.items
        ]
        return {"data": data, "cursor": _cursor(request, page)}
    if request.facet == "links":
        groups = paged(
            sorted(user.profile.groups.items()), lambda g: (g[0],), 1, request.limit, request.after
        )
        data = [
            {"to_collection": "accounts", "external_ids": [_external_id("group_id", gid, first, "accounts")]}
            for gid, first in groups.items
        ]
        return {"data": data, "cursor": _cursor(request, groups)}
    metadata: dict[str, Any] = _metadata(user.profile.first_seen, user.profile.last_seen) | {
        "preferences": user.profile.preferences,
        "counts": user.profile.counts,
        "counts_with_linked": user.counts_with_linked,
    }
    if request.verbose:
        metadata |= {
            "linked": {linked: {"counts": counts} for linked, counts in user.linked_counts().items()},
            "refused_links": user.refused,
        }
    return {"metadata": metadata}


def _account(request: ReadRequest, reader: Reader) -> dict[str, Any]:
    group = reader.group(request.workspace_id, request.id, members=request.facet == "links")
    if request.facet == "traits":
        return _traits(request, group.profile.traits, group.profile.trait_stamps)
    if request.facet == "external_ids":
        ids = [_external_id("group_id", group.id, group.profile.first_seen, "accounts")]
        page = paged(ids, lambda e: (e["type"], e["id"]), 2, request.limit, request.after)
        return {"data": page.items, "cursor": _cursor(request, page)}
    if request.facet == "events":  # groups have no history of their own (track calls are the users')
        return {"data": [], "cursor": _cursor(request, Page([], None))}
    if request.facet == "links":
        members = paged(group.members, lambda m: (m,), 1, request.limit, request.after)
        data = [
            {
                "to_collection": "users",
                "external_ids": [
                    _external_id("user_id" if m[0] == "U" else "anonymous_id", m[2:], None, "users")
                ],
            }
            for m in members.items
        ]
        return {"data": data, "cursor": _cursor(request, members)}
    return {"metadata": _metadata(group.profile.first_seen, group.profile.last_seen)}


def _traits(
    request: ReadRequest, traits: dict[str, Any], stamps: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    names = [name for name in traits if request.include is None or name in request.include]
    page = paged(names, lambda name: (name,), 1, request.limit, request.after)
    if request.verbose:
        shown: dict[str, Any] = {
            name: {
                "value": traits[name],
                "source_id": None,
                "updated_at": stamps.get(name, ("", ""))[0] or None,
                "message_id": stamps.get(name, ("", ""))[1] or None,
            }
            for name in page.items
        }
    else:
        shown = {name: traits[name] for name in page.items}
    return {"traits": shown, "cursor": _cursor(request, page)}


def _external_ids(request: ReadRequest, user: UserView) -> dict[str, Any]:
    profile = user.profile
    ids = [
        _external_id((user.kind == "U" and "user_id") or "anonymous_id", user.id, profile.first_seen, "users")
    ]
    for linked in user.linked:
        kind = "user_id" if f"U#{linked}" in user.linked_profiles else "anonymous_id"
        ids.append(_external_id(kind, linked, profile.anonymous_ids.get(linked), "users"))
    if request.verbose:
        ids += [
            _external_id("anonymous_id", refused, profile.anonymous_ids.get(refused), "users")
            | {"refused": True}
            for refused in user.refused
        ]
    for channel, values in profile.channels.items():
        ids += [_external_id(channel, value, first, "users") for value, first in values.items()]
    wanted = [entry for entry in ids if request.include is None or entry["type"] in request.include]
    page = paged(
        wanted,
        lambda e: ("0" if e is ids[0] else "1", e["created_at"] or "", e["type"], e["id"]),
        4,
        request.limit,
        request.after,
    )
    return {"data": page.items, "cursor": _cursor(request, page)}


def _external_id(
    kind: str, value: str, created_at: str | None, collection: str, *, brief: bool = False
) -> dict[str, Any]:
    if brief:
        return {"collection": collection, "type": kind, "id": value, "encoding": "none"}
    return {
        "id": value,
        "type": kind,
        "collection": collection,
        "created_at": created_at,
        "encoding": "none",
        "source_id": None,
        "first_message_id": None,
    }


def _metadata(first_seen: str | None, last_seen: str | None) -> dict[str, Any]:
    return {
        "created_at": first_seen,
        "updated_at": last_seen,
        "expires_at": None,
        "first_message_id": None,
        "first_source_id": None,
        "last_message_id": None,
        "last_source_id": None,
    }


def _cursor(request: ReadRequest, page: Page[Any]) -> dict[str, Any]:
    return {
        "url": request.path,
        "has_more": page.next is not None,
        "next": page.next or "",
        "limit": request.limit,
    }
