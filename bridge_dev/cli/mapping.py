"""`mapping`: show, validate, set and preview a workspace's mapping."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from bridge_dev.cli.app import (
    CONTROLS,
    cli,
    json_option,
    show,
    target_of,
    value_text,
)
from bridge_dev.cli.files import read_body, read_mapping, read_mapping_noted
from bridge_dev.target import Target
from segment_bridge.ingest.intake import prepare
from segment_bridge.mapping import Mapping
from segment_bridge.processor.replay import ProfileChange, preview
from segment_bridge.read.model import profile_view


@cli.group()
def mapping() -> None:
    """A workspace's mapping: which events apply, channels, preferences, history retention."""


@mapping.command("show")
@click.argument("workspace_id")
@json_option
@click.pass_context
def mapping_show(ctx: click.Context, workspace_id: str, as_json: bool) -> None:
    """The workspace's current mapping (version 0: the defaults)."""
    store = target_of(ctx).store
    store.get_workspace(workspace_id)
    data = mapping_data(store.get_mapping(workspace_id))
    show(as_json, data, lambda: yaml_text(data))


EVENT_TYPE_ORDER = ("identify", "track", "page", "screen", "group", "alias", "delete")
"""The Spec's order of the types: a mapping's `event_types` print in it, the same on every call."""


def mapping_data(mapping: Mapping, **dump: Any) -> dict[str, Any]:
    """A mapping as printed: its sets (event types, event names) as lists in a stable order, which the
    model's frozensets do not have (their order changes with each process's string hashing)."""
    data = mapping.model_dump(mode="json", **dump)
    data["event_types"] = sorted(data["event_types"], key=EVENT_TYPE_ORDER.index)
    for names in ("include_events", "exclude_events"):
        if data.get(names) is not None:
            data[names] = sorted(data[names])
    protection = data.get("merge_protection")
    if isinstance(protection, dict) and isinstance(protection.get("blocked_values"), list):
        protection["blocked_values"] = sorted(protection["blocked_values"])
    return data


def yaml_text(data: Any) -> str:
    """YAML an operator can copy back into `mapping set`: a string holding a character the terminal
    output escapes (CONTROLS: ESC, CR, NEL, the line separators, bidi controls) is written double-quoted,
    where YAML reads `show`'s escapes (`\\x1b`, `\\u202e`) back as the characters they stand for."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = '"' if CONTROLS.search(value) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True).rstrip()


@mapping.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def mapping_validate(file: Path, as_json: bool) -> None:
    """Check a mapping file (YAML or JSON) without storing it; prints it with every default filled in."""
    mapping, notes = read_mapping_noted(file)
    data = mapping_data(mapping, exclude={"version"})
    show(
        as_json,
        {"valid": True, "mapping": data, "notes": notes},
        lambda: "\n".join([f"{file} is a valid mapping:", *(f"note: {n}" for n in notes), yaml_text(data)]),
    )


APPLIES_TO = "every message the processor starts from now on"
PROCESSOR_TIMEOUT_SECONDS = 150
"""The ProcessorFunction's Timeout (template.yaml): the longest a message started before a mapping change
can still be applying events under the previous version."""


@mapping.command("set")
@click.argument("workspace_id")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--wait",
    is_flag=True,
    help=f"Answer only once no message started before the change can still be applying events "
    f"({PROCESSOR_TIMEOUT_SECONDS} s, the ProcessorFunction's Timeout).",
)
@json_option
@click.pass_context
def mapping_set(ctx: click.Context, workspace_id: str, file: Path, wait: bool, as_json: bool) -> None:
    """Store a mapping file as the workspace's next version. The processor checks the stored version at
    the start of every message, so every message it starts from the moment this answers applies the new
    version; a message it was already applying finishes under the previous one (at most the
    ProcessorFunction's Timeout; --wait waits that out). `replay` applies it to archived events."""
    new, notes = read_mapping_noted(file)
    store = target_of(ctx).store
    store.get_workspace(workspace_id)
    stored = store.set_mapping(workspace_id, new)
    if wait:
        time.sleep(PROCESSOR_TIMEOUT_SECONDS)
    data = {
        "workspace_id": workspace_id,
        "version": stored.version,
        "applies_to": APPLIES_TO,
        "in_flight_seconds": 0 if wait else PROCESSOR_TIMEOUT_SECONDS,
        "notes": notes,
    }
    previous = stored.version - 1
    if wait:
        text = (
            f"{workspace_id} uses mapping version {stored.version}: "
            f"no event is applied under version {previous} any more."
        )
    else:
        text = (
            f"{workspace_id} uses mapping version {stored.version} for {APPLIES_TO}; a message already being "
            f"applied finishes under version {previous} (at most {PROCESSOR_TIMEOUT_SECONDS} s; --wait waits "
            "that out)."
        )
    show(as_json, data, "\n".join([text, *(f"note: {n}" for n in notes)]))


@mapping.command("preview")
@click.argument("workspace_id")
@click.argument("events_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--mapping",
    "mapping_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Preview this mapping file instead of the stored one.",
)
@json_option
@click.pass_context
def mapping_preview(
    ctx: click.Context, workspace_id: str, events_file: Path, mapping_file: Path | None, as_json: bool
) -> None:
    """What a file's events (a body as Segment sends it, or an events/*.json) would change; nothing is
    written."""
    data = preview_mapping(target_of(ctx), workspace_id, events_file, mapping_file)
    show(as_json, data, lambda: _preview_text(data))


def _preview_text(data: dict[str, Any]) -> str:
    lines = [
        f"{data['events']} events under mapping {data['mapping']}: "
        f"{sum(1 for c in data['changes'] if c['changed'] or c['history'])} profiles change, "
        f"{data['skipped']} events skipped, "
        f"{len(data['rejected'])} rejected. Nothing was written."
    ]
    for change in data["changes"]:
        lines.append(f"\n{change['entity']}{' (new)' if change['new'] else ''}")
        if not change["changed"] and not change["history"]:
            lines.append("  no change")
        for name, values in change["changed"].items():
            lines.append(f"  {name}: {value_text(values['before'])} -> {value_text(values['after'])}")
        for record in change["history"]:
            lines.append(f"  + history {record['name']} at {record['timestamp']}")
    for link in data["links"]:
        lines.append(f"\nlink {link['previous_id']} -> {link['user_id']}")
    for rejection in data["rejected"]:
        lines.append(f"\nrejected #{rejection['index']}: {rejection['reason']}")
    return "\n".join(lines)


def preview_mapping(
    target: Target, workspace_id: str, events_file: Path, mapping_file: Path | None
) -> dict[str, Any]:
    """What a file's events would change under the workspace's mapping (or the mapping in
    `mapping_file`), writing nothing."""
    target.store.get_workspace(workspace_id)  # NotFound, rather than showing nothing
    store = target.store
    mapping = read_mapping(mapping_file) if mapping_file else store.get_mapping(workspace_id)
    body, path = read_body(events_file)
    events, rejections = prepare(body, workspace_id, datetime.now(UTC), path)
    planned, changes = preview(
        events,
        mapping,
        lambda kind, id_: store.read_profile(workspace_id, kind, id_),
        lambda wanted: store.existing_history(workspace_id, wanted),
    )
    return {
        "workspace_id": workspace_id,
        "mapping": str(mapping_file) if mapping_file else f"version {mapping.version}",
        "events": len(events),
        "rejected": [rejection.as_dict() for rejection in rejections],
        "skipped": planned.skipped,
        "ignored_preferences": planned.ignored_preferences,
        "links": [{"previous_id": link.previous_id, "user_id": link.user_id} for link in planned.links],
        "deletions": [f"{deletion.kind}#{deletion.id}" for deletion in planned.deletions],
        "changes": [_change_view(change) for change in changes],
    }


def _change_view(change: ProfileChange) -> dict[str, Any]:
    before = profile_view(change.before) if change.before else None
    after = profile_view(change.after)
    return {
        "entity": f"{change.kind}#{change.id}",
        "new": before is None,
        "changed": {
            name: {"before": before[name] if before else None, "after": value}
            for name, value in after.items()
            if before is None or before[name] != value
        },
        "history": [
            {"messageId": r.message_id, "name": r.name, "timestamp": r.timestamp} for r in change.history
        ],
    }
