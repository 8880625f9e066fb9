"""Daily counts per workspace: what `segment-bridge stats` shows (Segment's delivery overview, per day).

Each function adds its own figures, at most one write per request (ingest), queue message (processor)
or stream batch and workspace (emitter): an UpdateItem ADD on the workspace's STATS#<YYYY-MM-DD> item
(store/counts.py). Counting is best effort and at least once: a count that cannot be written is
dropped with a warning (it never fails or retries the work it counts), and work done twice (a request
Segment retries, a message redelivered) is counted twice.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Protocol

from segment_bridge.errors import BridgeError

COUNTERS = (
    "accepted",
    "rejected",
    "echoes",
    "applied",
    "duplicates",
    "skipped",
    "unapplied",
    "blocked_ids",
    "refused_links",
    "sent",
    "parked",
)
"""accepted, rejected, echoes: ingest (events queued, refused with a reason, our own outbound events that
Segment sent back); applied, duplicates, skipped, unapplied: processor (events applied to profiles,
events it had already applied, events the mapping skips, events kept in unapplied/ with a reason);
blocked_ids, refused_links: processor, merge protection (ids its blocked values took out of events,
links beyond the anonymous ids limit); sent,
parked: emitter (track calls Segment took, outbox items parked)."""

_logger = logging.getLogger(__name__)


class DailyCounts(Protocol):
    def add_daily_counts(self, workspace_id: str, day: date, counts: dict[str, int]) -> None: ...


def count_day(store: DailyCounts, workspace_id: str, day: date | datetime, **counts: int) -> bool:
    """Add the non-zero `counts` (names from COUNTERS) to the workspace's day (UTC) in one write; no
    write when all are zero. False when the write failed (dropped, with a warning)."""
    unknown = set(counts) - set(COUNTERS)
    if unknown:
        raise ValueError(f"unknown counters: {sorted(unknown)}")
    wanted = {name: value for name, value in counts.items() if value}
    if not wanted:
        return True
    utc_day = day.astimezone(UTC).date() if isinstance(day, datetime) else day
    try:
        store.add_daily_counts(workspace_id, utc_day, wanted)
    except BridgeError as error:
        _logger.warning("daily counts not kept", extra={"code": error.code})
        return False
    return True


def count_deliveries(store: DailyCounts, by_workspace: dict[str, dict[str, int]], day: date) -> None:
    """An emitter batch's sent and parked counts (delivery.Report.by_workspace): one write per workspace."""
    for workspace_id, counts in by_workspace.items():
        count_day(store, workspace_id, day, **counts)


def today() -> date:
    return datetime.now(UTC).date()
