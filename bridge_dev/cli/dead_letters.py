"""`rejected` and `dlq`: what ingest refused, and both queues' dead letters (listed, kept, re-driven)."""

from __future__ import annotations

import functools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import click

from bridge_dev.cli.app import (
    cli,
    json_option,
    show,
    table_text,
    target_of,
    utc_day,
)
from bridge_dev.runtime import lambda_stream_record
from bridge_dev.target import Target
from segment_bridge.dead_letters import is_signal, sweep_dead_letters
from segment_bridge.envelope import unpack
from segment_bridge.outbound.delivery import (
    Sending,
    deliver,
    redeliver,
    stream_changes,
)
from segment_bridge.outbound.egress import HttpSender
from segment_bridge.outbound.retries import is_retry
from segment_bridge.settings import integration_name
from segment_bridge.store import DeadLetter

if TYPE_CHECKING:
    from segment_bridge.store.parked import ParkedItem


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
    target = target_of(ctx)
    wanted = utc_day(day)
    target.store.get_workspace(workspace_id)  # NotFound, rather than showing nothing
    rows = [
        record if with_events else {k: v for k, v in record.items() if k != "event"}
        for record in target.store.list_rejected(workspace_id, wanted)
    ]
    columns = ["receivedAt", "index", "messageId", "reason", *(["event"] if with_events else [])]
    show(as_json, rows, lambda: table_text(rows, columns, "No rejected events that day."))


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
def dlq_list(ctx: click.Context, queue: Queue, limit: int, as_json: bool) -> None:
    """List what is parked for a queue: the bucket's parked/<queue>/, where the queue's messages are
    copied first (they stay on the queue until re-driven)."""
    rows = list_dead_letters(target_of(ctx), queue, limit)
    columns = (
        ["message_id", "sent_at", "receive_count", "kind", "workspace_id", "events", "received_at"]
        if queue == "ingest"
        else ["message_id", "sent_at", "kind", "workspace_id", "event", "reason"]
    )
    show(as_json, rows, lambda: table_text(rows, columns, f"The {queue} dead-letter queue is empty."))


@dlq.command("redrive")
@click.argument("queue", type=QUEUE)
@click.option("--limit", default=10_000, show_default=True, type=click.IntRange(1))
@json_option
@click.pass_context
def dlq_redrive(ctx: click.Context, queue: Queue, limit: int, as_json: bool) -> None:
    """Move the queue's messages into the bucket's parked/, then act on what is parked. Ingest: put each
    back on the IngestQueue. Emitter: send parked events to Segment again (same messageIds, so Segment
    dedupes). A parked item is removed once sent or re-queued; what still cannot go stays, with why."""
    result = redrive(target_of(ctx), queue, limit)
    data = result.as_dict()
    text = f"Re-drove {result.redriven} {queue} dead letters."
    if result.left:
        text += f" {len(result.left)} stay:\n" + table_text(result.left, ["message_id", "kind", "still"], "")
    show(as_json, data, text)


Queue = Literal["ingest", "emitter"]


REDRIVE_SECONDS = 30.0
"""How long a re-drive keeps retrying an event Segment answers with a retryable error."""


REDRIVE_CHUNK = 100
"""Parked items re-driven together (one Segment request per workspace)."""


LEASE_SECONDS = 300.0
"""How long an emitter re-drive holds its lease without renewing it (it renews before every chunk, and a
chunk takes at most REDRIVE_SECONDS): a re-drive that died frees it after this long."""


SWEEP_LIMIT = 10_000
"""The most dead letters one listing or re-drive moves from a queue into parked/."""


def queue_url(target: Target, queue: Queue) -> str:
    return target.settings.ingest_dlq_url if queue == "ingest" else target.settings.emitter_dlq_url


def describe_dead_letter(queue: Queue, letter: DeadLetter) -> dict[str, Any]:
    described: dict[str, Any] = {
        "message_id": letter.message_id,
        "sent_at": letter.sent_at,
        "receive_count": letter.receive_count,
    }
    if queue == "ingest":
        try:
            envelope, events = unpack(letter.body)
        except Exception as error:  # anything on a DLQ may be unreadable: say so, don't fail the listing
            return described | {"kind": "unreadable", "reason": type(error).__name__}
        return described | {
            "kind": "queue message",
            "workspace_id": envelope.workspaceId,
            "request_id": envelope.requestId,
            "received_at": envelope.receivedAt,
            "events": len(events),
        }
    try:
        document = json.loads(letter.body)
    except json.JSONDecodeError:
        return described | {"kind": "unreadable", "reason": "not JSON"}
    if "DDBStreamBatchInfo" in document:
        info = document["DDBStreamBatchInfo"]
        return described | {
            "kind": "stream batch",
            "reason": document.get("requestContext", {}).get("condition", ""),
            "shard": info.get("shardId"),
            "records": info.get("batchSize"),
            "first_sequence_number": info.get("startSequenceNumber"),
            "last_sequence_number": info.get("endSequenceNumber"),
        }
    if is_retry(document):  # a retry message the function failed on 5 times (AWS, not Segment)
        events = document.get("events") if isinstance(document.get("events"), list) else []
        return described | {
            "kind": "retry message",
            "reason": document.get("reason", ""),
            "workspace_id": document.get("workspace_id"),
            "events": len(events),
        }
    record = document.get("record") if isinstance(document.get("record"), dict) else {}
    return described | {
        "kind": "parked event",
        "reason": document.get("reason", ""),
        "workspace_id": document.get("workspace_id"),
        "event": record.get("event"),
        "messageId": record.get("messageId"),
        "response": document.get("response"),
    }


def describe_parked(queue: Queue, parked: ParkedItem) -> dict[str, Any]:
    """One parked item as `dlq list` shows it; `message_id` is its id in the bucket (parked/)."""
    document = parked.document
    if document.get("kind") == "dead letter":
        letter = DeadLetter(
            message_id=str(document.get("message_id", "")),
            body=str(document.get("body", "")),
            receive_count=int(document.get("receive_count") or 0),
            sent_at=str(document.get("sent_at", "")),
            receipt_handle="",
        )
        described = describe_dead_letter(queue, letter)
        return described | {"message_id": parked.parked_id, "queue_message_id": letter.message_id}
    if document.get("kind") == "parked event":
        found = document.get("record")
        record: dict[str, Any] = found if isinstance(found, dict) else {}
        return {
            "message_id": parked.parked_id,
            "sent_at": document.get("parked_at"),
            "receive_count": 0,
            "kind": "parked event",
            "reason": document.get("reason", ""),
            "workspace_id": document.get("workspace_id"),
            "event": record.get("event"),
            "messageId": record.get("messageId"),
            "response": document.get("response"),
        }
    return {"message_id": parked.parked_id, "kind": "unreadable", "reason": document.get("reason", "")}


def keep_dead_letters(target: Target, queue: Queue, *, take: bool, limit: int = SWEEP_LIMIT) -> int:
    """Copy a dead-letter queue's messages into the bucket's parked/<queue>/, where `dlq list` and `dlq
    redrive` read them and they outlive SQS's 14 days (a parked event's signal is not copied: the event
    is already there). `take`: move them, as the hourly sweep does (dead_letters.sweep_dead_letters);
    else leave them all on the queue (a listing). Returns how many messages were seen."""
    store = target.store
    url = queue_url(target, queue)
    if take:
        swept = sweep_dead_letters(queue, url, store.queues, store.parked, limit=limit)
        return swept.kept + swept.signals
    letters = store.peek_dead_letters(url, limit)
    for letter in letters:
        if not is_signal(letter.body):
            store.parked.keep_dead_letter(queue, letter)
    return len(letters)


def list_dead_letters(target: Target, queue: Queue, limit: int) -> list[dict[str, Any]]:
    """What is parked for a queue (the bucket's parked/), its dead-letter queue's messages copied there
    first (they stay on the queue)."""
    keep_dead_letters(target, queue, take=False, limit=max(limit, 100))
    return [describe_parked(queue, parked) for parked in target.store.parked.list_parked(queue, limit)]


@dataclass
class Redrive:
    queue: Queue
    redriven: int = 0
    left: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "redriven": self.redriven, "left": self.left}


def redrive(
    target: Target, queue: Queue, limit: int, progress: Callable[[int], None] | None = None
) -> Redrive:
    """Move the dead-letter queue's messages into parked/ first, then act on what is parked. Ingest: put
    each back on the IngestQueue (the processor takes it again). Emitter: send parked events to Segment
    again (same messageIds) and re-deliver stream batches Lambda gave up on. A parked item is removed
    only once it is sent, parked again (with the new reason) or back on its queue; what cannot go yet
    stays parked, listed in `left` with the reason."""
    store = target.store
    lease = None
    if queue == "emitter":  # one emitter re-drive at a time: two would send the same parked events
        lease = store.parked.take_lease("redrive-emitter", secrets.token_hex(8), time.time(), LEASE_SECONDS)
    try:
        keep_dead_letters(target, queue, take=True)
        result = Redrive(queue)
        items = store.parked.list_parked(queue, limit)
        for start in range(0, len(items), REDRIVE_CHUNK):
            chunk = items[start : start + REDRIVE_CHUNK]
            if lease is not None:
                lease = store.parked.renew_lease(lease, time.time(), LEASE_SECONDS)
            reparked: set[str] = set()  # parked again under the same name (content): kept
            if queue == "ingest":
                done, left = _redrive_ingest(target, chunk)
            else:
                done, left = _redrive_emitter(target, chunk, reparked)
            for parked in done:
                if parked.key not in reparked:
                    store.parked.remove(parked.key)
            result.redriven += len(done)
            result.left += [describe_parked(queue, parked) | {"still": why} for parked, why in left]
            if progress is not None:
                progress(len(chunk))
        return result
    finally:
        if lease is not None:
            store.parked.release_lease(lease)


def _redrive_ingest(
    target: Target, items: list[ParkedItem]
) -> tuple[list[ParkedItem], list[tuple[ParkedItem, str]]]:
    letters = [
        (parked, str(parked.document.get("body", "")))
        for parked in items
        if parked.document.get("kind") == "dead letter"
    ]
    left = [
        (parked, "not a queue message") for parked in items if parked.document.get("kind") != "dead letter"
    ]
    for start in range(0, len(letters), 10):
        batch = letters[start : start + 10]
        target.store.requeue(
            target.settings.ingest_queue_url,
            [DeadLetter(str(n), body, 0, "", "") for n, (_, body) in enumerate(batch)],
        )
    return [parked for parked, _ in letters], left


def _redrive_emitter(
    target: Target, items: list[ParkedItem], reparked: set[str]
) -> tuple[list[ParkedItem], list[tuple[ParkedItem, str]]]:
    store, settings = target.store, target.settings
    destination = functools.cache(store.segment_destination)  # one lookup per workspace, None included
    sending = Sending(
        destination=destination,
        sender=HttpSender(policy=settings.segment_endpoints),
        parking=store.parked,
        deadline=time.time() + REDRIVE_SECONDS,
        clock=time.time,
        sleep=time.sleep,
        integration=integration_name(),
    )
    done: list[ParkedItem] = []
    left: list[tuple[ParkedItem, str]] = []
    events: list[tuple[ParkedItem, str, dict[str, Any]]] = []
    for parked in items:
        document = parked.document
        if document.get("kind") == "dead letter":
            try:
                document = json.loads(str(document.get("body", "")))
            except json.JSONDecodeError:
                left.append((parked, "not JSON"))
                continue
            if not isinstance(document, dict):
                left.append((parked, "not a JSON object"))
                continue
        record = document.get("record")
        if "DDBStreamBatchInfo" in document:
            info = document["DDBStreamBatchInfo"]
            records = store.stream_records(
                info["streamArn"], info["shardId"], info["startSequenceNumber"], info["endSequenceNumber"]
            )
            if not records:
                left.append((parked, "the stream no longer holds these records (kept 24 h)"))
                continue
            report = deliver(
                stream_changes(
                    {"Records": [lambda_stream_record(r, info["streamArn"]) for r in records]}, time.time
                ),
                outbox_table=settings.outbox_table,
                own_tables=frozenset({settings.profiles_table, settings.events_table}),
                rules=store.change_rules(),
                sending=sending,
            )
            if report.failed or report.pending:
                still = len(report.failed) + len(report.pending)
                left.append((parked, f"Segment did not take {still} of its events yet"))
            else:
                done.append(parked)
        elif is_retry(document):  # a retry message the function failed on: its events, as parked ones
            for event in document.get("events") or []:
                payload = event.get("payload") if isinstance(event, dict) else None
                if isinstance(payload, dict) and payload.get("messageId"):
                    events.append((parked, str(document.get("workspace_id", "")), payload))
        elif isinstance(record, dict) and record.get("messageId") and document.get("workspace_id"):
            events.append((parked, str(document["workspace_id"]), record))
        else:
            left.append((parked, "an invalid outbox item: write a corrected one instead"))
    if events:
        report = redeliver([(workspace_id, record) for _, workspace_id, record in events], sending)
        failed = set(report.failed) | {event.record_id for event in report.pending}
        reparked |= set(report.parked_keys)
        verdicts: dict[str, str | None] = {}
        for parked, workspace_id, record in events:
            if record["messageId"] in failed:
                reason = "no Segment write key" if destination(workspace_id) is None else "Segment"
                verdicts[parked.key] = verdicts.get(parked.key) or f"not sent: {reason}"
            else:
                verdicts.setdefault(parked.key, None)  # sent, or parked again with the new answer
        for parked, _, _ in {parked.key: (parked, 0, 0) for parked, _, _ in events}.values():
            why = verdicts[parked.key]
            if why is None:
                done.append(parked)
            else:
                left.append((parked, why))
    return done, left
