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
from segment_bridge.read.model import Reader, event_row, group_summary, user_summary


@cli.group()
def users() -> None:
    """Read user profiles."""


@users.command("show")
@click.argument("workspace_id")
@click.argument("user_id")
@click.option(
    "--anonymous", is_flag=True, help="USER_ID is an anonymousId (answered for its user if linked)."
)
@json_option
@click.pass_context
def users_show(ctx: click.Context, workspace_id: str, user_id: str, anonymous: bool, as_json: bool) -> None:
    """A user's traits, channels, preferences, groups and event counts, with their linked ids'."""
    data = show_user(target_of(ctx), workspace_id, user_id, anonymous=anonymous)
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
    """A user's latest events (with its linked ids'), shown oldest first."""
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


def reader_of(target: Target, workspace_id: str) -> Reader:
    """The read model over the target's tables; NotFound for a workspace that does not exist."""
    target.store.get_workspace(workspace_id)  # NotFound, rather than showing nothing
    return Reader(target.store.reading)


def show_user(target: Target, workspace_id: str, user_id: str, *, anonymous: bool = False) -> dict[str, Any]:
    """A user's profile as the read model answers it (read/model.py): resolved through links, with its
    linked ids' counts and the counts of both together."""
    reader = reader_of(target, workspace_id)
    try:
        user = reader.user(workspace_id, "anonymous_id" if anonymous else "user_id", user_id)
    except NotFound:
        raise NotFound(f"Workspace {workspace_id} has no user {user_id}.") from None
    return user_summary(user)


def list_events(
    target: Target, workspace_id: str, entity_id: str, *, anonymous: bool, linked: bool, limit: int
) -> list[dict[str, Any]]:
    """The user's latest `limit` events (the read model's first page, newest first), shown oldest first."""
    reader = reader_of(target, workspace_id)
    try:
        user = reader.user(workspace_id, "anonymous_id" if anonymous else "user_id", entity_id)
    except NotFound:
        return []
    page = reader.events(user, limit=limit, linked=linked)
    return [event_row(event) for event in reversed(page.items)]


def show_group(target: Target, workspace_id: str, group_id: str) -> dict[str, Any]:
    reader = reader_of(target, workspace_id)
    try:
        group = reader.group(workspace_id, group_id)
    except NotFound:
        raise NotFound(f"Workspace {workspace_id} has no group {group_id}.") from None
    return group_summary(group)
