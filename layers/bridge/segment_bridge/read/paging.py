"""Paging for the read model (model.py): opaque cursors, a page of a sorted list, and a page of history
merged across entity keys. Pure: the history is read through a `HistorySource` (store/reading.py).

The history's order is (time_key, entity key): time_key is `<timestamp>#<messageId>`, the EventsTable's
`by_time` index's sort key, so each entity's history is read in that order, `limit` + 1 entries past the
cursor at most, and merged. The cursor is the last item's position (timestamp, messageId, entity key):
past it, an entity before the cursor's in that order starts at the cursor's time_key (ties), the others
after it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from segment_bridge.errors import BridgeError
from segment_bridge.timestamps import time_key

T = TypeVar("T")
CURSOR_VERSION = 1
Position = tuple[str, str, str, str]
"""A history entry as listed: (timestamp, messageId, entity key, name)."""


class InvalidCursor(BridgeError):
    status, code = 400, "invalid_cursor"


class HistorySource(Protocol):
    def history_slices(
        self,
        workspace_id: str,
        slices: list[tuple[str, str | None, bool]],
        *,
        want: int,
        newest_first: bool,
        include: frozenset[str] | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> dict[str, list[tuple[str, str]]]: ...

    def history_items(
        self, workspace_id: str, wanted: list[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]: ...


def encode_cursor(position: Sequence[str]) -> str:
    raw = json.dumps([CURSOR_VERSION, *position], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, width: int) -> tuple[str, ...]:
    """The position a cursor names; InvalidCursor for anything this model did not write."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor("The cursor is not one this API gave.") from None
    if (
        not isinstance(values, list)
        or len(values) != width + 1
        or values[0] != CURSOR_VERSION
        or not all(isinstance(value, str) for value in values[1:])
    ):
        raise InvalidCursor("The cursor is not one this API gave.")
    return tuple(values[1:])


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next: str | None
    """The cursor of the next page; None on the last."""


def paged(
    items: list[T],
    key: Callable[[T], tuple[str, ...]],
    width: int,
    limit: int,
    after: str | None,
    *,
    newest_first: bool = False,
) -> Page[T]:
    """`limit` items after the cursor `after`, in `key` order (`width` strings; descending if
    `newest_first`). The cursor is a position, not an offset: items added meanwhile never repeat or skip
    what was read."""
    ordered = sorted(items, key=key, reverse=newest_first)
    if after is not None:
        position = decode_cursor(after, width)
        ordered = [i for i in ordered if (key(i) < position if newest_first else key(i) > position)]
    page = ordered[:limit]
    more = len(ordered) > limit
    return Page(page, encode_cursor(key(page[-1])) if more and page else None)


def history_page(
    source: HistorySource,
    workspace_id: str,
    keys: list[str],
    *,
    limit: int,
    after: str | None,
    include: frozenset[str] | None,
    exclude: frozenset[str],
    newest_first: bool,
) -> Page[tuple[Position, dict[str, Any]]]:
    """`limit` history entries of the entities `keys` after the cursor `after` (module doc), each with
    its stored item; an entry whose item went between the two reads (TTL, an erase) is left out."""
    start: str | None = None
    at_entity = ""
    if after is not None:
        timestamp, message_id, at_entity = decode_cursor(after, 3)
        start = time_key(timestamp, message_id)
    slices = [
        (key, start, start is not None and (key < at_entity if newest_first else key > at_entity))
        for key in keys
    ]
    found = source.history_slices(
        workspace_id, slices, want=limit + 1, newest_first=newest_first, include=include, exclude=exclude
    )
    merged = sorted(
        ((position, key, name) for key, entries in found.items() for position, name in entries),
        key=lambda entry: (entry[0], entry[1]),
        reverse=newest_first,
    )
    page: list[Position] = []
    for position, key, name in merged[:limit]:
        timestamp, _, message_id = position.partition("#")
        page.append((timestamp, message_id, key, name))
    stored = source.history_items(workspace_id, [(entry[2], entry[1]) for entry in page])
    kept = [(entry, item) for entry in page if (item := stored.get((entry[2], entry[1]))) is not None]
    return Page(kept, encode_cursor(page[-1][:3]) if len(merged) > limit and page else None)
