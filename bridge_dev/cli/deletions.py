"""`users delete` and `deletions`: privacy requests from an operator, their receipts, a re-apply after a
restore, and the opt-in poll of the workspace's Segment regulations (docs/privacy-receipts.md)."""

from __future__ import annotations

import base64
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import click

from bridge_dev.cli.app import (
    cli,
    fields_text,
    json_option,
    masked,
    show,
    table_text,
    target_of,
    terminal_text,
    utc_day,
)
from bridge_dev.cli.profiles import users
from bridge_dev.target import Target
from segment_bridge.envelope import pack
from segment_bridge.errors import NotFound
from segment_bridge.ingest.intake import prepare, serialise
from segment_bridge.privacy.regulations import api_base, poll_workspace
from segment_bridge.receipts import Receipt, delete_event, request_fingerprint, requested_in
from segment_bridge.timestamps import iso

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
"""A page of `deletions list` (DynamoDB reads at most 1 MB a call either way)."""
COLUMNS = ("kind", "id", "state", "source", "received_at", "erased_at", "purged_at")


def queue_deletes(
    target: Target, workspace_id: str, events: list[dict[str, Any]], *, request_id: str
) -> list[dict[str, Any]]:
    """Judge `events` as intake does (the same validation and enrichment as an HTTP delivery), pack them
    into the ingest queue's envelope (source "operator") and queue them; their receipts written. Returns
    the events as queued."""
    store = target.store
    store.get_workspace(workspace_id)
    now = datetime.now(UTC)
    accepted, rejected = prepare(json.dumps(events).encode(), workspace_id, now)
    if rejected:
        raise click.BadParameter("; ".join(sorted({r.reason for r in rejected})))
    received_at = iso(now)
    bodies = pack(
        [serialise(event) for event in accepted],
        workspace_id=workspace_id,
        request_id=request_id,
        received_at=received_at,
        max_bytes=target.settings.queue_message_bytes,
        source="operator",
    )
    store.enqueue(bodies, workspace_id)
    store.receipts.received(
        workspace_id,
        requested_in(accepted, received_at=received_at, source="operator", request_id=request_id),
    )
    return accepted


@users.command("delete")
@click.argument("workspace_id")
@click.argument("user_id")
@click.option("--anonymous-id", help="An anonymousId of the user's to delete too (its own delete).")
@json_option
@click.pass_context
def users_delete(
    ctx: click.Context, workspace_id: str, user_id: str, anonymous_id: str | None, as_json: bool
) -> None:
    """Queue a privacy delete of the user, as one from Segment would be (same queue, same tombstone rules):
    its profile, history and links go, and its archived events at the next purge."""
    target = target_of(ctx)
    now = iso(datetime.now(UTC))
    events: list[dict[str, Any]] = [{"type": "delete", "userId": user_id, "timestamp": now}]
    if anonymous_id is not None:
        events[0]["anonymousId"] = anonymous_id
        events.append({"type": "delete", "anonymousId": anonymous_id, "timestamp": now})
    queued = queue_deletes(target, workspace_id, events, request_id=f"operator-{uuid.uuid4().hex}")
    data = {
        "workspace_id": workspace_id,
        "queued": len(queued),
        "deleted_at": queued[0]["timestamp"],
        "state": "received",
    }
    user = terminal_text(user_id)  # outside data: escaped for the terminal, newlines included
    show(
        as_json,
        data,
        f"Delete of {user} queued ({len(queued)} delete{'s' if len(queued) > 1 else ''}, as of "
        f"{data['deleted_at']}); follow it with:\n  segment-bridge deletions show {workspace_id} {user}",
    )


@cli.group()
def deletions() -> None:
    """Privacy requests' receipts; re-apply them after a restore; poll Segment's regulations (opt-in)."""


def _row(receipt: Receipt) -> dict[str, Any]:
    return receipt.as_dict()


def _rows_text(rows: list[dict[str, Any]], empty: str) -> str:
    return table_text(rows, COLUMNS, empty)  # each cell terminal-safe (app.value_text)


def _cursor_text(key: dict[str, str]) -> str:
    """A page's end as one opaque word for `--next` (URL-safe base64 of its key)."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def _cursor_key(text: str, workspace_id: str) -> dict[str, str]:
    """The key `--next` names; a clear usage error for anything that is not one of this workspace's."""
    refused = click.BadParameter(
        "not a cursor of this workspace's list (copy it from the line a `deletions list` printed)",
        param_hint="--next",
    )
    try:
        key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError):
        raise refused from None
    if (
        not isinstance(key, dict)
        or sorted(key) != ["gsi1sk", "pk", "sk"]
        or not all(isinstance(value, str) and value for value in key.values())
        or not key["pk"].startswith(f"WS#{workspace_id}#")
    ):
        raise refused
    return key


@deletions.command("list")
@click.argument("workspace_id")
@click.option("--pending", is_flag=True, help="Only requests not yet purged from the archive.")
@click.option(
    "--limit",
    default=DEFAULT_LIMIT,
    show_default=True,
    type=click.IntRange(1, MAX_LIMIT),
    help="The newest N requests.",
)
@click.option("--next", "after", metavar="CURSOR", help="Go on after the page that printed CURSOR.")
@json_option
@click.pass_context
def deletions_list(
    ctx: click.Context, workspace_id: str, pending: bool, limit: int, after: str | None, as_json: bool
) -> None:
    """The workspace's privacy requests, the newest received first, with the state and time of each step;
    a page of --limit at a time (the line below the page says how to see more)."""
    store = target_of(ctx).store
    store.get_workspace(workspace_id)
    start = None if after is None else _cursor_key(after, workspace_id)
    found, key = store.receipts.newest_of_workspace(workspace_id, limit, after=start, pending=pending)
    rows = [_row(r) for r in found]
    cursor = None if key is None else _cursor_text(key)
    more = None
    if cursor is not None:
        options = (" --pending" if pending else "") + (f" --limit {limit}" if limit != DEFAULT_LIMIT else "")
        more = f"segment-bridge deletions list {workspace_id}{options} --next {cursor}"

    def text() -> str:
        listed = _rows_text(rows, "No privacy requests." if not pending else "None pending.")
        return listed if more is None else f"{listed}\nMore: {terminal_text(more)}"

    show(as_json, {"receipts": rows, "next": cursor, "more": more}, text)


@deletions.command("show")
@click.argument("workspace_id")
@click.argument("subject_id")
@click.option("--anonymous", is_flag=True, help="SUBJECT_ID is an anonymousId.")
@json_option
@click.pass_context
def deletions_show(
    ctx: click.Context, workspace_id: str, subject_id: str, anonymous: bool, as_json: bool
) -> None:
    """Every privacy request of one user (or anonymous id): received, erased, purged, and when."""
    store = target_of(ctx).store
    store.get_workspace(workspace_id)
    rows = [
        _row(r) for r in store.receipts.of_entity(workspace_id, f"{'A' if anonymous else 'U'}#{subject_id}")
    ]
    if not rows:
        raise NotFound("No privacy request of this id is recorded in the workspace.")
    show(
        as_json,
        rows,
        lambda: "\n\n".join(fields_text(list(row.items())) for row in rows),
    )


@deletions.command("reapply")
@click.argument("workspace_id")
@click.option("--since", help="First UTC day (YYYY-MM-DD) of requests received; default: every request.")
@json_option
@click.pass_context
def deletions_reapply(ctx: click.Context, workspace_id: str, since: str | None, as_json: bool) -> None:
    """Queue again every privacy request received since a day, each the same delete (same subject, same
    time): after a restore of the tables to a point before them, they are erased again; otherwise each
    is a repeat and changes nothing."""
    target = target_of(ctx)
    store = target.store
    store.get_workspace(workspace_id)
    start = f"{utc_day(since).isoformat()}T00:00:00" if since else None
    found = store.receipts.of_workspace(workspace_id, start)
    events = [
        delete_event(r.key, r.deleted_at, f"sb-reapply-{request_fingerprint(r.key, r.deleted_at)}")
        for r in found
    ]
    if events:
        queue_deletes(target, workspace_id, events, request_id=f"reapply-{uuid.uuid4().hex}")
        store.receipts.reapplied(workspace_id, found)
    data = {"workspace_id": workspace_id, "since": since, "reapplied": len(events)}
    show(as_json, data, f"Queued {len(events)} privacy requests of {workspace_id} again.")


@deletions.command("token")
@click.argument("workspace_id")
@click.option(
    "--endpoint", default="us", show_default=True, help="us, eu, or the Public API's URL (a proxy)."
)
@click.option("--unset", is_flag=True, help="Stop polling: the token is deleted, the cursor forgotten.")
@click.option(
    "--token-stdin", is_flag=True, help="Read the token from stdin (otherwise it is asked for, not echoed)."
)
@json_option
@click.pass_context
def deletions_token(
    ctx: click.Context, workspace_id: str, endpoint: str, unset: bool, token_stdin: bool, as_json: bool
) -> None:
    """Opt in to Segment's regulations: store the workspace's Segment Public API token (Secrets Manager;
    never printed, never logged), or remove it with --unset. The RegulationsFunction then polls every hour."""
    target = target_of(ctx)
    regulations = target.store.regulations
    if unset:
        regulations.unset_regulations_token(workspace_id)
        show(
            as_json,
            {"workspace_id": workspace_id, "polling": False},
            f"{workspace_id} no longer polls regulations.",
        )
        return
    try:
        url = api_base(endpoint, target.settings.segment_endpoints)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--endpoint") from None
    target.store.get_workspace(workspace_id)
    if token_stdin:
        token = str(sys.stdin.readline()).strip()
    else:
        token = str(click.prompt("Segment Public API token", hide_input=True)).strip()
    if not token:
        raise click.BadParameter("the token is empty")
    regulations.set_regulations_token(workspace_id, token, endpoint)
    data = {"workspace_id": workspace_id, "polling": True, "url": url, "token": masked(token)}
    show(as_json, data, f"{workspace_id} polls {url}/regulations every hour (token {masked(token)}).")


@deletions.command("poll")
@click.argument("workspace_id")
@json_option
@click.pass_context
def deletions_poll(ctx: click.Context, workspace_id: str, as_json: bool) -> None:
    """List the workspace's Segment regulations now and queue the new deletions (what the hourly
    RegulationsFunction does); a token Segment refuses is said here."""
    target = target_of(ctx)
    store = target.store
    store.get_workspace(workspace_id)
    done = poll_workspace(
        workspace_id,
        polls=store.regulations,
        queue=store.queues,
        receipts=store.receipts,
        policy=target.settings.segment_endpoints,
        max_bytes=target.settings.queue_message_bytes,
    )
    if done is None:
        raise NotFound(
            f"{workspace_id} has no Public API token: segment-bridge deletions token {workspace_id}"
        )
    data = {"workspace_id": workspace_id, **done.figures()}
    show(
        as_json,
        data,
        f"Listed {done.listed} regulations: {done.deletes_queued} deletes queued from "
        f"{done.regulations_queued} new ones ({done.already_received} received before).",
    )
