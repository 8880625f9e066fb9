"""`publish`: an outbox item written as the product would write one."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import click

from bridge_dev.cli.app import (
    cli,
    json_option,
    show,
    target_of,
)
from bridge_dev.target import Target
from segment_bridge.errors import InvalidPayload
from segment_bridge.ingest.intake import iso
from segment_bridge.limits import unstorable
from segment_bridge.outbound.track import OutboxItem, outbound_message_id
from segment_bridge.values import to_dynamo


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
    data = publish(
        target_of(ctx),
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


def publish(
    target: Target,
    workspace_id: str,
    *,
    event: str,
    user_id: str | None,
    anonymous_id: str | None,
    properties: dict[str, Any],
    item_id: str | None = None,
) -> dict[str, Any]:
    """Write an outbox item as the product would; returns its keys and the messageId Segment will see."""
    target.store.get_workspace(workspace_id)  # NotFound, rather than showing nothing
    # What the one value conversion leaves that DynamoDB refuses (non-finite floats become null there):
    # integers beyond 38 digits, nesting too deep.
    reason = unstorable(to_dynamo(properties))
    if reason:
        raise InvalidPayload(f"--properties cannot be stored: {reason}.")
    item: dict[str, Any] = {
        "pk": f"WS#{workspace_id}",
        "sk": item_id or f"EVT#{uuid.uuid4()}",
        "event": event,
        "properties": properties,
        "timestamp": iso(datetime.now(UTC)),
    }
    if user_id:
        item["userId"] = user_id
    if anonymous_id:
        item["anonymousId"] = anonymous_id
    OutboxItem.model_validate(item)  # refuse here what the emitter would park
    target.store.publish(item)
    keys = {"pk": item["pk"], "sk": item["sk"]}
    return {**keys, "messageId": outbound_message_id(target.settings.outbox_table, keys)}
