"""`rules`: change rules that turn an app table's changes into track calls; what a rule sends for a record."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from bridge_dev.cli.app import (
    cli,
    json_option,
    show,
    table_text,
    target_of,
)
from bridge_dev.cli.files import read_document
from segment_bridge.destinations import ChangeRule, InvalidRule
from segment_bridge.errors import InvalidPayload
from segment_bridge.outbound.delivery import (
    Change,
    Unsent,
    prepare,
    stream_changes,
)


@cli.group("rules")
def rules_group() -> None:
    """Change rules: changes in your own tables (AppTableStreamArn) sent to Segment as track calls."""


@rules_group.command("list")
@json_option
@click.pass_context
def rules_list(ctx: click.Context, as_json: bool) -> None:
    """The stack's change rules."""
    rows = [rule_view(rule) for rule in sorted(target_of(ctx).store.change_rules(), key=lambda r: r.name)]
    show(as_json, rows, lambda: table_text(rows, ["name", "table", "event", "when"], "No change rules."))


@rules_group.command("set")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_context
def rules_set(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Store a rule file (YAML or JSON, one rule), replacing the rule of the same name. Each field is
    checked (every expression must be JMESPath) before anything is stored."""
    rule = read_rule(file)
    target = target_of(ctx)
    target.store.put_change_rule(rule)
    seconds = target.settings.auth_cache_seconds
    data = {"stored": rule.name, "effective_within_seconds": seconds, "rule": rule_view(rule)}
    show(as_json, data, f"Stored change rule {rule.name}; running emitters use it within {seconds:g} s.")


@rules_group.command("delete")
@click.argument("name")
@json_option
@click.pass_context
def rules_delete(ctx: click.Context, name: str, as_json: bool) -> None:
    """Delete a change rule by name."""
    target_of(ctx).store.delete_change_rule(name)
    show(as_json, {"deleted": name}, f"Deleted change rule {name}.")


@rules_group.command("test")
@click.argument("rule_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--record",
    "record_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='A stream event (e.g. events/emitter_change_rule_modify.json) or {"eventName", "old", "new"}.',
)
@json_option
def rules_test(rule_file: Path, record_file: Path, as_json: bool) -> None:
    """What a rule file makes of a sample stream record: the track call it sends, or why not. Needs no
    stack; nothing is stored or sent."""
    rule = read_rule(rule_file)
    results = [test_rule(rule, record) for record in records(record_file)]
    show(as_json, results, lambda: "\n".join(_rule_test_text(rule.name, result) for result in results))


def _rule_test_text(name: str, result: dict[str, Any]) -> str:
    if not result["sends"]:
        return f"record {result['record']}: {name} sends nothing: {result['why']}"
    return f"record {result['record']}: {name} sends\n" + json.dumps(
        result["track"], indent=2, ensure_ascii=False
    )


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
