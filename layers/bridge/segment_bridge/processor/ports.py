"""The processor's ports, every protocol it needs in one place: what its use case reads and writes
through the store (the repositories), where a deferred message goes (`Requeue`), where mappings come
from, and what the per-entity steps need of the message's unit of work (`Work`). unit.py, entities.py,
message.py and replay.py depend on these, never on boto3. (A delete's own needs are privacy/ports.py's:
`ProfileWrites` inherits them, and the unit of work satisfies privacy's `Work` too; `Repositories` is
privacy's `Receiving`, the receipts' table and the purge list message.py's two receipt hooks write.)"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any, Protocol

from segment_bridge.mapping import Mapping
from segment_bridge.planning import HistoryRecord, Link
from segment_bridge.privacy.ports import DeletionWrites, PurgeRelist, ReceiptBook
from segment_bridge.profiles import Counted, Seen


class ProfileWrites(DeletionWrites, PurgeRelist, Protocol):
    """store.profiles: the processor's reads and single-purpose writes (besides a delete's, which it
    inherits: read_entities, put_profile, the tombstones and the erase; and the receipts' relist)."""

    def existing_history(self, workspace_id: str, wanted: dict[str, set[str]]) -> dict[str, set[str]]: ...
    def seen_history(self, workspace_id: str, wanted: dict[str, set[str]]) -> dict[str, Seen]: ...
    def record(
        self,
        workspace_id: str,
        history: dict[str, list[HistoryRecord]],
        memberships: dict[str, list[str]],
        mapping_version: int,
        counted: dict[str, list[Counted]] | None = None,
    ) -> None: ...
    def put_link(self, workspace_id: str, link: Link, mapping_version: int) -> bool: ...


class ArchiveWrites(Protocol):
    """store.archive: what was received, and what could not be applied."""

    def archive_raw(
        self, workspace_id: str, received_at: datetime, name: str, events: list[dict[str, Any]]
    ) -> str: ...
    def keep_unapplied(
        self, workspace_id: str, received_at: datetime, name: str, records: list[dict[str, Any]]
    ) -> None: ...
    def archived_batches(self, workspace_id: str, day: date) -> Iterable[list[dict[str, Any]]]: ...


class ReplayProgress(Protocol):
    """store.jobs: a replay job's message counted once as applied, and the job ended once all are."""

    def count_applied(self, job_id: str, name: str, counters: dict[str, int]) -> bool: ...
    def complete_if_applied(self, job_id: str) -> bool: ...


class Repositories(Protocol):
    @property
    def profiles(self) -> ProfileWrites: ...
    @property
    def archive(self) -> ArchiveWrites: ...
    @property
    def jobs(self) -> ReplayProgress: ...
    @property
    def receipts(self) -> ReceiptBook: ...
    def add_daily_counts(self, workspace_id: str, day: date, counts: dict[str, int]) -> None: ...
    def workspace_open(self, workspace_id: str) -> bool: ...


class MappingSource(Protocol):
    def get(self, workspace_id: str) -> Mapping | None: ...


class Requeue(Protocol):
    """store.queues: a message put back on the ingest queue as a fresh one, visible after a delay."""

    def defer(self, body: str, workspace_id: str, delay_seconds: int = 0) -> None: ...


class Work(Protocol):
    """What the per-entity steps (entities.py) need of the message's unit of work (unit.py): whose
    entities, the repositories, and the mapping version every write carries."""

    @property
    def workspace_id(self) -> str: ...
    @property
    def profiles(self) -> ProfileWrites: ...
    @property
    def mapping_version(self) -> int: ...
