"""What the processor reports: a message's figures (`Applied`, for logs and metrics, with the events
kept with a reason) and one entity's profile write (`Written`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segment_bridge.planning import Contribution, HistoryRecord
from segment_bridge.profiles import Counted, Profile


@dataclass
class Applied:
    """What applying a batch did, for logs and metrics; `unapplied` holds events kept with a reason."""

    entities: int = 0
    changed: int = 0
    """Entities whose stored profile changed (`entities` counts those written to or found unchanged)."""
    history_written: int = 0
    duplicates: int = 0
    links: int = 0
    deletions: int = 0
    skipped: int = 0
    ignored_preferences: int = 0
    clamped_timestamps: int = 0
    failed_paths: int = 0
    over_budget: int = 0
    refused: int = 0
    """Messages dropped unread: their workspace is being deleted, or is gone (jobs/offboard.py)."""
    blocked_ids: int = 0
    """Ids merge protection took out of the events (identity.py)."""
    refused_links: int = 0
    """Links written whose previousId the user's anonymous ids limit refuses (identity.py)."""
    unapplied: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: Applied) -> None:
        """Add another result's figures (and its unapplied events) to this one."""
        self.entities += other.entities
        self.changed += other.changed
        self.history_written += other.history_written
        self.duplicates += other.duplicates
        self.links += other.links
        self.deletions += other.deletions
        self.skipped += other.skipped
        self.ignored_preferences += other.ignored_preferences
        self.clamped_timestamps += other.clamped_timestamps
        self.failed_paths += other.failed_paths
        self.over_budget += other.over_budget
        self.refused += other.refused
        self.blocked_ids += other.blocked_ids
        self.refused_links += other.refused_links
        self.unapplied.extend(other.unapplied)

    def figures(self) -> dict[str, int]:
        """For logs: counts only, never event content."""
        return {
            "entities": self.entities,
            "changed": self.changed,
            "history_written": self.history_written,
            "duplicates": self.duplicates,
            "links": self.links,
            "deletions": self.deletions,
            "skipped": self.skipped,
            "ignored_preferences": self.ignored_preferences,
            "clamped_timestamps": self.clamped_timestamps,
            "failed_paths": self.failed_paths,
            "over_budget": self.over_budget,
            "refused": self.refused,
            "blocked_ids": self.blocked_ids,
            "refused_links": self.refused_links,
            "unapplied": len(self.unapplied),
        }


def unapplied_records(contributions: list[Contribution], reason: str) -> list[dict[str, Any]]:
    return [{"reason": reason, "event": c.event} for c in contributions if c.event is not None]


@dataclass(frozen=True)
class Written:
    """One entity's profile write (step 4): the records it counted now and those it knew already."""

    counted: int
    known: int
    to_record: list[HistoryRecord]
    """History items still to write (those not already there, and not born expired)."""
    to_mark: list[Counted]
    """Counted markers still to write (those not already there)."""
    profile: Profile
    """The profile as written (bounded)."""
    changed: bool = True
    """Whether the stored profile changed (a redelivery or an unchanged replay changes nothing)."""
