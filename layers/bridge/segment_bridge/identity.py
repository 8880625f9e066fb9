"""Merge protection: the ids that must never merge strangers, and how many anonymous ids one user may
be linked to (Segment Unify's Identity Resolution rules: blocked values and limits).

Both rules are decided without reading anything stored, so events in any order still converge:
- a blocked id is decided by the event's value and the workspace's mapping alone (`screen`): a blocked
  userId, anonymousId or previousId is as if the event did not carry it;
- the limit is a function of the user's `anonymous_ids` (id -> first seen), itself a merge of the events
  (profiles.py): `linked` keeps, in order of first sighting (then id), each id unless `max_anonymous_ids`
  ids already kept were first seen within `anonymous_ids_window_days` before it ("5 weekly", Segment's
  default for anonymous_id). A link beyond it stays stored (a privacy delete still reaches its id) but
  is refused: the read model never resolves through it, never lists it, never adds its counts.

This module is pure (no AWS, no state).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

DEFAULT_BLOCKED_VALUES = frozenset(
    {
        "",
        "undefined",
        "null",
        "nil",
        "none",
        "nan",
        "anonymous",
        "guest",
        "unknown",
        "n/a",
        "0",
        "-1",
        "[object object]",
    }
)
"""Exact values (compared trimmed and case-insensitively): what client bugs send as an id. Segment
suggests -1, null and anonymous; the rest are the same bug in other languages."""
DEFAULT_BLOCKED_PATTERNS = (
    r"^[0-]*$",
    r"^\s*$",
    r"\{\{.*\}\}",
    r"\$\{.*\}",
)
"""Patterns (Python regular expressions, searched): zeroes and dashes (Segment's suggestion), blank
values, and unrendered templates ({{userId}}, ${userId})."""
MAX_ANONYMOUS_IDS_LIMIT = 32
"""The most a workspace may allow: a profile keeps at most profiles.MAX_ANONYMOUS_IDS anonymous ids."""
MAX_PATTERN_LENGTH = 256
MAX_BLOCKED_VALUES = 1000
MAX_BLOCKED_PATTERNS = 50
SCREENED_IDS = ("userId", "anonymousId", "previousId", "groupId")


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"not a valid regular expression: {error}") from None
    return pattern


Pattern = Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_LENGTH), AfterValidator(_compiles)]


class MergeProtection(BaseModel):
    """A workspace's merge protection (`merge_protection` in its mapping). Setting `blocked_values` or
    `blocked_patterns` replaces the defaults: list them again to keep them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    blocked_values: frozenset[Annotated[str, Field(max_length=256)]] = Field(
        default=DEFAULT_BLOCKED_VALUES,
        max_length=MAX_BLOCKED_VALUES,
        description="Ids never used as ids, compared trimmed and case-insensitively.",
    )
    blocked_patterns: tuple[Pattern, ...] = Field(
        default=DEFAULT_BLOCKED_PATTERNS,
        max_length=MAX_BLOCKED_PATTERNS,
        description="Regular expressions (searched) of ids never used as ids.",
    )
    max_anonymous_ids: int = Field(
        default=5,
        ge=1,
        le=MAX_ANONYMOUS_IDS_LIMIT,
        description="Anonymous ids a user may be linked to within the window (Segment: 5).",
    )
    anonymous_ids_window_days: int | None = Field(
        default=7,
        ge=1,
        le=3650,
        description="The window of the limit, in days (Segment: weekly); null: ever.",
    )

    def blocks(self, value: str) -> bool:
        """Whether `value` may never be used as an id."""
        return value.strip().casefold() in _folded(self.blocked_values) or any(
            pattern.search(value) for pattern in _compiled(self.blocked_patterns)
        )

    def linked(self, seen: dict[str, str]) -> set[str]:
        """The ids of `seen` (a user's anonymous ids: id -> first seen) the limit lets it be linked to."""
        kept: list[tuple[datetime, str]] = []
        window = timedelta(days=self.anonymous_ids_window_days) if self.anonymous_ids_window_days else None
        for value, first in sorted(seen.items(), key=lambda entry: (entry[1], entry[0])):
            moment = _moment(first)
            recent = [k for k in kept if window is None or moment - k[0] < window]
            if len(recent) < self.max_anonymous_ids:
                kept.append((moment, value))
        return {value for _, value in kept}


@lru_cache(maxsize=64)
def _folded(values: frozenset[str]) -> frozenset[str]:
    return frozenset(value.strip().casefold() for value in values)


@lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(pattern) for pattern in patterns)


def _moment(timestamp: str) -> datetime:
    try:
        return datetime.fromisoformat(timestamp)
    except ValueError:
        return datetime.min


@dataclass(frozen=True)
class Screened:
    """An event with its blocked ids taken out: `event` is what is applied (the original when nothing was
    blocked), `blocked` the fields whose values were blocked, and `reason` why nothing of it can be
    applied (None when it can)."""

    event: dict[str, Any]
    blocked: tuple[str, ...] = ()
    reason: str | None = None


def screen(event: dict[str, Any], protection: MergeProtection) -> Screened:
    """The event as merge protection lets it be applied: a blocked userId or anonymousId is as if the event
    had none (an event left with neither is not applied), and an alias whose previousId (or a group call
    whose groupId) is blocked links nothing, so it is not applied. Never quotes the ids."""
    blocked = tuple(
        name
        for name in SCREENED_IDS
        if isinstance(value := event.get(name), str) and name in event and protection.blocks(value)
    )
    if not blocked:
        return Screened(event)
    kept = {name: value for name, value in event.items() if name not in blocked}
    named = ", ".join(blocked)
    if "userId" not in kept and "anonymousId" not in kept:
        return Screened(kept, blocked, f"its ids are blocked by the workspace's merge protection ({named})")
    if event.get("type") == "alias" and ("previousId" in blocked or "userId" in blocked):
        return Screened(kept, blocked, f"an alias of a blocked id links nothing ({named})")
    if event.get("type") == "group" and "groupId" in blocked:
        return Screened(kept, blocked, f"a group call of a blocked groupId is not applied ({named})")
    return Screened(kept, blocked)


def refused_links(previous_ids: list[str], seen: dict[str, str], protection: MergeProtection) -> int:
    """How many of a user's links (their previousIds) the limit refuses, given its anonymous ids."""
    allowed = protection.linked(seen)
    return sum(1 for previous in previous_ids if previous not in allowed)
