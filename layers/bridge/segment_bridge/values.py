"""JSON-like values to and from what DynamoDB (and its streams) hold: numbers are Decimals there."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def to_dynamo(value: Any) -> Any:
    """JSON-like data as DynamoDB takes it: numbers as Decimal, no empty map keys."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {key: to_dynamo(item) for key, item in value.items() if key != ""}
    if isinstance(value, list | tuple):
        return [to_dynamo(item) for item in value]
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
