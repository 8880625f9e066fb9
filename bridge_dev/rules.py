"""Change rules from the CLI: read and validate a rule file, and what a sample stream record would send.

A rule file is one ChangeRule (segment_bridge.outbound) as YAML or JSON; a record file is a stream event
as Lambda hands it to the EmitterFunction (events/emitter_change_rule_modify.json) or a plain document
{"eventName": ..., "old": {...}, "new": {...}} (the one a rule's paths are evaluated on).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bridge_dev.operations import read_document
from segment_bridge.delivery import stream_changes
from segment_bridge.errors import InvalidPayload
from segment_bridge.outbound import ChangeRule, Unsendable, track_call
from segment_bridge.values import to_json


def read_rule(path: Path) -> ChangeRule:
    """A rule file, validated (pydantic's ValidationError names each wrong field, a bad JMESPath
    expression included)."""
    document = read_document(path)
    if not isinstance(document, dict):
        raise InvalidPayload(f"{path} must hold one change rule (an object).")
    return ChangeRule.model_validate(document)


def rule_view(rule: ChangeRule) -> dict[str, Any]:
    return rule.model_dump(mode="json")


def records(path: Path) -> list[dict[str, Any]]:
    """A record file's changes, each as {"record_id", "table", "keys", "created_at", "document"}."""
    document = read_document(path)
    if isinstance(document, dict) and isinstance(document.get("Records"), list):
        found = []
        for change in stream_changes(document, time.time):
            if change.unreadable:
                raise InvalidPayload(f"{path}: {change.unreadable}.")
            found.append(
                {
                    "record_id": change.record_id,
                    "table": change.table,
                    "keys": change.keys,
                    "created_at": change.created_at,
                    "document": {
                        "eventName": change.event_name,
                        "old": to_json(change.old_image or {}),
                        "new": to_json(change.new_image or {}),
                    },
                }
            )
        return found
    if isinstance(document, dict) and {"eventName", "old", "new"} >= set(document) and document:
        plain = {"eventName": document.get("eventName", ""), "old": {}, "new": {}}
        for image in ("old", "new"):
            value = document.get(image) or {}
            if not isinstance(value, dict):
                raise InvalidPayload(f"{path}: `{image}` must be an object (the item's image).")
            plain[image] = value
        return [
            {"record_id": "sample", "table": None, "keys": {}, "created_at": time.time(), "document": plain}
        ]
    raise InvalidPayload(
        f'{path} must hold a stream event ({{"Records": [...]}}) or '
        '{"eventName": ..., "old": {...}, "new": {...}}.'
    )


def test_rule(rule: ChangeRule, record: dict[str, Any]) -> dict[str, Any]:
    """What the emitter would make of one record under `rule`: the track call it sends, or why not
    (another table, the rule does not fire, or an expression that cannot be evaluated: parked)."""
    result: dict[str, Any] = {"record": record["record_id"], "sends": False}
    if record["table"] is not None and record["table"] != rule.table:
        return result | {"why": f"the rule watches table {rule.table}; this record is from {record['table']}"}
    document = record["document"]
    try:
        if not rule.fires(document):
            return result | {"why": f"`when` is false on this record ({rule.when})"}
        item = rule.outbox_item(document, record["record_id"])
        keys = {"rule": rule.name, "record": record["record_id"], **record["keys"]}
        outbound = track_call(
            item,
            table=record["table"] or rule.table,
            keys=keys,
            record_id=record["record_id"],
            created_at=record["created_at"],
        )
    except Unsendable as error:
        return result | {"why": f"parked: {error}"}
    return result | {"sends": True, "track": outbound.payload}
