"""Privacy's ports: what a delete needs from the store (`DeletionWrites`), what it needs of the
processor's unit of work when the processor meets a delete (`Work`: hooks.py), and what a message's
receipts need of the processor's repositories (`Receiving`: the receipts' table, `ReceiptBook`, and the
purge list, `PurgeRelist`). Privacy never imports the processor: the unit of work satisfies `Work`, and
the processor's repositories `Receiving`, as they are."""

from __future__ import annotations

from typing import Protocol

from segment_bridge.deleted_ids import DeletedIds
from segment_bridge.profiles import Profile, Stored
from segment_bridge.receipts import Requested
from segment_bridge.tombstones import Linked, Tombstone


class DeletionWrites(Protocol):
    """store.profiles: what a delete reads and writes."""

    def read_entities(
        self, workspace_id: str, keys: list[str], tombstones: list[str] | None = None
    ) -> dict[str, Stored]: ...
    def deletion_times(self, workspace_id: str, keys: list[str]) -> dict[str, str]: ...
    def deleted_ids(self, workspace_id: str) -> DeletedIds: ...
    def put_deleted_ids(self, workspace_id: str, index: DeletedIds, previous_epoch: int) -> bool: ...
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
    ) -> bool: ...
    def put_tombstone(
        self, workspace_id: str, key: str, deleted_at: str, *, by: str | None = None
    ) -> Tombstone: ...
    def save_progress(self, workspace_id: str, key: str, tombstone: Tombstone) -> bool: ...
    def linked_page(self, workspace_id: str, user_id: str, after: str | None, limit: int) -> list[Linked]: ...
    def keep_erased_links(self, workspace_id: str, user_id: str, previous_ids: list[str]) -> None: ...
    def link_stamps(self, workspace_id: str, previous_ids: list[str]) -> dict[str, str]: ...
    def history_index(self, workspace_id: str, key: str) -> list[tuple[str, str, str]]: ...
    def memberships(self, workspace_id: str, key: str) -> list[str]: ...
    def remove(self, workspace_id: str, key: str, history: list[str], groups: list[str]) -> None: ...
    def remove_profile(self, workspace_id: str, key: str, version: int) -> bool: ...
    def remove_link(self, workspace_id: str, previous_id: str, through: str) -> bool: ...
    def mark_for_purge(self, workspace_id: str, keys: list[str], deleted_at: str, by: str) -> None: ...


class Work(Protocol):
    """What a delete needs of the work it runs within (the processor's unit of work for one message):
    whose data, the repositories, the mapping version its profile writes carry, and whether the
    message's share of the invocation's time is spent (checked between two chunks of an erase)."""

    @property
    def workspace_id(self) -> str: ...
    @property
    def profiles(self) -> DeletionWrites: ...
    @property
    def mapping_version(self) -> int: ...
    def out_of_time(self) -> bool: ...


class ReceiptBook(Protocol):
    """store.receipts: each state written once, forward only (receipts.py)."""

    def received(self, workspace_id: str, requests: list[Requested]) -> None: ...
    def erased(self, workspace_id: str, requests: list[Requested]) -> None: ...
    def purged(self, workspace_id: str, through: dict[str, str]) -> int: ...


class PurgeRelist(Protocol):
    """store.profiles: the purge's work list, listed again without lowering a later delete's time."""

    def relist_for_purge(self, workspace_id: str, key: str, deleted_at: str) -> None: ...


class Receiving(Protocol):
    """What a message's receipts need of the repositories the processor receives it with: the receipts'
    table, and the purge list its erased requests are listed on again."""

    @property
    def receipts(self) -> ReceiptBook: ...
    @property
    def profiles(self) -> PurgeRelist: ...
