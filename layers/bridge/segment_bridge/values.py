"""JSON-like values to and from what DynamoDB (and its streams) hold: numbers are Decimals there."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any


def to_dynamo(value: Any) -> Any:
    """JSON-like data as DynamoDB takes it, the one conversion of every write (the processor's, the
    outbox's, the CLI's `publish`): floats as Decimal (NaN and infinities, which DynamoDB cannot hold,
    as null), map keys as text with empty keys left out, tuples as lists, and a set as a DynamoDB set
    when it can be one (non-empty, all text or all numbers), else as a list."""
    if type(value) is str or type(value) is int or isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, dict):
        return {str(key): to_dynamo(item) for key, item in value.items() if str(key) != ""}
    if isinstance(value, list | tuple):
        return [to_dynamo(item) for item in value]
    if isinstance(value, set | frozenset):
        members = [to_dynamo(item) for item in value]
        if members and all(isinstance(m, str) for m in members):
            return set(members)
        if members and all(isinstance(m, int | Decimal) and not isinstance(m, bool) for m in members):
            return set(members)
        return members
    return value


def to_json(value: Any) -> Any:
    """DynamoDB data (an item or a stream image) as JSON-like data: Decimals as numbers, sets as lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, list | set | tuple):
        return [to_json(item) for item in value]
    return value
