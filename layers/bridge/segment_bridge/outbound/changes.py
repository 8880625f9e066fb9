"""Changes: stream records as the emitter reads them, and what each stands for — a new outbox item's track
call, what the change rules of its table make of it, or what cannot be sent as it is (Unsent)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from segment_bridge import PRODUCT_NAME
from segment_bridge.destinations import ChangeRule, InvalidRule, Unsendable
from segment_bridge.outbound.track import Outbound, track_call


@dataclass(frozen=True)
class Change:
    """One stream record, as the emitter needs it. `unreadable` says why a record could not be read (it
    is then parked as `raw`, the record as the stream gave it)."""

    record_id: str
    event_name: str
    table: str
    keys: dict[str, Any]
    new_image: dict[str, Any] | None
    created_at: float
    old_image: dict[str, Any] | None = None
    unreadable: str | None = None
    raw: dict[str, Any] | None = None


def stream_changes(event: dict[str, Any], now: Callable[[], float]) -> list[Change]:
    """The changes of a DynamoDB stream event as Lambda delivers it (`{"Records": [...]}`); a record
    that cannot be read becomes an `unreadable` change (parked whole), never an exception."""
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

    changes: list[Change] = []
    for raw in event.get("Records") or []:
        record = DynamoDBRecord(raw)
        try:
            if record.dynamodb is None:
                continue
            changes.append(
                Change(
                    record_id=record.dynamodb.sequence_number or "",
                    event_name=str(record.event_name.name if record.event_name else ""),
                    table=(record.event_source_arn or "").split(":table/")[-1].split("/")[0],
                    keys=record.dynamodb.keys,
                    new_image=record.dynamodb.new_image or None,
                    old_image=record.dynamodb.old_image or None,
                    created_at=float(record.dynamodb.approximate_creation_date_time or now()),
                )
            )
        except Exception as error:  # a record of any shape: parked, never a crash of the batch
            sequence = raw.get("dynamodb", {}).get("SequenceNumber") if isinstance(raw, dict) else None
            changes.append(
                Change(
                    record_id=str(sequence or ""),
                    event_name="",
                    table="",
                    keys={},
                    new_image=None,
                    created_at=now(),
                    unreadable=f"the stream record cannot be read ({type(error).__name__})",
                    raw=raw if isinstance(raw, dict) else {"record": repr(raw)},
                )
            )
    return changes


@dataclass(frozen=True)
class Unsent:
    """What cannot be sent as it is: parked whole with the reason."""

    reason: str
    record: dict[str, Any]
    workspace_id: str | None
    record_id: str
    written_at: float | None = None
    invalid_rule: bool = False


def prepare(
    change: Change,
    outbox_table: str,
    rules: list[ChangeRule | InvalidRule],
    integration: str = PRODUCT_NAME,
) -> Iterator[Outbound | Unsent]:
    """What a change stands for: a new outbox item's track call, or what the change rules of its table
    make of it (their messageIds also name the rule and the record); Unsent for what cannot be sent,
    including the record whole for each stored rule of its table that no longer validates."""
    if change.unreadable is not None:
        yield Unsent(change.unreadable, change.raw or {}, None, change.record_id)
        return
    if change.table == outbox_table:
        if change.event_name == "INSERT" and change.new_image is not None:
            yield _track(change.new_image, change.keys, change, integration)
        return
    document = {"eventName": change.event_name, "old": change.old_image or {}, "new": change.new_image or {}}
    for rule in rules:
        if isinstance(rule, InvalidRule):
            if rule.table in (None, change.table):
                record = {"rule": rule.name, "change": document}
                yield Unsent(rule.reason, record, None, change.record_id, invalid_rule=True)
            continue
        if rule.table != change.table:
            continue
        try:
            if not rule.fires(document):
                continue
            item = rule.outbox_item(document, change.record_id)
        except Unsendable as error:
            yield Unsent(str(error), {"rule": rule.name, "change": document}, None, change.record_id)
            continue
        except Exception as error:  # a rule of any shape over a record of any shape: parked, not a crash
            reason = f"change rule {rule.name} failed on this record ({type(error).__name__})"
            yield Unsent(reason, {"rule": rule.name, "change": document}, None, change.record_id)
            continue
        keys = {"rule": rule.name, "record": change.record_id, **change.keys}
        yield _track(item, keys, change, integration)


def _track(item: dict[str, Any], keys: dict[str, Any], change: Change, integration: str) -> Outbound | Unsent:
    pk = item.get("pk")
    workspace_id = pk.removeprefix("WS#") or None if isinstance(pk, str) and pk.startswith("WS#") else None
    try:
        return track_call(
            item,
            table=change.table,
            keys=keys,
            record_id=change.record_id,
            created_at=change.created_at,
            integration=integration,
        )
    except Unsendable as error:
        return Unsent(str(error), item, workspace_id, change.record_id, change.created_at)
    except Exception as error:  # values of any type and size: parked whole, never a crash of the batch
        reason = f"the outbox item cannot be made a track call ({type(error).__name__})"
        return Unsent(reason, item, workspace_id, change.record_id, change.created_at)
