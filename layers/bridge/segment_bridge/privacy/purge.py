"""The archive purge: deleted entities' events removed from every copy the archive keeps (raw/, rejected/,
unapplied/) and from parked/ (docs/privacy.md). Loaded by the PurgeFunction only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from segment_bridge.envelope import Envelope, pack, unpack
from segment_bridge.privacy.ports import ReceiptBook
from segment_bridge.privacy.receipts import mark_purged
from segment_bridge.timestamps import InvalidTimestamp, event_time
from segment_bridge.tombstones import (
    PendingPurge,
)


class ArchiveCopies(Protocol):
    """store.archive: every object of a workspace under a kind (raw, rejected, unapplied), rewritten."""

    def objects(self, kind: str, workspace_id: str) -> Iterator[tuple[str, list[dict[str, Any]]]]: ...
    def rewrite(self, key: str, records: list[dict[str, Any]]) -> None: ...


class PurgeList(Protocol):
    def pending_purges(self, workspace_id: str) -> list[PendingPurge]: ...
    def purged(self, workspace_id: str, done: list[PendingPurge]) -> None: ...


ARCHIVE_KINDS = ("raw", "rejected", "unapplied")
PARKED_QUEUES: tuple[Literal["ingest", "emitter"], ...] = ("emitter", "ingest")


@dataclass
class Purged:
    """What one purge of a workspace did (counts only: never ids)."""

    entities: int = 0
    objects_read: int = 0
    objects_rewritten: int = 0
    events_removed: int = 0
    receipts_purged: int = 0
    parked_ids: list[str] = field(default_factory=list, repr=False)

    def figures(self) -> dict[str, int]:
        return {
            "entities": self.entities,
            "objects_read": self.objects_read,
            "objects_rewritten": self.objects_rewritten,
            "events_removed": self.events_removed,
            "receipts_purged": self.receipts_purged,
        }


def purge(
    workspace_id: str,
    archive: ArchiveCopies,
    listed: PurgeList,
    *,
    user_id: str | None = None,
    parked: ParkedCopies | None = None,
    receipts: ReceiptBook | None = None,
) -> Purged:
    """Remove from the workspace's archive (one pass over raw/, rejected/, unapplied/, and parked/ when
    `parked` is given) every event of an entity listed for purging that is stamped at or before its
    delete, then take the entities off the list (and mark the `receipts` of the requests it finished).
    `user_id`: only that user's deletion (itself and its linked ids)."""
    pending = listed.pending_purges(workspace_id)
    if user_id is not None:
        pending = [p for p in pending if f"U#{user_id}" in (p.key, p.by)]
    done = Purged(entities=len(pending))
    if not pending:
        return done
    users = {p.id: p.deleted_at for p in pending if p.kind == "U"}
    anonymous = {p.id: p.deleted_at for p in pending if p.kind == "A"}
    for kind in ARCHIVE_KINDS:
        for key, records in archive.objects(kind, workspace_id):
            done.objects_read += 1
            kept = [
                r for r in records if not deleted(r if kind == "raw" else r.get("event"), users, anonymous)
            ]
            if len(kept) < len(records):
                archive.rewrite(key, kept)
                done.objects_rewritten += 1
                done.events_removed += len(records) - len(kept)
    done.parked_ids = sorted({p.id for p in pending})
    if parked is not None:
        purge_parked(workspace_id, users, anonymous, parked, done)
    listed.purged(workspace_id, pending)
    if receipts is not None:  # the requests this purge finished (privacy/receipts.py)
        done.receipts_purged = mark_purged(workspace_id, pending, receipts)
    return done


class ParkedCopy(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def document(self) -> dict[str, Any]: ...


class ParkedCopies(Protocol):
    """store.parked: every parked item of a queue, rewritten or removed."""

    def items(self, queue: Literal["ingest", "emitter"]) -> Iterator[ParkedCopy]: ...
    def replace(self, key: str, document: dict[str, Any]) -> None: ...
    def remove(self, key: str) -> None: ...


def purge_parked(
    workspace_id: str,
    users: dict[str, str],
    anonymous: dict[str, str],
    parked: ParkedCopies,
    done: Purged,
) -> None:
    """The deleted entities' events kept under parked/ (what was not sent or not applied), counted in
    `done` like the archive's (`parked_change`, one item after another)."""
    for queue in PARKED_QUEUES:
        for item in parked.items(queue):
            change = parked_change(workspace_id, users, anonymous, item.document)
            if change is None:
                continue
            done.objects_read += 1
            if not change.removed:
                continue
            if change.document is None:
                parked.remove(item.key)
            else:
                parked.replace(item.key, change.document)
            done.objects_rewritten += 1
            done.events_removed += change.removed


@dataclass(frozen=True)
class ParkedChange:
    """What a purge does to one parked item of the workspace: `removed` events taken out; the item
    rewritten as `document`, or removed when it is None (and `removed` > 0)."""

    removed: int
    document: dict[str, Any] | None = None


def parked_change(
    workspace_id: str, users: dict[str, str], anonymous: dict[str, str], document: dict[str, Any]
) -> ParkedChange | None:
    """A parked item's purge (None if it is not the workspace's): a parked outbound event of a deleted
    entity is removed; a parked ingest dead letter (a queue message holding many events) is rewritten
    without them, removed when empty. Stream batches Lambda gave up on are pointers (no event data) and
    stay."""
    if document.get("kind") == "parked event":
        if document.get("workspace_id") != workspace_id:
            return None
        return ParkedChange(1) if deleted(document.get("record"), users, anonymous) else ParkedChange(0)
    envelope_events = parked_envelope(document)
    if envelope_events is None or envelope_events[0].workspaceId != workspace_id:
        return None
    envelope, events = envelope_events
    kept = [event for event in events if not deleted(event, users, anonymous)]
    if len(kept) == len(events):
        return ParkedChange(0)
    if not kept:
        return ParkedChange(len(events))
    (body,) = pack(
        [json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode("utf-8") for e in kept],
        workspace_id=envelope.workspaceId,
        request_id=envelope.requestId,
        received_at=envelope.receivedAt,
        max_bytes=1 << 40,  # one message, as it was (fewer events than it held)
    )
    return ParkedChange(len(events) - len(kept), document | {"body": body})


def parked_envelope(document: dict[str, Any]) -> tuple[Envelope, list[dict[str, Any]]] | None:
    """A parked ingest dead letter's queue message (None for anything else)."""
    if document.get("kind") != "dead letter":
        return None
    try:
        return unpack(str(document.get("body", "")))
    except (ValueError, OSError, EOFError):  # not a queue message: nothing of ours to read in it
        return None


def deleted(event: Any, users: dict[str, str], anonymous: dict[str, str]) -> bool:
    """Whether an archived event belongs to a deleted entity and is stamped at or before its delete (an
    event whose time cannot be read counts as before it)."""
    if not isinstance(event, dict):
        return False
    cutoffs = []
    for name, deletions in (("userId", users), ("anonymousId", anonymous), ("previousId", users | anonymous)):
        value = event.get(name)
        if isinstance(value, (str, int, float)) and str(value) in deletions:
            cutoffs.append(deletions[str(value)])
    if not cutoffs:
        return False
    try:
        when, _ = event_time(event.get("timestamp"), event.get("receivedAt") or event.get("timestamp"))
    except (InvalidTimestamp, ValueError, OverflowError):
        return True
    return when <= max(cutoffs)
