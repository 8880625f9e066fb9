"""Change rules from the CLI: read and validate a rule file, and what a sample stream record would send.

A rule file is one ChangeRule (segment_bridge.outbound) as YAML or JSON; a record file is a stream event
as Lambda hands it to the EmitterFunction (events/emitter_change_rule_modify.json) or a plain document
{"eventName": ..., "old": {...}, "new": {...}} (the one a rule's paths are evaluated on).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bridge_dev.operations import read_document
from segment_bridge.delivery import Change, Unsent, prepare, stream_changes
from segment_bridge.errors import InvalidPayload
from segment_bridge.outbound import ChangeRule, InvalidRule


def read_rule(path: Path) -> ChangeRule:
    """A rule file, validated (pydantic's ValidationError names each wrong field, a bad JMESPath
    expression included)."""
    document = read_document(path)
    if not isinstance(document, dict):
        raise InvalidPayload(f"{path} must hold one change rule (an object).")
    return ChangeRule.model_validate(document)


def rule_view(rule: ChangeRule | InvalidRule) -> dict[str, Any]:
    """A rule as `rules list` shows it; a stored rule that no longer validates with why (`invalid`)."""
    if isinstance(rule, InvalidRule):
        return {"name": rule.name, "table": rule.table, "event": "", "when": "", "invalid": rule.reason}
    return rule.model_dump(mode="json")


def records(path: Path) -> list[Change]:
    """A record file's changes, as the emitter reads them (a plain document becomes one change of the
    rule's table, table left empty)."""
    document = read_document(path)
    if isinstance(document, dict) and isinstance(document.get("Records"), list):
        found = stream_changes(document, time.time)
        for change in found:
            if change.unreadable:
                raise InvalidPayload(f"{path}: {change.unreadable}.")
        return found
    if isinstance(document, dict) and {"eventName", "old", "new"} >= set(document) and document:
        images: dict[str, dict[str, Any]] = {}
        for image in ("old", "new"):
            value = document.get(image) or {}
            if not isinstance(value, dict):
                raise InvalidPayload(f"{path}: `{image}` must be an object (the item's image).")
            images[image] = value
        event_name = str(document.get("eventName", ""))
        return [Change("sample", event_name, "", {}, images["new"], time.time(), images["old"])]
    raise InvalidPayload(
        f'{path} must hold a stream event ({{"Records": [...]}}) or '
        '{"eventName": ..., "old": {...}, "new": {...}}.'
    )


def test_rule(rule: ChangeRule, change: Change) -> dict[str, Any]:
    """What the emitter would make of one record under `rule` (delivery.prepare, as the emitter runs it):
    the track call it sends, or why not (another table, the rule does not fire, or parked and why)."""
    result: dict[str, Any] = {"record": change.record_id, "sends": False}
    if change.table and change.table != rule.table:
        return result | {"why": f"the rule watches table {rule.table}; this record is from {change.table}"}
    prepared = list(prepare(replace(change, table=rule.table), outbox_table="", rules=[rule]))
    if not prepared:
        return result | {"why": f"`when` is false on this record ({rule.when})"}
    (outcome,) = prepared  # one rule: at most one track call
    if isinstance(outcome, Unsent):
        return result | {"why": f"parked: {outcome.reason}"}
    return result | {"sends": True, "track": outcome.payload}
