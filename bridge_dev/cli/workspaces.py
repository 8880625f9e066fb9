"""`workspaces` and `destination`: tenants, their API keys and shared secret, where their events go."""

from __future__ import annotations

import click

from bridge_dev.cli.app import (
    cli,
    fields_text,
    json_option,
    masked,
    show,
    table_text,
    target_of,
)
from segment_bridge.destinations import endpoint_url
from segment_bridge.jobs.offboard import plan_offboard, quiet_seconds
from segment_bridge.keys import new_api_key, new_read_token


@cli.group()
def workspaces() -> None:
    """Create and list workspaces; issue, rotate and revoke their API keys; set the shared secret."""


@workspaces.command("create")
@click.argument("name")
@click.option("--id", "workspace_id", help="Choose the workspace id (default: ws_ and 20 random hex digits).")
@click.option(
    "--allow-duplicate-name",
    is_flag=True,
    help="Create it even if a workspace of that name exists (case and spacing aside).",
)
@json_option
@click.pass_context
def workspaces_create(
    ctx: click.Context, name: str, workspace_id: str | None, allow_duplicate_name: bool, as_json: bool
) -> None:
    """Create a workspace and its first API key (shown only this once). A name already in use is refused
    (409 conflict: most often the same create run twice) unless --allow-duplicate-name."""
    store = target_of(ctx).store
    workspace = store.create_workspace(
        name, workspace_id=workspace_id, allow_duplicate_name=allow_duplicate_name
    )
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
        fields_text([(k, v) for k, v in data.items()])
        + "\n\nKeep the API key now: it is stored only as a hash.",
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
            "read_token_ids": list(w.read_token_ids),
        }
        for w in sorted(target_of(ctx).store.list_workspaces(), key=lambda w: w.created_at)
    ]
    show(as_json, rows, lambda: table_text(rows, list(rows[0]) if rows else [], "No workspaces."))


@workspaces.command("rotate-key")
@click.argument("workspace_id")
@json_option
@click.pass_context
def workspaces_rotate_key(ctx: click.Context, workspace_id: str, as_json: bool) -> None:
    """Issue a second live key; revoke the old one once every sender uses the new one."""
    store = target_of(ctx).store
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
        as_json,
        data,
        fields_text(list(data.items())) + "\n\nMove senders to the new key (shown only now)." + hint,
    )


@workspaces.command("revoke-key")
@click.argument("workspace_id")
@click.argument("key_id")
@json_option
@click.pass_context
def workspaces_revoke_key(ctx: click.Context, workspace_id: str, key_id: str, as_json: bool) -> None:
    """Revoke a key (its id, from `workspaces list`). Functions may accept it for AUTH_CACHE_SECONDS more."""
    target = target_of(ctx)
    target.store.revoke_key(workspace_id, key_id)
    seconds = target.settings.auth_cache_seconds
    data = {"workspace_id": workspace_id, "revoked": key_id, "effective_within_seconds": seconds}
    show(as_json, data, f"Revoked {key_id}; running functions stop accepting it within {seconds:g} s.")


@workspaces.command("delete")
@click.argument("workspace_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--wait/--no-wait", default=True, help="Follow the job until it ends (default) or return.")
@json_option
@click.pass_context
def workspaces_delete(ctx: click.Context, workspace_id: str, yes: bool, wait: bool, as_json: bool) -> None:
    """Offboard a workspace: every item of it in every table, its archive and parked objects, keys,
    secret, mapping, destination and counters, removed by a job on the fleet (docs/archive-jobs.md).
    Its deliveries are refused from now on; the job ends with a receipt (`jobs show JOB`)."""
    from bridge_dev.cli.archive import follow, job_data
    from bridge_dev.cli.dead_letters import keep_dead_letters

    target = target_of(ctx)
    store = target.store
    store.get_workspace(workspace_id)  # NotFound before any question
    if not yes:
        click.confirm(
            f"Delete workspace {workspace_id} and everything it holds? This cannot be undone", abort=True
        )
    job = plan_offboard(workspace_id, store, quiet=quiet_seconds(target.settings.auth_cache_seconds))
    for queue in ("ingest", "emitter"):  # its dead letters into parked/, where the job removes them
        keep_dead_letters(target, queue, take=True)
    record = follow(target, job.job_id) if wait else store.jobs.job(job.job_id)
    data = job_data(record) | ({"receipt": record.receipt} if record.receipt else {})
    show(
        as_json,
        data,
        f"Offboarding {record.job_id} {record.state}: {record.counters['items_deleted']} items and "
        f"{record.counters['objects_changed']} objects deleted, tasks {record.counters['tasks_done']}/"
        f"{record.counters['tasks_total']}. Deliveries with its keys are refused"
        + (" (see the receipt: jobs show)." if record.state == "done" else "; `jobs show` follows it."),
    )


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
    target_of(ctx).store.set_shared_secret(workspace_id, None if unset else secret)
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


@workspaces.command("read-token")
@click.argument("workspace_id")
@click.option("--create", is_flag=True, help="Issue a read token for the read API (shown only this once).")
@click.option(
    "--revoke", "revoke", metavar="TOKEN_ID", help="Revoke a read token (its id, from `workspaces list`)."
)
@json_option
@click.pass_context
def workspaces_read_token(
    ctx: click.Context, workspace_id: str, create: bool, revoke: str | None, as_json: bool
) -> None:
    """Issue or revoke a read token: what the read API (GET /v1/spaces/WS/...) takes, as HTTP Basic user
    name. Read tokens never work for sending events, and API keys never work for reading."""
    if create == (revoke is not None):
        raise click.UsageError("Give exactly one of --create or --revoke TOKEN_ID.")
    target = target_of(ctx)
    if revoke is not None:
        target.store.revoke_read_token(workspace_id, revoke)
        seconds = target.settings.auth_cache_seconds
        data: dict[str, object] = {
            "workspace_id": workspace_id,
            "revoked": revoke,
            "effective_within_seconds": seconds,
        }
        show(
            as_json, data, f"Revoked read token {revoke}; the read API stops taking it within {seconds:g} s."
        )
        return
    token = target.store.issue_read_token(workspace_id, new_read_token())
    data = {"workspace_id": workspace_id, "token_id": token.key_id, "read_token": token.api_key}
    show(
        as_json,
        data,
        fields_text(list(data.items()))
        + "\n\nKeep the read token now: it is stored only as a hash. Use it as the HTTP Basic user name.",
    )


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
    target = target_of(ctx)
    try:
        url = endpoint_url(endpoint, target.settings.segment_endpoints)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--endpoint") from None
    target.store.set_segment_destination(workspace_id, write_key, endpoint)
    data = {"workspace_id": workspace_id, "url": url, "write_key": masked(write_key)}
    show(as_json, data, f"{workspace_id} sends to {url} (write key {masked(write_key)}).")


@destination.command("show")
@click.argument("workspace_id")
@json_option
@click.pass_context
def destination_show(ctx: click.Context, workspace_id: str, as_json: bool) -> None:
    """The workspace's Segment destination (the write key masked)."""
    store = target_of(ctx).store
    store.get_workspace(workspace_id)
    found = store.segment_destination(workspace_id)
    data = {
        "workspace_id": workspace_id,
        "url": found.url if found else None,
        "write_key": masked(found.write_key) if found else None,
    }
    show(
        as_json,
        data,
        fields_text(list(data.items())) if found else f"{workspace_id} has no Segment destination.",
    )
