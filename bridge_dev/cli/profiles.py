"""`users show`, `events list`, `groups show`: what the processor wrote, as the product reads it."""

from __future__ import annotations

from typing import Any

import click

from bridge_dev.cli.app import (
    cli,
    fields_text,
    json_option,
    show,
    table_text,
    target_of,
)
from bridge_dev.target import Target
from segment_bridge.errors import NotFound
from segment_bridge.profiles import EntityKind, Profile


@cli.group()
def users() -> None:
    """Read user profiles."""


@users.command("show")
@click.argument("workspace_id")
@click.argument("user_id")
@json_option
@click.pass_context
def users_show(ctx: click.Context, workspace_id: str, user_id: str, as_json: bool) -> None:
    """A user's traits, channels, preferences, groups and event counts, with their linked ids'."""
    data = show_user(target_of(ctx), workspace_id, user_id)
    show(as_json, data, lambda: fields_text(list(data.items())))


@cli.group()
def events() -> None:
    """Read event history."""


@events.command("list")
@click.argument("workspace_id")
@click.argument("user_id")
@click.option("--anonymous", is_flag=True, help="USER_ID is an anonymousId (events before identify).")
@click.option("--linked/--no-linked", default=True, show_default=True, help="Include linked ids' events.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1), help="The latest N events.")
@json_option
@click.pass_context
def events_list(
    ctx: click.Context,
    workspace_id: str,
    user_id: str,
    anonymous: bool,
    linked: bool,
    limit: int,
    as_json: bool,
) -> None:
    """A user's events, oldest first."""
    rows = list_events(target_of(ctx), workspace_id, user_id, anonymous=anonymous, linked=linked, limit=limit)
    show(
        as_json,
        rows,
        lambda: table_text(rows, ["timestamp", "type", "name", "id", "properties"], "No events."),
    )


@cli.group()
def groups() -> None:
    """Read group profiles."""


@groups.command("show")
@click.argument("workspace_id")
@click.argument("group_id")
@json_option
@click.pass_context
def groups_show(ctx: click.Context, workspace_id: str, group_id: str, as_json: bool) -> None:
    """A group's traits and members."""
    data = show_group(target_of(ctx), workspace_id, group_id)
    show(as_json, data, lambda: fields_text(list(data.items())))


def profile_view(profile: Profile) -> dict[str, Any]:
    return {
        "traits": profile.traits,
        "channels": {name: sorted(values) for name, values in profile.channels.items()},
        "preferences": profile.preferences,
        "groups": sorted(profile.groups),
        "anonymous_ids": sorted(profile.anonymous_ids),
        "counts": profile.counts,
        "first_seen": profile.first_seen,
        "last_seen": profile.last_seen,
    }


def show_user(target: Target, workspace_id: str, user_id: str) -> dict[str, Any]:
    """A user's profile, with what its linked ids (anonymous ids, aliased ids) did before they were
    linked, and the counts of both together."""
    target.store.get_workspace(workspace_id)  # NotFound, rather than showing nothing
    store = target.store
    profile = store.read_profile(workspace_id, "U", user_id)
    if profile is None:
        raise NotFound(f"Workspace {workspace_id} has no user {user_id}.")
    linked: dict[str, dict[str, Any]] = {}
    combined = dict(profile.counts)
    for linked_id in store.linked_ids(workspace_id, user_id):
        before = store.read_profile(workspace_id, "A", linked_id) or store.read_profile(
            workspace_id, "U", linked_id
        )
        linked[linked_id] = {"counts": before.counts if before else {}}
        for name, count in (before.counts if before else {}).items():
            combined[name] = combined.get(name, 0) + count
    return {
        "workspace_id": workspace_id,
        "user_id": user_id,
        **profile_view(profile),
        "linked": linked,
        "counts_with_linked": combined,
    }


def list_events(
    target: Target, workspace_id: str, entity_id: str, *, anonymous: bool, linked: bool, limit: int
) -> list[dict[str, Any]]:
    """An entity's event history, oldest first (the last `limit`), with its linked ids' if asked."""
    target.store.get_workspace(workspace_id)  # NotFound, rather than showing nothing
    store = target.store
    entities: list[tuple[EntityKind, str]] = [("A" if anonymous else "U", entity_id)]
    if linked and not anonymous:  # what the linked (anonymous) ids did before they were linked
        entities += [("A", each) for each in store.linked_ids(workspace_id, entity_id)]
    history: list[dict[str, Any]] = []
    for kind, each in entities:
        for record in store.read_history(workspace_id, kind, each):
            history.append(
                {
                    "id": each,
                    "messageId": record["sk"].removeprefix("MSG#"),
                    "name": record.get("name"),
                    "type": record.get("type"),
                    "timestamp": record.get("timestamp"),
                    "properties": record.get("properties", {}),
                }
            )
    history.sort(key=lambda event: (event["timestamp"] or "", event["messageId"]))
    return history[-limit:]


def show_group(target: Target, workspace_id: str, group_id: str) -> dict[str, Any]:
    target.store.get_workspace(workspace_id)  # NotFound, rather than showing nothing
    store = target.store
    profile = store.read_profile(workspace_id, "G", group_id)
    if profile is None:
        raise NotFound(f"Workspace {workspace_id} has no group {group_id}.")
    view = profile_view(profile)
    return {
        "workspace_id": workspace_id,
        "group_id": group_id,
        "traits": view["traits"],
        "first_seen": view["first_seen"],
        "last_seen": view["last_seen"],
        "members": store.group_members(workspace_id, group_id),
    }
