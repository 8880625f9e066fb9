"""Receipts of privacy requests where they meet the pipeline (docs/privacy-receipts.md).

Receipts      a queue message's requests: `received()` before the processor applies the message,
              `erased()` once it has (every delete in it finished), the entity listed for the purge
              again so that a purge run meanwhile cannot leave its receipt unfinished
mark_purged   the purge's one call, where it clears a workspace's purge list
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segment_bridge.mapping import Mapping
from segment_bridge.privacy.ports import PurgeRelist, ReceiptBook
from segment_bridge.receipts import Requested, requested_in
from segment_bridge.tombstones import PendingPurge


@dataclass(frozen=True)
class Receipts:
    """The privacy requests of one queue message and their receipts."""

    workspace_id: str
    requests: list[Requested]
    book: ReceiptBook
    purge_list: PurgeRelist

    @classmethod
    def of(
        cls,
        workspace_id: str,
        events: list[dict[str, Any]],
        *,
        received_at: str,
        source: str | None,
        request_id: str,
        book: ReceiptBook,
        purge_list: PurgeRelist,
        mapping: Mapping | None = None,
    ) -> Receipts:
        requests = requested_in(
            events, received_at=received_at, source=source, request_id=request_id, mapping=mapping
        )
        return cls(workspace_id, requests, book, purge_list)

    def received(self) -> None:
        """Before the message is applied: a receipt for each request that has none."""
        if self.requests:
            self.book.received(self.workspace_id, self.requests)

    def erased(self) -> None:
        """After the message is applied (its deletes finished: an unfinished one raised before this),
        each receipt erased, then its entity listed for the purge again. A purge that took the entity off
        its list before the receipt said erased did not mark it purged; the next one will."""
        if not self.requests:
            return
        self.book.erased(self.workspace_id, self.requests)
        for request in self.requests:
            self.purge_list.relist_for_purge(self.workspace_id, request.key, request.deleted_at)


def mark_purged(workspace_id: str, done: list[PendingPurge], book: ReceiptBook) -> int:
    """The receipts a purge finished: of each entity deleted in its own right (listed by itself, not as
    a deleted user's linked id) whose archive it purged as of a delete at or after theirs, those erased
    become purged. Returns how many."""
    through: dict[str, str] = {}
    for pending in done:
        if pending.key == pending.by:
            through[pending.key] = max(through.get(pending.key, ""), pending.deleted_at)
    return book.purged(workspace_id, through) if through else 0
