"""moto's DynamoDB Query at a partition's cost, as DynamoDB's is: the local stack's emulator only.

moto 5 answers every Query by sorting every item of the table (`Table.all_items`) and then keeping
those of the key condition's partition: a Query costs the table's size (about 50 ms on a table of 2,000
items, whatever its Limit), where DynamoDB reads one partition's items in key order. A read API page
makes one Query per linked id, so on the local stack the emulator's sort, not the design, would be
the figure.

`install()` (done once, by `bridge_dev.local.start` and `python -m bridge_dev.fast_query`, moto's server
in a process of its own) hands moto's own Query, while it runs, the items of the queried partition
only (the table's, or the index's: items whose index hash key attributes equal the condition's), in
the order moto sorts them (so its sort is linear). moto then filters, sorts, pages and projects them
as before: the answers are moto's own (tests/unit/test_fast_query.py compares them on random tables).
Scans and everything else are untouched.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any

from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import Table

_narrowed = threading.local()
_installed = False
_original_query = Table.query
_original_all_items = Table.all_items


def _all_items(self: Table) -> list[Item]:
    narrowed: tuple[Table, list[Item]] | None = getattr(_narrowed, "items", None)
    if narrowed is not None and narrowed[0] is self:
        return list(narrowed[1])
    return _original_all_items(self)


def _partition(
    table: Table, hash_key: Any, index_name: str | None, conditions: Sequence[Any] | None
) -> list[Item] | None:
    """The items moto's Query would keep of all_items() (in any order: moto sorts what it keeps by a
    total order, the table's key last); None: leave the Query to moto alone."""
    if not table.range_key_attr:
        return None
    if index_name is None:
        return [item for item in table.items.get(hash_key, {}).values() if isinstance(item, Item)]
    wanted = [(name, value, value.value) for name, value in conditions or []]
    if not wanted:
        return None
    if len(wanted) == 1 and wanted[0][0] == table.hash_key_attr:  # the index's partition is the table's
        partitions = [table.items.get(wanted[0][1], {})]
    else:
        partitions = list(table.items.values())
    return [  # raw values compared first: DynamoType's == alone costs more than moto's own filter
        item
        for partition in partitions
        for item in partition.values()
        if isinstance(item, Item)
        and all(
            (found := item.attrs.get(name)) is not None and found.value == raw and found == value
            for name, value, raw in wanted
        )
    ]


def _in_moto_order(table: Table, items: list[Item], index_name: str | None) -> list[Item]:
    """`items` sorted as moto will sort them, by plain values computed once per item, so that moto's
    own sort (of DynamoTypes, whose every comparison computes both values again) meets them in order
    and is linear. Speed only: moto sorts them either way."""
    names: list[str | None] = [table.range_key_attr]
    if index_name is not None:
        schema = table.get_index(index_name).schema
        names = [k["AttributeName"] for k in schema if k["KeyType"] == "HASH"]
        names += [k["AttributeName"] for k in schema if k["KeyType"] == "RANGE"]
        names += [table.hash_key_attr, table.range_key_attr]

    def plain(item: Item) -> tuple[Any, ...]:
        values = [item.attrs.get(name) if name else None for name in names]
        return tuple(
            (0, "") if v is None else (1, v.value if v.type == "S" else v.cast_value) for v in values
        )

    try:
        return sorted(items, key=plain)
    except TypeError:  # values of mixed types: moto's order is its own to find
        return items


def _query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
    index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
    items = _partition(self, hash_key, index_name, kwargs.get("hash_key_conditions"))
    if items is not None:
        items = _in_moto_order(self, items, index_name)
    if items is None:
        return _original_query(self, hash_key, *args, **kwargs)
    _narrowed.items = (self, items)
    try:
        return _original_query(self, hash_key, *args, **kwargs)
    finally:
        _narrowed.items = None


def install() -> None:
    """Narrow moto's Query to the queried partition in this process (idempotent)."""
    global _installed
    if not _installed:
        Table.all_items = _all_items  # type: ignore[method-assign]
        Table.query = _query  # type: ignore[method-assign]
        _installed = True


def installed() -> bool:
    return _installed


def uninstall() -> None:
    global _installed
    Table.all_items = _original_all_items  # type: ignore[method-assign]
    Table.query = _original_query  # type: ignore[method-assign]
    _installed = False


def main(argv: Sequence[str] | None = None) -> None:
    """moto's server (its own arguments: -H host -p port), its Query narrowed."""
    import logging

    from moto.server import main as serve

    install()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per AWS call
    serve(list(argv if argv is not None else sys.argv[1:]))


if __name__ == "__main__":
    main()
