"""The processor's ports: what its use case needs from the store (the repositories' protocols) and what
it reports (Applied). processing.py, deletion.py and replay.py depend on these, never on boto3."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from segment_bridge.mapping import Mapping
from segment_bridge.privacy.deletion import DeletionWrites
from segment_bridge.privacy.receipts import PurgeRelist, ReceiptBook
from segment_bridge.profiles import Contribution, HistoryRecord, Link

# --- what the use case needs from the store ----------------------------------------------------------


class ProfileWrites(DeletionWrites, PurgeRelist, Protocol):
    """store.profiles: the processor's reads and single-purpose writes (besides a delete's, which it
    inherits: read_entities, put_profile, the tombstones and the erase)."""

    def existing_history(self, workspace_id: str, wanted: dict[str, set[str]]) -> dict[str, set[str]]: ...
    def deletion_times(self, workspace_id: str, keys: list[str]) -> dict[str, str]: ...
    def record(
        self,
        workspace_id: str,
        history: dict[str, list[HistoryRecord]],
        memberships: dict[str, list[str]],
        mapping_version: int,
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


class Repositories(Protocol):
    @property
    def profiles(self) -> ProfileWrites: ...
    @property
    def archive(self) -> ArchiveWrites: ...
    @property
    def receipts(self) -> ReceiptBook: ...
    def add_daily_counts(self, workspace_id: str, day: date, counts: dict[str, int]) -> None: ...


class MappingSource(Protocol):
    def get(self, workspace_id: str) -> Mapping | None: ...


# --- results ------------------------------------------------------------------------------------------


@dataclass
class Applied:
    """What applying a batch did, for logs and metrics; `unapplied` holds events kept with a reason."""

    entities: int = 0
    history_written: int = 0
    duplicates: int = 0
    links: int = 0
    deletions: int = 0
    skipped: int = 0
    ignored_preferences: int = 0
    clamped_timestamps: int = 0
    failed_paths: int = 0
    over_budget: int = 0
    unapplied: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: Applied) -> None:
        """Add another result's figures (and its unapplied events) to this one."""
        self.entities += other.entities
        self.history_written += other.history_written
        self.duplicates += other.duplicates
        self.links += other.links
        self.deletions += other.deletions
        self.skipped += other.skipped
        self.ignored_preferences += other.ignored_preferences
        self.clamped_timestamps += other.clamped_timestamps
        self.failed_paths += other.failed_paths
        self.over_budget += other.over_budget
        self.unapplied.extend(other.unapplied)

    def figures(self) -> dict[str, int]:
        """For logs: counts only, never event content."""
        return {
            "entities": self.entities,
            "history_written": self.history_written,
            "duplicates": self.duplicates,
            "links": self.links,
            "deletions": self.deletions,
            "skipped": self.skipped,
            "ignored_preferences": self.ignored_preferences,
            "clamped_timestamps": self.clamped_timestamps,
            "failed_paths": self.failed_paths,
            "over_budget": self.over_budget,
            "unapplied": len(self.unapplied),
        }


def unapplied_records(contributions: list[Contribution], reason: str) -> list[dict[str, Any]]:
    return [{"reason": reason, "event": c.event} for c in contributions if c.event is not None]
