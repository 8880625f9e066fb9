"""What DynamoDB holds, and the budgets we derive from it: decided once, checked where events enter
(spec.py, intake.py) and again in the store before any write (defence in depth).

Keys (UTF-8 bytes): a partition key holds at most 2,048 bytes, a sort key (and a GSI's) 1,024. Every id
ingest accepts becomes part of keys (store/profiles.py's docstring lists them); the tightest are the sort
keys `MEMBER#U#<userId>` / `MEMBER#A#<anonymousId>`, `GROUP#<groupId>`, `LINK#<previousId>` and
`IDGONE#<previousId>`, and the partition keys `WS#<ws>#LINK#<previousId>` / `WS#<ws>#U#<userId>` with
the longest workspace id.

Items: at most 400 KB, measured as `item_size` does (AWS's documented rules). A profile is kept under
PROFILE_BUDGET_BYTES (profiles.py bounds each grow-only map; see docs/data-model.md, "Bounded profiles").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

PARTITION_KEY_BYTES = 2048
SORT_KEY_BYTES = 1024
ITEM_BYTES = 400 * 1024
PROFILE_BUDGET_BYTES = 350 * 1024
"""A profile item stays under this (50 KB below DynamoDB's 400 KB), so it always has room to change."""

WORKSPACE_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
"""Letters, digits, `_` and `-`, 1-64 characters: never a `#` (our key separator)."""
MAX_WORKSPACE_ID_BYTES = 64
_WORKSPACE_ID = re.compile(WORKSPACE_ID_PATTERN)

_LONGEST_PARTITION_PREFIX = len(f"WS#{'w' * MAX_WORKSPACE_ID_BYTES}#LINK#")
_LONGEST_SORT_PREFIX = max(len(p) for p in ("MEMBER#U#", "MEMBER#A#", "GROUP#", "LINK#", "IDGONE#"))
MAX_ID_BYTES = min(PARTITION_KEY_BYTES - _LONGEST_PARTITION_PREFIX, SORT_KEY_BYTES - _LONGEST_SORT_PREFIX)
"""userId, anonymousId, groupId, previousId: 1,015 UTF-8 bytes, so every key they become fits."""


def valid_workspace_id(workspace_id: str) -> bool:
    return _WORKSPACE_ID.fullmatch(workspace_id) is not None


def utf8_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def id_fits(value: str) -> bool:
    """Whether an id fits every DynamoDB key it can become."""
    return utf8_bytes(value) <= MAX_ID_BYTES


def keys_fit(partition_key: str, sort_key: str) -> bool:
    return utf8_bytes(partition_key) <= PARTITION_KEY_BYTES and utf8_bytes(sort_key) <= SORT_KEY_BYTES


# --- item sizes --------------------------------------------------------------------------------------


def item_size(item: Mapping[str, Any]) -> int:
    """An item's size as DynamoDB counts it: each attribute's name (UTF-8 bytes) plus its value.

    AWS's rules ("DynamoDB item sizes and formats"): a string is its UTF-8 bytes; a number 1 byte per two
    significant digits plus 1 (leading and trailing zeros trimmed); binary its raw bytes; null and boolean
    1 byte; a list or map 3 bytes plus its elements, plus 1 byte per element (a map element counts its
    name too); a set the sum of its elements. None values are left out (as `store.aws.item` does)."""
    return sum(utf8_bytes(name) + value_size(value) for name, value in item.items() if value is not None)


def value_size(value: Any) -> int:
    if isinstance(value, str):
        return utf8_bytes(value)
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int | float | Decimal):
        return _number_size(value)
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, Mapping):
        return 3 + sum(utf8_bytes(str(k)) + value_size(v) + 1 for k, v in value.items())
    if isinstance(value, list | tuple):
        return 3 + sum(value_size(v) + 1 for v in value)
    if isinstance(value, set | frozenset):
        return sum(value_size(v) for v in value)
    return utf8_bytes(str(value))


def _number_size(value: int | float | Decimal) -> int:
    if type(value) is int and -_INTEGER_LIMIT < value < _INTEGER_LIMIT:
        significant = str(abs(value)).strip("0") or "0"  # an int's digits, as Decimal's below
    else:
        digits = Decimal(repr(value) if isinstance(value, float) else value).as_tuple().digits
        significant = "".join(map(str, digits)).strip("0") or "0"
    return (len(significant) + 1) // 2 + 1


# --- values ------------------------------------------------------------------------------------------

MAX_DEPTH = 32
"""Levels of nested attributes DynamoDB holds."""
UNSTORABLE_NUMBER = "a number is NaN, infinite, of more than 38 digits or beyond 1e-130..1e126"
_INTEGER_LIMIT = 10**38
_SMALLEST, _LARGEST = 1e-130, 1e126


def storable_number(value: object) -> bool:
    """What DynamoDB's Number holds: 38 significant digits, magnitudes from 1e-130 to below 1e126."""
    if type(value) is int:
        return -_INTEGER_LIMIT < value < _INTEGER_LIMIT
    if type(value) is float:
        return value == 0 or _SMALLEST <= abs(value) < _LARGEST
    return True


def unstorable(value: Any, *, levels: int = MAX_DEPTH) -> str | None:
    """Why DynamoDB would refuse `value` as an attribute (nesting beyond `levels`, numbers), or None."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        current, level = stack.pop()
        if level > levels:
            return f"it nests deeper than {levels} levels"
        for child in current.values() if isinstance(current, dict) else current:
            if isinstance(child, dict | list):
                stack.append((child, level + 1))
            elif not storable_number(child):
                return UNSTORABLE_NUMBER
    return None if storable_number(value) else UNSTORABLE_NUMBER
