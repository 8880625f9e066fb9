"""Where the processor meets a delete: three hooks within the unit of work, each taking privacy's `Work`
(ports.py), which the processor's unit of work for one message satisfies; and two around it, where the
processor receives the message (processor/message.py), taking privacy's `Receiving`, which the
processor's repositories satisfy. Privacy never imports the processor.

    requests_received           before the message is applied: a receipt for each of its privacy
                                requests (privacy/receipts.py, docs/privacy-receipts.md)
    deletes_first               step 1: the message's own deletes, before any of its reads
    late_events                 step 2: events of a deleted user stamped at or before its deletion
                                (not applied) delete the ids they connect to it, as of its deletion
    erase_what_a_delete_missed  step 6: after the message's writes, a delete that raced them is
                                applied again over what they wrote
    requests_erased             once the message is applied: its requests' receipts erased
(`late_for_deleted`, step 3: a link the delete of its user or of its previousId would have taken.)
docs/processing.md proves why no order of a delete and a writer leaves data the delete covers.
"""

from __future__ import annotations

from typing import Any

from segment_bridge.deleted_ids import DeletedIds
from segment_bridge.envelope import Envelope
from segment_bridge.mapping import Mapping
from segment_bridge.planning import Contribution, Deletion, Link, connected_ids
from segment_bridge.privacy.deletion import delete_identities, erase, forget
from segment_bridge.privacy.ports import Receiving, Work
from segment_bridge.privacy.receipts import Receipts
from segment_bridge.profiles import Stored


def requests_received(
    envelope: Envelope, events: list[dict[str, Any]], repositories: Receiving, mapping: Mapping
) -> Receipts:
    """Before the message is applied: its privacy requests (each `delete` as step 1 applies it: its
    subject and time), each given a receipt `received` where it has none (a repeat of a request is the
    same receipt), saying where the delivery came from (`envelope.source`); under the workspace's
    `mapping`, as the deletes are applied (none for an id its merge protection blocks). The receipts to mark
    erased once the message is applied (`requests_erased`)."""
    receipts = Receipts.of(
        envelope.workspaceId,
        events,
        received_at=envelope.receivedAt,
        source=envelope.source,
        request_id=envelope.requestId,
        book=repositories.receipts,
        purge_list=repositories.profiles,
        mapping=mapping,
    )
    receipts.received()
    return receipts


def requests_erased(receipts: Receipts) -> None:
    """Once the message is applied (its deletes finished: one unfinished raised DeletionUnfinished before
    this, the message is deferred and its receipt stays `received`): each receipt `erased`, its entity
    listed for the purge again (a purge run meanwhile cannot leave the receipt unfinished)."""
    receipts.erased()


def deletes_first(work: Work, deletions: list[Deletion]) -> None:
    """Step 1: the message's deletes, in order, before it reads anything (deletion.py). An erase past the
    work's time raises DeletionUnfinished, its progress recorded for the next receive."""
    delete_identities(work, deletions)


def late_events(work: Work, key: str, deleted_at: str, dropped: list[Contribution]) -> bool:
    """Step 2, for an entity deleted at `deleted_at` whose events in the message are stamped at or before
    it (`dropped`: not applied): the ids they connect to a deleted user (`connected_ids`: the anonymousId
    sent with the userId, an alias's previousId) are deleted as of that user's deletion, as they would
    have been had the events arrived first; and the entity is listed for the archive purge again (the
    late events were archived in raw/ and kept in unapplied/). True if ids were deleted (the message's
    entities are read again)."""
    ids = [i for c in dropped for i in connected_ids(c.event)] if key.startswith("U#") else []
    if ids:
        forget(work, ids, deleted_at, key, {key})
    work.profiles.mark_for_purge(work.workspace_id, [key], deleted_at, key)
    return bool(ids)


def link_keys(link: Link) -> tuple[str, str, str]:
    """The entities whose deletion takes a link: its user, and its previousId as either kind."""
    return (f"U#{link.user_id}", f"A#{link.previous_id}", f"U#{link.previous_id}")


def late_for_deleted(link: Link, stored: dict[str, Stored]) -> bool:
    """Step 3: whether a link was made at or before a delete of its user (the delete took its ids with
    it) or of its previousId (the delete took the link): it would be gone had it arrived first."""
    times = [stored[key].deleted_at for key in link_keys(link) if key in stored]
    return any(deleted_at is not None and link.stamp[0] <= deleted_at for deleted_at in times)


def erase_what_a_delete_missed(
    work: Work, read: dict[str, str | None], index: DeletedIds, links: list[Link]
) -> None:
    """Step 6: a delete whose tombstone was written after step 2 read the entity may have erased before
    this message's writes landed (a profile written over the erased one, history items after the erase
    listed them, a link after the delete paged them). One read of the deletion times written meanwhile
    tells: any entity (or link id) whose deletion time rose since `read` (what step 2 read) is erased
    again as of it, which removes what the message wrote at or before that time. A delete that comes
    later still reads after the writes, so it sees them: no order of the two leaves data the delete
    covers. The tombstones read again are those step 2's `index` may hold; all of them if a delete has
    changed the index since (deleted_ids.py: a delete indexes its keys before it tombstones them)."""
    profiles, workspace_id = work.profiles, work.workspace_id
    again = profiles.deleted_ids(workspace_id)
    check = list(read) if again.changed_since(index) else index.to_read(read)  # (unknown: every key)
    now = profiles.deletion_times(workspace_id, check) if check else {}
    risen = {key: at for key, at in now.items() if read.get(key) is None or at > str(read[key])}
    for key, at in risen.items():
        erase(work, key, at)
    for link in links:
        times = [risen[key] for key in link_keys(link) if key in risen]
        if any(link.stamp[0] <= at for at in times):
            profiles.remove_link(workspace_id, link.previous_id, max(times))
