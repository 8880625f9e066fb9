"""`stats` and `tail`: per-day counters and live events per workspace."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from bridge_dev import watch
from bridge_dev.cli.app import (
    cli,
    json_option,
    show,
    table_text,
    target_of,
    terminal_text,
)
from segment_bridge.stats import COUNTERS


@cli.command("stats")
@click.argument("workspace_id", required=False)
@click.option(
    "--days", default=7, show_default=True, type=click.IntRange(1, 366), help="The last N UTC days."
)
@json_option
@click.pass_context
def stats_command(ctx: click.Context, workspace_id: str | None, days: int, as_json: bool) -> None:
    """Per day: events accepted, rejected, echoes (our own events Segment sent back), applied, duplicates,
    unapplied; ids merge protection blocked and links it refused; track calls sent to Segment and parked.
    One workspace, or every workspace."""
    rows = watch.stats(target_of(ctx), workspace_id, days)
    columns = ["day", *COUNTERS] if workspace_id else ["workspace_id", "day", *COUNTERS]
    show(as_json, rows, lambda: table_text(rows, columns, "No workspaces."))


@cli.command("tail")
@click.argument("workspace_id")
@click.option(
    "--interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.2, 60),
    help="Seconds between polls.",
)
@click.option(
    "--seconds", type=click.FloatRange(0, min_open=True), help="Stop after this long (default: Ctrl-C)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@click.pass_context
def tail_command(
    ctx: click.Context, workspace_id: str, interval: float, seconds: float | None, as_json: bool
) -> None:
    """A workspace's events as they happen: accepted, rejected (with the reason), echoes, then applied or
    unapplied (with the reason); track calls sent and parked. Reads what the pipeline writes anyway (the
    archive, the daily counts): nothing is turned on, nothing is kept."""
    following = watch.Tail(target_of(ctx), workspace_id)
    following.start()  # an unknown workspace is said before anything else
    until = time.monotonic() + seconds if seconds else None
    if not as_json:
        click.echo(f"Watching {workspace_id} (Ctrl-C to stop).", err=True)
    try:
        for line in following.follow(interval, until, time.sleep):
            click.echo(json.dumps(line, ensure_ascii=False, default=str) if as_json else _tail_text(line))
    except KeyboardInterrupt:
        pass


def _tail_text(line: dict[str, Any]) -> str:
    """One line of `tail`: every value in it came from a Segment client, so each is escaped
    (terminal_text): a name or id cannot move the cursor, rewrite the line or write the clipboard."""
    text = {key: terminal_text(str(value)) for key, value in line.items() if value is not None}
    at = text.get("at", "")[11:19]
    if "count" in line:
        return f"{at}  {text['kind']:<9}  {text['count']}"
    who = text.get("userId") or text.get("anonymousId") or "-"
    name = f" {line['name']!r}" if line.get("name") else ""
    reason = f"  ({text['reason']})" if text.get("reason") else ""
    message_id = text.get("messageId") or ""
    return (
        f"{at}  {text['kind']:<9}  {text.get('type') or '?'}{terminal_text(name)} {who} {message_id}{reason}"
    )
