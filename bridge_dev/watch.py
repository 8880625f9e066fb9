"""Watching a workspace: `segment-bridge stats` (its daily counts) and `segment-bridge tail` (its events as
they happen).

`tail` reads only what the pipeline already writes, so it costs nothing while nobody watches and keeps no
data of its own: the archive bucket's rejected/ (written by ingest as it answers), raw/ (written by the
processor as it takes a queue message, before applying it) and unapplied/ (written right after applying),
polled by listing the workspace's day; and the workspace's daily counts (STATS#<day>) for what is counted
but never kept (echoes, events sent to Segment or parked). An event is shown `accepted` when its raw/
object appears, then `applied` or `unapplied` (with the reason) once that object is SETTLE_SECONDS old.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bridge_dev.target import Target
from segment_bridge.stats import COUNTERS

SETTLE_SECONDS = 2.0
"""How long after its raw/ object a message's events are taken as applied unless unapplied/ has them
(the processor writes unapplied/ milliseconds after raw/)."""
KINDS = ("rejected", "raw", "unapplied")


# ---------------------------------------------------------------------------------------------- stats


def stats(
    target: Target, workspace_id: str | None, days: int, today: date | None = None
) -> list[dict[str, Any]]:
    """Each workspace's (or one workspace's) counts of the last `days` UTC days, today included, oldest
    first; days without counts show zeros."""
    last = today or datetime.now(UTC).date()
    first = last - timedelta(days=days - 1)
    if workspace_id is not None:
        ids = [target.store.get_workspace(workspace_id).workspace_id]
    else:
        ids = sorted(w.workspace_id for w in target.store.list_workspaces())
    rows = []
    for each in ids:
        found = target.store.daily_counts(each, first, last)
        for offset in range(days):
            day = (first + timedelta(days=offset)).isoformat()
            counts = found.get(day, {})
            rows.append(
                {"workspace_id": each, "day": day, **{name: counts.get(name, 0) for name in COUNTERS}}
            )
    return rows


# ---------------------------------------------------------------------------------------------- tail


def _event_fields(event: dict[str, Any]) -> dict[str, Any]:
    kind = event.get("type")
    name = event.get("event") if kind == "track" else event.get("name")
    return {
        "type": kind,
        "name": name,
        "userId": event.get("userId"),
        "anonymousId": event.get("anonymousId"),
        "messageId": event.get("messageId"),
    }


@dataclass
class Tail:
    """One workspace's new events, poll by poll (`poll()` returns what happened since the last poll).
    Starts from now: what the archive held before the first poll is not shown."""

    target: Target
    workspace_id: str
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    settle_seconds: float = SETTLE_SECONDS
    _seen: set[str] = field(default_factory=set)
    _pending: dict[str, tuple[datetime, date, list[dict[str, Any]]]] = field(default_factory=dict)
    _counts: dict[str, dict[str, int]] = field(default_factory=dict)
    _days: list[date] = field(default_factory=list)

    def start(self) -> None:
        self.target.store.get_workspace(self.workspace_id)
        today = self.clock().date()
        self._days = [today]
        for kind in KINDS:
            self._seen.update(key for key, _ in self._list(kind, today))
        self._counts = self._daily(today)

    def poll(self) -> list[dict[str, Any]]:
        now = self.clock()
        today = now.date()
        if today not in self._days:
            self._days = [self._days[-1], today]  # the day before stays watched across midnight
        lines: list[dict[str, Any]] = []
        archive = self.target.store.archive
        unapplied: dict[str, str] = {}
        for day in self._days:
            for key, written in self._list("rejected", day):
                if key in self._seen:
                    continue
                self._seen.add(key)
                for record in archive.read_object(key):
                    found = record.get("event")
                    event: dict[str, Any] = found if isinstance(found, dict) else {}
                    lines.append(
                        {
                            "kind": "rejected",
                            "at": record.get("receivedAt") or written.isoformat(),
                            **_event_fields(event),
                            "messageId": record.get("messageId"),
                            "reason": record.get("reason"),
                        }
                    )
            for key, written in self._list("raw", day):
                if key in self._seen:
                    continue
                self._seen.add(key)
                events = archive.read_object(key)
                self._pending[key] = (written, day, events)
                lines += [
                    {"kind": "accepted", "at": e.get("receivedAt") or written.isoformat(), **_event_fields(e)}
                    for e in events
                ]
            unapplied |= {key.rpartition("/")[2]: key for key, _ in self._list("unapplied", day)}
        for key, (written, _, events) in list(self._pending.items()):
            if (now - written).total_seconds() < self.settle_seconds:
                continue
            del self._pending[key]
            kept = unapplied.get(key.rpartition("/")[2])
            reasons = {
                str((record.get("event") or {}).get("messageId")): str(record.get("reason"))
                for record in (archive.read_object(kept) if kept else [])
            }
            for event in events:
                reason = reasons.get(str(event.get("messageId")))
                line = {
                    "kind": "unapplied" if reason else "applied",
                    "at": now.isoformat(),
                    **_event_fields(event),
                }
                lines.append(line | {"reason": reason} if reason else line)
        lines += self._count_changes(today, now)
        return lines

    def follow(
        self, interval: float, until: float | None, sleep: Callable[[float], None]
    ) -> Iterator[dict[str, Any]]:
        """Poll every `interval` seconds (until the monotonic time `until`, if given)."""
        import time

        if not self._days:  # not started by the caller
            self.start()
        while until is None or time.monotonic() < until:
            sleep(interval)
            yield from self.poll()
        for written, _, _ in list(self._pending.values()):  # let what is settling settle before stopping
            sleep(max(0.0, self.settle_seconds - (self.clock() - written).total_seconds()))
        yield from self.poll() if self._pending else ()

    def _list(self, kind: str, day: date) -> list[tuple[str, datetime]]:
        return self.target.store.archive.list_objects(kind, self.workspace_id, day)

    def _daily(self, day: date) -> dict[str, dict[str, int]]:
        return self.target.store.daily_counts(self.workspace_id, day, day)

    def _count_changes(self, today: date, now: datetime) -> list[dict[str, Any]]:
        """Echoes, sent and parked: counted, never kept, so shown as counts."""
        counts = self._daily(today)
        before = self._counts.get(today.isoformat(), {})
        after = counts.get(today.isoformat(), {})
        self._counts = counts
        return [
            {"kind": name, "at": now.isoformat(), "count": after.get(name, 0) - before.get(name, 0)}
            for name in ("echoes", "sent", "parked")
            if after.get(name, 0) > before.get(name, 0)
        ]
