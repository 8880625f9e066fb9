"""segment-bridge: the operator's command line, for the local stack or a deployed stack.

    segment-bridge workspaces create "Acme"              # the local stack (make dev) by default
    segment-bridge --stack segment-bridge-prod users show ws_... user-42 --json

Every command takes --json (one JSON document on stdout; `tail --json`: one object a line). Errors go to
stderr, as {"code", "message"} with --json: never a traceback (main maps every exception, in one place).
Exit status: 0 done, 1 refused or failed (the message says why), 2 wrong usage (code "usage").
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from bridge_dev import operations, rules, watch
from bridge_dev.target import LOCAL_ENDPOINT, Target, TargetError, deployed_target, local_target
from bridge_dev.template import NoLocalStack, TemplateError
from segment_bridge import __version__
from segment_bridge.auth import new_api_key
from segment_bridge.errors import BridgeError
from segment_bridge.outbound import endpoint_url
from segment_bridge.replay import replay
from segment_bridge.stats import COUNTERS

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """The target is found on first use, so commands that need no stack (mapping validate) need none."""

    def __init__(self, find: Callable[[], Target]) -> None:
        self._find = find
        self._target: Target | None = None

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = self._find()
        return self._target


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(command)


def show(as_json: bool, data: Any, text: str | Callable[[], str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        click.echo(text() if callable(text) else text)


def _target(ctx: click.Context) -> Target:
    context = ctx.find_object(Context)
    if context is None:  # only when a command is called outside `cli`
        raise click.UsageError("segment-bridge commands run under the segment-bridge group")
    return context.target


def _lines(rows: list[tuple[str, Any]]) -> str:
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name:<{width}}  {_text(value)}" for name, value in rows)


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str) if value else "-"
    return "-" if value is None or value == "" else str(value)


def _table(rows: list[dict[str, Any]], columns: Sequence[str], empty: str) -> str:
    if not rows:
        return empty
    cells = [[_text(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[n]) for line in cells)) for n, column in enumerate(columns)]
    header = "  ".join(column.upper().ljust(widths[n]) for n, column in enumerate(columns))
    body = ("  ".join(c.ljust(widths[n]) for n, c in enumerate(line)).rstrip() for line in cells)
    return "\n".join([header.rstrip(), *body])


def _mask(secret: str) -> str:
    return f"…{secret[-4:]}" if len(secret) > 8 else "…"


# ---------------------------------------------------------------------------------------------- root


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--stack",
    envvar="SEGMENT_BRIDGE_STACK",
    help="A deployed stack's name (CloudFormation). Without it: the local stack.",
)
@click.option("--region", envvar=["AWS_REGION", "AWS_DEFAULT_REGION"], help="The deployed stack's region.")
@click.option("--profile", envvar="AWS_PROFILE", help="AWS credentials profile for a deployed stack.")
@click.option(
    "--endpoint",
    envvar="SEGMENT_BRIDGE_ENDPOINT",
    default=LOCAL_ENDPOINT,
    show_default=True,
    help="The local stack's embedded AWS (make dev's --aws-port).",
)
@click.version_option(__version__, prog_name="segment-bridge")
@click.pass_context
def cli(
    ctx: click.Context, stack: str | None, region: str | None, profile: str | None, endpoint: str
) -> None:
    """Operate Segment Bridge: workspaces and keys, mappings, profiles, dead letters, replays."""
    ctx.obj = Context(lambda: deployed_target(stack, region, profile) if stack else local_target(endpoint))


# ---------------------------------------------------------------------------------------------- workspaces


@cli.group()
def workspaces() -> None:
    """Create and list workspaces; issue, rotate and revoke their API keys; set the shared secret."""


@workspaces.command("create")
@click.argument("name")
@click.option("--id", "workspace_id", help="Choose the workspace id (default: ws_ and 20 random hex digits).")
@json_option
@click.pass_context
def workspaces_create(ctx: click.Context, name: str, workspace_id: str | None, as_json: bool) -> None:
    """Create a workspace and its first API key (shown only this once)."""
    store = _target(ctx).store
    workspace = store.create_workspace(name, workspace_id=workspace_id)
    key = store.issue_key(workspace.workspace_id, new_api_key())
    data = {
        "workspace_id": workspace.workspace_id,
        "name": name,
        "key_id": key.key_id,
        "api_key": key.api_key,
    }
    show(
        as_json,
        data,
        _lines([(k, v) for k, v in data.items()]) + "\n\nKeep the API key now: it is stored only as a hash.",
    )


@workspaces.command("list")
@json_option
@click.pass_context
def workspaces_list(ctx: click.Context, as_json: bool) -> None:
    """Every workspace, with its live key ids."""
    rows = [
        {
            "workspace_id": w.workspace_id,
            "name": w.name,
            "created_at": w.created_at,
            "key_ids": list(w.key_ids),
            "shared_secret": w.has_shared_secret,
        }
        for w in sorted(_target(ctx).store.list_workspaces(), key=lambda w: w.created_at)
    ]
    show(as_json, rows, lambda: _table(rows, list(rows[0]) if rows else [], "No workspaces."))


@workspaces.command("rotate-key")
@click.argument("workspace_id")
@json_option
@click.pass_context
def workspaces_rotate_key(ctx: click.Context, workspace_id: str, as_json: bool) -> None:
    """Issue a second live key; revoke the old one once every sender uses the new one."""
    store = _target(ctx).store
    old = store.get_workspace(workspace_id).key_ids
    key = store.issue_key(workspace_id, new_api_key())
    data = {
        "workspace_id": workspace_id,
        "key_id": key.key_id,
        "api_key": key.api_key,
        "old_key_ids": list(old),
    }
    hint = "".join(
        f"\nThen: segment-bridge workspaces revoke-key {workspace_id} {kid}"
        for kid in old
        if kid != key.key_id
    )
    show(
        as_json, data, _lines(list(data.items())) + "\n\nMove senders to the new key (shown only now)." + hint
    )


@workspaces.command("revoke-key")
@click.argument("workspace_id")
@click.argument("key_id")
@json_option
@click.pass_context
def workspaces_revoke_key(ctx: click.Context, workspace_id: str, key_id: str, as_json: bool) -> None:
    """Revoke a key (its id, from `workspaces list`). Functions may accept it for AUTH_CACHE_SECONDS more."""
    target = _target(ctx)
    target.store.revoke_key(workspace_id, key_id)
    seconds = target.settings.auth_cache_seconds
    data = {"workspace_id": workspace_id, "revoked": key_id, "effective_within_seconds": seconds}
    show(as_json, data, f"Revoked {key_id}; running functions stop accepting it within {seconds:g} s.")


@workspaces.command("secret")
@click.argument("workspace_id")
@click.option("--set", "value", help="The shared secret set in Segment's destination settings.")
@click.option("--generate", is_flag=True, help="Generate a secret (shown once) to paste into Segment.")
@click.option("--unset", is_flag=True, help="Stop checking X-Signature for this workspace.")
@json_option
@click.pass_context
def workspaces_secret(
    ctx: click.Context, workspace_id: str, value: str | None, generate: bool, unset: bool, as_json: bool
) -> None:
    """Set or unset the shared secret deliveries are signed with (X-Signature)."""
    if sum((value is not None, generate, unset)) != 1:
        raise click.UsageError("Give exactly one of --set VALUE, --generate or --unset.")
    secret = new_api_key().removeprefix("sbk_") if generate else value
    _target(ctx).store.set_shared_secret(workspace_id, None if unset else secret)
    data = {"workspace_id": workspace_id, "shared_secret": secret if generate else bool(secret)}
    text = (
        f"Shared secret removed from {workspace_id}."
        if unset
        else f"Shared secret set for {workspace_id}."
        + (
            f"\nPaste it into Segment's destination settings (shown only now):\n  {secret}"
            if generate
            else ""
        )
    )
    show(as_json, data, text)


# ---------------------------------------------------------------------------------------------- destination


@cli.group()
def destination() -> None:
    """Where a workspace's outbound events go: its Segment source's write key and region."""


@destination.command("set")
@click.argument("workspace_id")
@click.option("--write-key", required=True, help="The write key of the Segment source to send to.")
@click.option(
    "--endpoint",
    default="us",
    show_default=True,
    help="us, eu, or an https URL (a proxy; plain http to a loopback stand-in on the local stack).",
)
@json_option
@click.pass_context
def destination_set(
    ctx: click.Context, workspace_id: str, write_key: str, endpoint: str, as_json: bool
) -> None:
    """Send the workspace's outbox events to a Segment source. The stack's SegmentEndpoints parameter
    says which URLs it sends to (https to public addresses unless it says otherwise)."""
    target = _target(ctx)
    try:
        url = endpoint_url(endpoint, target.settings.segment_endpoints)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--endpoint") from None
    target.store.set_segment_destination(workspace_id, write_key, endpoint)
    data = {"workspace_id": workspace_id, "url": url, "write_key": _mask(write_key)}
    show(as_json, data, f"{workspace_id} sends to {url} (write key {_mask(write_key)}).")


@destination.command("show")
@click.argument("workspace_id")
@json_option
@click.pass_context
def destination_show(ctx: click.Context, workspace_id: str, as_json: bool) -> None:
    """The workspace's Segment destination (the write key masked)."""
    store = _target(ctx).store
    store.get_workspace(workspace_id)
    found = store.segment_destination(workspace_id)
    data = {
        "workspace_id": workspace_id,
        "url": found.url if found else None,
        "write_key": _mask(found.write_key) if found else None,
    }
    show(
        as_json, data, _lines(list(data.items())) if found else f"{workspace_id} has no Segment destination."
    )


# ---------------------------------------------------------------------------------------------- mapping


@cli.group()
def mapping() -> None:
    """A workspace's mapping: which events apply, channels, preferences, history retention."""


@mapping.command("show")
@click.argument("workspace_id")
@json_option
@click.pass_context
def mapping_show(ctx: click.Context, workspace_id: str, as_json: bool) -> None:
    """The workspace's current mapping (version 0: the defaults)."""
    store = _target(ctx).store
    store.get_workspace(workspace_id)
    data = store.get_mapping(workspace_id).model_dump(mode="json")
    show(as_json, data, lambda: _yaml(data))


def _yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip()


@mapping.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def mapping_validate(file: Path, as_json: bool) -> None:
    """Check a mapping file (YAML or JSON) without storing it; prints it with every default filled in."""
    data = operations.read_mapping(file).model_dump(mode="json", exclude={"version"})
    show(as_json, {"valid": True, "mapping": data}, lambda: f"{file} is a valid mapping:\n{_yaml(data)}")


@mapping.command("set")
@click.argument("workspace_id")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_context
def mapping_set(ctx: click.Context, workspace_id: str, file: Path, as_json: bool) -> None:
    """Store a mapping file as the workspace's next version (events from now on use it; `replay` applies
    it to archived events)."""
    new = operations.read_mapping(file)
    store = _target(ctx).store
    store.get_workspace(workspace_id)
    stored = store.set_mapping(workspace_id, new)
    data = {"workspace_id": workspace_id, "version": stored.version}
    show(as_json, data, f"{workspace_id} now uses mapping version {stored.version}.")


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
    data = operations.preview_mapping(_target(ctx), workspace_id, events_file, mapping_file)
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
            lines.append(f"  {name}: {_text(values['before'])} -> {_text(values['after'])}")
        for record in change["history"]:
            lines.append(f"  + history {record['name']} at {record['timestamp']}")
    for link in data["links"]:
        lines.append(f"\nlink {link['previous_id']} -> {link['user_id']}")
    for rejection in data["rejected"]:
        lines.append(f"\nrejected #{rejection['index']}: {rejection['reason']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- reading


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
    data = operations.show_user(_target(ctx), workspace_id, user_id)
    show(as_json, data, lambda: _lines(list(data.items())))


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
    rows = operations.list_events(
        _target(ctx), workspace_id, user_id, anonymous=anonymous, linked=linked, limit=limit
    )
    show(as_json, rows, lambda: _table(rows, ["timestamp", "type", "name", "id", "properties"], "No events."))


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
    data = operations.show_group(_target(ctx), workspace_id, group_id)
    show(as_json, data, lambda: _lines(list(data.items())))


def _day(value: str | None) -> date:
    if value is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


@cli.group()
def rejected() -> None:
    """Events refused at ingest, kept with their reasons."""


@rejected.command("list")
@click.argument("workspace_id")
@click.option("--date", "day", help="The UTC day (YYYY-MM-DD); default today.")
@click.option("--events", "with_events", is_flag=True, help="Include the events as they were sent.")
@json_option
@click.pass_context
def rejected_list(
    ctx: click.Context, workspace_id: str, day: str | None, with_events: bool, as_json: bool
) -> None:
    """The events a workspace had refused on a day, with the reason for each."""
    target = _target(ctx)
    wanted = _day(day)
    target.store.get_workspace(workspace_id)  # NotFound, rather than showing nothing
    rows = [
        record if with_events else {k: v for k, v in record.items() if k != "event"}
        for record in target.store.list_rejected(workspace_id, wanted)
    ]
    columns = ["receivedAt", "index", "messageId", "reason", *(["event"] if with_events else [])]
    show(as_json, rows, lambda: _table(rows, columns, "No rejected events that day."))


# ---------------------------------------------------------------------------------------------- dead letters

QUEUE = click.Choice(["ingest", "emitter"])


@cli.group()
def dlq() -> None:
    """Dead letters: queue messages the processor gave up on (ingest), events not sent to Segment
    (emitter)."""


@dlq.command("list")
@click.argument("queue", type=QUEUE)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1))
@json_option
@click.pass_context
def dlq_list(ctx: click.Context, queue: operations.Queue, limit: int, as_json: bool) -> None:
    """List what is parked for a queue: the bucket's parked/<queue>/, where the queue's messages are
    copied first (they stay on the queue until re-driven)."""
    rows = operations.list_dead_letters(_target(ctx), queue, limit)
    columns = (
        ["message_id", "sent_at", "receive_count", "kind", "workspace_id", "events", "received_at"]
        if queue == "ingest"
        else ["message_id", "sent_at", "kind", "workspace_id", "event", "reason"]
    )
    show(as_json, rows, lambda: _table(rows, columns, f"The {queue} dead-letter queue is empty."))


@dlq.command("redrive")
@click.argument("queue", type=QUEUE)
@click.option("--limit", default=10_000, show_default=True, type=click.IntRange(1))
@json_option
@click.pass_context
def dlq_redrive(ctx: click.Context, queue: operations.Queue, limit: int, as_json: bool) -> None:
    """Move the queue's messages into the bucket's parked/, then act on what is parked. Ingest: put each
    back on the IngestQueue. Emitter: send parked events to Segment again (same messageIds, so Segment
    dedupes). A parked item is removed once sent or re-queued; what still cannot go stays, with why."""
    result = operations.redrive(_target(ctx), queue, limit)
    data = result.as_dict()
    text = f"Re-drove {result.redriven} {queue} dead letters."
    if result.left:
        text += f" {len(result.left)} stay:\n" + _table(result.left, ["message_id", "kind", "still"], "")
    show(as_json, data, text)


# ---------------------------------------------------------------------------------------------- replay


@cli.command("replay")
@click.argument("workspace_id")
@click.option("--since", required=True, help="First UTC day (YYYY-MM-DD) of archived events.")
@click.option("--until", help="Last UTC day (YYYY-MM-DD); default today.")
@click.option("--dry-run", is_flag=True, help="Count what would apply; write nothing.")
@json_option
@click.pass_context
def replay_command(
    ctx: click.Context, workspace_id: str, since: str, until: str | None, dry_run: bool, as_json: bool
) -> None:
    """Apply the workspace's current mapping to its archived events again (idempotent)."""
    target = _target(ctx)
    first, last = _day(since), _day(until)
    if last < first:
        raise click.BadParameter("--until is before --since")
    store = target.store
    store.get_workspace(workspace_id)
    current = store.get_mapping(workspace_id)
    batches = operations.count_archived_batches(target, workspace_id, first, last)
    with click.progressbar(length=batches, label="Replaying", file=sys.stderr, show_pos=True) as bar:
        result = replay(
            workspace_id, first, last, current, store, dry_run=dry_run, on_batch=lambda _: bar.update(1)
        )
    figures = result.figures()
    data = {
        "workspace_id": workspace_id,
        "since": first.isoformat(),
        "until": last.isoformat(),
        "mapping_version": current.version,
        "dry_run": dry_run,
        "batches": batches,
        **figures,
    }
    verb = "would change" if dry_run else "changed"
    show(
        as_json,
        data,
        f"Replayed {batches} archived batches under mapping version {current.version}: {verb} "
        f"{figures['entities']} profiles, {figures['history_written']} new history items, "
        f"{figures['links']} links; {figures['skipped']} events skipped, {figures['unapplied']} unapplied.",
    )


# ---------------------------------------------------------------------------------------------- purge


@cli.command("purge")
@click.argument("workspace_id")
@click.option("--user", "user_id", help="Only this deleted user (and the ids linked to it).")
@json_option
@click.pass_context
def purge_command(ctx: click.Context, workspace_id: str, user_id: str | None, as_json: bool) -> None:
    """Remove deleted users' events from the archive (raw/, rejected/, unapplied/) now, as the daily
    PurgeFunction does: those stamped at or before each user's delete."""
    data = operations.purge_archive(_target(ctx), workspace_id, user_id)
    show(
        as_json,
        data,
        f"Purged {data['events_removed']} archived events of {data['entities']} deleted ids "
        f"({data['objects_rewritten']} of {data['objects_read']} objects rewritten).",
    )


# ---------------------------------------------------------------------------------------------- publish


@cli.command("publish")
@click.argument("workspace_id")
@click.option("--event", required=True, help="The track event's name.")
@click.option("--user", "user_id", help="userId (or give --anonymous-id).")
@click.option("--anonymous-id", help="anonymousId, for a user not yet identified.")
@click.option("--properties", default="{}", help="The event's properties, a JSON object.")
@click.option("--id", "item_id", help="The outbox item's sk (default EVT#<uuid>); the same id sends once.")
@json_option
@click.pass_context
def publish_command(
    ctx: click.Context,
    workspace_id: str,
    event: str,
    user_id: str | None,
    anonymous_id: str | None,
    properties: str,
    item_id: str | None,
    as_json: bool,
) -> None:
    """Write an outbox item as your product would; the emitter sends it to Segment as a track call."""
    try:
        values = json.loads(properties, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        raise click.BadParameter(f"not JSON: {reason}", param_hint="--properties") from None
    if not isinstance(values, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--properties")
    if not user_id and not anonymous_id:
        raise click.UsageError("Give --user or --anonymous-id.")
    data = operations.publish(
        _target(ctx),
        workspace_id,
        event=event,
        user_id=user_id,
        anonymous_id=anonymous_id,
        properties=values,
        item_id=item_id,
    )
    show(
        as_json, data, f"Published {event!r} as {data['sk']}; Segment will see messageId {data['messageId']}."
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON (or DynamoDB) holds")


# ---------------------------------------------------------------------------------------------- invoke


@cli.command("invoke")
@click.argument("function")
@click.option(
    "-e",
    "--event",
    "event_file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    help="The event (JSON file, - for standard input), e.g. events/ingest_webhook_batch.json.",
)
@json_option
@click.pass_context
def invoke_command(ctx: click.Context, function: str, event_file: Path | None, as_json: bool) -> None:
    """Run a function of template.yaml (e.g. IngestFunction) on an event, as `sam local invoke` does,
    without Docker: its handler and environment, against the stack. Its logs go to stderr."""
    result = operations.invoke(_target(ctx), function, operations.read_event(event_file), sys.stderr)
    show(as_json, result, lambda: json.dumps(result, indent=2, ensure_ascii=False))


# ---------------------------------------------------------------------------------------------- rules


@cli.group("rules")
def rules_group() -> None:
    """Change rules: changes in your own tables (AppTableStreamArn) sent to Segment as track calls."""


@rules_group.command("list")
@json_option
@click.pass_context
def rules_list(ctx: click.Context, as_json: bool) -> None:
    """The stack's change rules."""
    rows = [rules.rule_view(rule) for rule in sorted(_target(ctx).store.change_rules(), key=lambda r: r.name)]
    show(as_json, rows, lambda: _table(rows, ["name", "table", "event", "when"], "No change rules."))


@rules_group.command("set")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_context
def rules_set(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Store a rule file (YAML or JSON, one rule), replacing the rule of the same name. Each field is
    checked (every expression must be JMESPath) before anything is stored."""
    rule = rules.read_rule(file)
    target = _target(ctx)
    target.store.put_change_rule(rule)
    seconds = target.settings.auth_cache_seconds
    data = {"stored": rule.name, "effective_within_seconds": seconds, "rule": rules.rule_view(rule)}
    show(as_json, data, f"Stored change rule {rule.name}; running emitters use it within {seconds:g} s.")


@rules_group.command("delete")
@click.argument("name")
@json_option
@click.pass_context
def rules_delete(ctx: click.Context, name: str, as_json: bool) -> None:
    """Delete a change rule by name."""
    _target(ctx).store.delete_change_rule(name)
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
    rule = rules.read_rule(rule_file)
    results = [rules.test_rule(rule, record) for record in rules.records(record_file)]
    show(as_json, results, lambda: "\n".join(_rule_test_text(rule.name, result) for result in results))


def _rule_test_text(name: str, result: dict[str, Any]) -> str:
    if not result["sends"]:
        return f"record {result['record']}: {name} sends nothing: {result['why']}"
    return f"record {result['record']}: {name} sends\n" + json.dumps(
        result["track"], indent=2, ensure_ascii=False
    )


# ---------------------------------------------------------------------------------------------- stats


@cli.command("stats")
@click.argument("workspace_id", required=False)
@click.option(
    "--days", default=7, show_default=True, type=click.IntRange(1, 366), help="The last N UTC days."
)
@json_option
@click.pass_context
def stats_command(ctx: click.Context, workspace_id: str | None, days: int, as_json: bool) -> None:
    """Per day: events accepted, rejected, echoes (our own events Segment sent back), applied, duplicates,
    unapplied; track calls sent to Segment and parked. One workspace, or every workspace."""
    rows = watch.stats(_target(ctx), workspace_id, days)
    columns = ["day", *COUNTERS] if workspace_id else ["workspace_id", "day", *COUNTERS]
    show(as_json, rows, lambda: _table(rows, columns, "No workspaces."))


# ---------------------------------------------------------------------------------------------- tail


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
    following = watch.Tail(_target(ctx), workspace_id)
    until = time.monotonic() + seconds if seconds else None
    if not as_json:
        click.echo(f"Watching {workspace_id} (Ctrl-C to stop).", err=True)
    try:
        for line in following.follow(interval, until, time.sleep):
            click.echo(json.dumps(line, ensure_ascii=False, default=str) if as_json else _tail_text(line))
    except KeyboardInterrupt:
        pass


def _tail_text(line: dict[str, Any]) -> str:
    at = str(line.get("at", ""))[11:19]
    if "count" in line:
        return f"{at}  {line['kind']:<9}  {line['count']}"
    who = line.get("userId") or line.get("anonymousId") or "-"
    name = f" {line['name']!r}" if line.get("name") else ""
    reason = f"  ({line['reason']})" if line.get("reason") else ""
    message_id = line.get("messageId") or ""
    return f"{at}  {line['kind']:<9}  {line.get('type') or '?'}{name} {who} {message_id}{reason}"


# ---------------------------------------------------------------------------------------------- main


def _error_body(error: BaseException) -> dict[str, Any]:
    """Any exception as {"code", "message"}: the one place the CLI maps errors."""
    if isinstance(error, click.UsageError):
        return {"code": "usage", "message": error.format_message()}
    if isinstance(error, click.ClickException):
        return {"code": "invalid", "message": error.format_message()}
    if isinstance(error, BridgeError):
        return {"code": error.code, "message": error.message}
    if isinstance(error, ValidationError):
        reasons = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in error.errors(include_url=False)
        )
        return {"code": "invalid", "message": reasons}
    if isinstance(error, NoLocalStack):
        return {"code": "no_stack", "message": f"{error}. Start it with `make dev`, or pass --stack NAME."}
    if isinstance(error, TargetError):
        return {"code": "no_stack", "message": str(error)}
    if isinstance(error, TemplateError):
        return {"code": "invalid_template", "message": str(error)}
    if isinstance(error, FileNotFoundError | IsADirectoryError | PermissionError):
        return {"code": "unreadable_file", "message": f"{error.strerror}: {error.filename}"}
    if isinstance(error, UnicodeDecodeError):
        return {"code": "unreadable_file", "message": f"not UTF-8 text ({error.reason})"}
    if isinstance(error, ValueError | TypeError | ArithmeticError | RecursionError):
        return {"code": "invalid", "message": f"{type(error).__name__}: {error}"}
    if isinstance(error, BotoCoreError | ClientError):
        return {"code": "service_unavailable", "message": str(error)}
    return {"code": "internal_error", "message": f"{type(error).__name__}: {error}"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status. Every exception ends here as an error on stderr (JSON with
    --json), never as a traceback: 2 for wrong usage, 1 for anything else."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="segment-bridge", standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        return 1
    except Exception as error:  # the one place every error becomes {"code", "message"}
        return _report(error, as_json="--json" in args)
    return 0


def _report(error: Exception, *, as_json: bool) -> int:
    body = _error_body(error)
    status = 2 if isinstance(error, click.UsageError) else 1
    if as_json:
        click.echo(json.dumps(body), err=True)  # ASCII: one line whatever the message quotes
    elif isinstance(error, click.ClickException):
        error.show()
    else:
        click.echo(f"error: {body['message']}", err=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
