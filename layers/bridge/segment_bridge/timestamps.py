"""One timestamp parser for every place that reads an event's time (the Spec models, intake, profiles,
the processor, replay), and the one rule for timestamps from the future.

`Timestamp` is the type the Spec models declare: whatever pydantic accepts as a datetime (ISO 8601 with
`T`, `t` or a space, `Z`/`z` or an offset, epoch seconds or milliseconds as numbers or numeric strings),
and Go's `time.Time.String()` text (Segment's deletes carry it), that also exists in UTC (year 1 with a
positive offset, or 9999 with a negative one, does not).
`parse` and `normalised` use the same type, so a form the models accept is a form the processor reads.

The future rule (PostHog's): a timestamp more than FUTURE_TOLERANCE after the event's receivedAt is
clamped to receivedAt, counted (`Applied.clamped_timestamps`, metric `TimestampsClamped`) and the event
itself keeps what was sent (raw/ holds it as received). Applied in one place: `event_time`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, TypeAdapter, ValidationError

FUTURE_TOLERANCE = timedelta(hours=23)


class InvalidTimestamp(ValueError):
    """A value that is not a timestamp the Spec accepts (the message never quotes it)."""


def _in_utc(moment: datetime) -> datetime:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    try:
        return aware.astimezone(UTC)
    except OverflowError:
        raise ValueError("the timestamp falls outside years 1-9999 once in UTC") from None


_GO_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))? ([+-]\d{2})(\d{2})"
    r" (?:[A-Za-z]{1,6}|[+-]\d{2,4})(?: m=[+-]\d+(?:\.\d+)?)?"
)
"""Go's `time.Time.String()`: `2020-05-09 23:54:49.209808489 +0000 UTC m=+70366.298768264` (nanoseconds,
a numeric offset, the zone's abbreviation or `+03`-style name, and the monotonic clock reading, which says
nothing about the instant). Segment's privacy pipeline writes a delete's originalTimestamp so."""


def _from_go_text(value: object) -> object:
    """Go's text form as ISO 8601 (nanoseconds cut to the microseconds a datetime holds); anything else
    as it came."""
    if isinstance(value, str) and (found := _GO_TIME.fullmatch(value.strip())):
        day, clock, fraction, hours, minutes = found.groups()
        micro = f".{fraction[:6]}" if fraction else ""
        return f"{day}T{clock}{micro}{hours}:{minutes}"
    return value


Timestamp = Annotated[datetime, BeforeValidator(_from_go_text), AfterValidator(_in_utc)]
"""A datetime as the Spec accepts it, always aware and in UTC."""

_adapter: TypeAdapter[datetime] = TypeAdapter(Timestamp)


def parse(value: object) -> datetime:
    """Any form the Spec models accept, as an aware UTC datetime; InvalidTimestamp otherwise."""
    if isinstance(value, datetime):
        return _in_utc(value)
    try:
        return _adapter.validate_python(value)
    except ValidationError:
        raise InvalidTimestamp("not a timestamp in a form the Spec accepts") from None


def iso(moment: datetime) -> str:
    """One spelling per instant (UTC, milliseconds, Z), so timestamps compare as strings. OverflowError
    for a naive or offset datetime that does not exist in UTC."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalised(value: object) -> str:
    return iso(parse(value))


def event_time(timestamp: object, received_at: object) -> tuple[str, bool]:
    """(the time an event counts at, whether it was clamped): its timestamp (receivedAt if it has none),
    or receivedAt when the timestamp is more than FUTURE_TOLERANCE ahead of it."""
    received = parse(received_at)
    if timestamp is None or timestamp == "":
        return iso(received), False
    moment = parse(timestamp)
    if moment - received > FUTURE_TOLERANCE:
        return iso(received), True
    return iso(moment), False


def time_key(timestamp: str, message_id: str) -> str:
    """A history item's place in its entity's time order (the EventsTable's `by_time` index): timestamps
    are one fixed-width spelling (`iso`) without `#`, so `<timestamp>#<messageId>` sorts as the pair
    (timestamp, messageId) does, and splits back at its first `#`."""
    return f"{timestamp}#{message_id}"
