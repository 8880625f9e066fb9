"""Privacy requests' receipts: one per request (docs/privacy-receipts.md), what the store keeps of it.

A request is a `delete` of one entity (U#<userId> or A#<anonymousId>) as of a time, the same pair its
tombstone records: a repeat of the request (Segment's retries, a redelivery, a re-drive, `deletions
reapply`) is the same receipt. A receipt holds the entity's id and times only, as the tombstone does,
never the deleted data. Its state only moves forward:

    received  the request reached the processor (or was queued by the CLI or the regulations poller)
    erased    the delete finished: the entity's data as of its time is gone from the tables
    purged    a purge of the archive (raw/, rejected/, unapplied/, parked/) ran after the erase
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Final

from segment_bridge.identity import screen
from segment_bridge.mapping import Mapping
from segment_bridge.timestamps import InvalidTimestamp, event_time

RECEIVED: Final = "received"
ERASED: Final = "erased"
PURGED: Final = "purged"
STATES = (RECEIVED, ERASED, PURGED)

SOURCES = ("segment", "function", "regulation", "operator", "api")
"""Where a request came from: Segment's webhook destinations, our Destination Function, a regulation
of the workspace's Segment Public API (the poller), an operator (`segment-bridge users delete`,
`deletions reapply`), or the product's backend with the workspace's key (any other HTTP sender)."""
UNKNOWN_SOURCE = "unknown"
"""A queue message packed before envelopes said where they came from."""


@dataclass(frozen=True)
class Requested:
    """One privacy request as a queue message carries it."""

    key: str
    """U#<userId> or A#<anonymousId>: the entity the delete removes (its tombstone's key)."""
    deleted_at: str
    """The delete's time, as the processor applies it (its tombstone's deleted_at)."""
    received_at: str
    source: str
    request_id: str

    @property
    def fingerprint(self) -> str:
        """A short digest of (key, deleted_at): index keys hold it rather than an id of up to 1 KB."""
        return request_fingerprint(self.key, self.deleted_at)


@dataclass(frozen=True)
class Receipt:
    """A request's receipt as stored."""

    workspace_id: str
    key: str
    deleted_at: str
    received_at: str
    source: str
    request_id: str
    state: str
    erased_at: str | None = None
    purged_at: str | None = None
    reapplied_at: str | None = None

    @property
    def kind(self) -> str:
        return "user" if self.key.startswith("U#") else "anonymous"

    @property
    def id(self) -> str:
        return self.key[2:]

    @property
    def finished(self) -> bool:
        return self.state == PURGED

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, **asdict(self)}


def request_fingerprint(key: str, deleted_at: str) -> str:
    digest = hashlib.blake2b(f"{key}\n{deleted_at}".encode("utf-8", "surrogatepass"), digest_size=8)
    return digest.hexdigest()


def requested_in(
    events: list[dict[str, Any]],
    *,
    received_at: str,
    source: str | None,
    request_id: str,
    mapping: Mapping | None = None,
) -> list[Requested]:
    """The privacy requests among a queue message's events (intake's output): each `delete` whose
    subject and time the processor can apply under the workspace's `mapping` (planning.plan's rules:
    ids its merge protection blocks taken out, then its userId, else its anonymousId, at its timestamp,
    receivedAt if it is more than 23 h ahead; a mapping never turns deletes off). Once per (key, time)."""
    mapping = mapping or Mapping()
    found: dict[tuple[str, str], Requested] = {}
    for event in events:
        if not isinstance(event, dict) or event.get("type") != "delete":
            continue
        screened = screen(event, mapping.merge_protection)
        if screened.reason is not None:
            continue  # not applied either (parked as unapplied, with its reason)
        event = screened.event
        user_id, anonymous_id = event.get("userId"), event.get("anonymousId")
        if isinstance(user_id, str) and user_id:
            key = f"U#{user_id}"
        elif isinstance(anonymous_id, str) and anonymous_id:
            key = f"A#{anonymous_id}"
        else:
            continue
        try:
            when, _ = event_time(event.get("timestamp"), event.get("receivedAt") or event.get("timestamp"))
        except (InvalidTimestamp, ValueError, OverflowError):
            continue  # not applied either (it is parked as unapplied, with its reason)
        found.setdefault((key, when), Requested(key, when, received_at, source or UNKNOWN_SOURCE, request_id))
    return list(found.values())


def delete_event(key: str, deleted_at: str, message_id: str) -> dict[str, Any]:
    """The `delete` that repeats a request (`deletions reapply`): Segment's own shape, same subject and
    time, so it is the same delete (its tombstone rules make it a repeat, or redo what a restore undid)."""
    subject = "userId" if key.startswith("U#") else "anonymousId"
    return {"type": "delete", subject: key[2:], "timestamp": deleted_at, "messageId": message_id}
