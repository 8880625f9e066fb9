"""What the CLI does beyond a single Store call: dead letters, previews, publishing, invoking a function.

Each operation takes a Target (which stack) and returns plain data; bridge_dev.cli only presents it.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from bridge_dev.runtime import lambda_environment, lambda_stream_record, load_function
from bridge_dev.target import Target
from segment_bridge.dead_letters import is_signal, sweep_dead_letters
from segment_bridge.deletion import purge
from segment_bridge.delivery import Sending, deliver, redeliver, stream_changes
from segment_bridge.egress import HttpSender
from segment_bridge.envelope import unpack
from segment_bridge.errors import BridgeError, InvalidPayload, NotFound
from segment_bridge.intake import Limits, decode_body, iso, prepare
from segment_bridge.limits import unstorable
from segment_bridge.mapping import Mapping
from segment_bridge.outbound import OutboxItem, outbound_message_id
from segment_bridge.profiles import EntityKind, Profile, Stored
from segment_bridge.replay import ProfileChange, preview
from segment_bridge.store import DeadLetter
from segment_bridge.values import to_dynamo

if TYPE_CHECKING:
    from segment_bridge.store.parked import ParkedItem

Queue = Literal["ingest", "emitter"]
REDRIVE_SECONDS = 30.0
"""How long a re-drive keeps retrying an event Segment answers with a retryable error."""
REDRIVE_CHUNK = 100
"""Parked items re-driven together (one Segment request per workspace)."""
SWEEP_LIMIT = 10_000
"""The most dead letters one listing or re-drive moves from a queue into parked/."""


class FunctionFailed(BridgeError):
    """A function raised on the event it was given (what Lambda reports as an invocation error)."""

    status, code = 500, "function_error"


# ---------------------------------------------------------------------------------------------- workspaces


# ---------------------------------------------------------------------------------------------- files


def read_document(path: Path) -> Any:
    """A YAML or JSON file (JSON is YAML)."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise InvalidPayload(f"{path} is not YAML or JSON: {error}") from None


def read_mapping(path: Path) -> Mapping:
    """A mapping file, validated (pydantic's ValidationError names each wrong field)."""
    document = read_document(path)
    if not isinstance(document, dict):
        raise InvalidPayload(f"{path} must hold a mapping object.")
    document.pop("version", None)  # the store numbers versions
    return Mapping.model_validate(document)


def read_body(path: Path) -> tuple[bytes, str | None]:
    """A request body from a file: an API Gateway event (events/*.json) or a body as Segment sends it.
    Returns (decoded body, the request's path if the file says)."""
    raw = path.read_bytes()
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        document = None
    if isinstance(document, dict) and "requestContext" in document and "body" in document:
        headers = {str(k).lower(): str(v) for k, v in (document.get("headers") or {}).items()}
        body = decode_body(
            document["body"], bool(document.get("isBase64Encoded")), headers.get("content-encoding"), Limits()
        )
        return body, document.get("rawPath")
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw, None


def read_event(path: Path | None) -> dict[str, Any]:
    """A function's event (`invoke -e`): a JSON file, or standard input for `-` or no file."""
    text = sys.stdin.read() if path is None or str(path) == "-" else path.read_text(encoding="utf-8")
    try:
        document = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as error:
        raise InvalidPayload(f"The event is not JSON: {error.msg} (line {error.lineno}).") from None
    if not isinstance(document, dict):
        raise InvalidPayload("The event must be a JSON object.")
    return document


# ---------------------------------------------------------------------------------------------- profiles


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


# ---------------------------------------------------------------------------------------------- outbox


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


# ---------------------------------------------------------------------------------------------- dead letters


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
    keep_dead_letters(target, queue, take=True)
    store = target.store
    result = Redrive(queue)
    items = store.parked.list_parked(queue, limit)
    for start in range(0, len(items), REDRIVE_CHUNK):
        chunk = items[start : start + REDRIVE_CHUNK]
        if queue == "ingest":
            done, left = _redrive_ingest(target, chunk)
        else:
            done, left = _redrive_emitter(target, chunk)
        for parked in done:
            store.parked.remove(parked.key)
        result.redriven += len(done)
        result.left += [describe_parked(queue, parked) | {"still": why} for parked, why in left]
        if progress is not None:
            progress(len(chunk))
    return result


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
    target: Target, items: list[ParkedItem]
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
            if report.failed:
                left.append((parked, f"Segment did not take {len(report.failed)} of its events yet"))
            else:
                done.append(parked)
        elif isinstance(record, dict) and record.get("messageId") and document.get("workspace_id"):
            events.append((parked, str(document["workspace_id"]), record))
        else:
            left.append((parked, "an invalid outbox item: write a corrected one instead"))
    if events:
        report = redeliver([(workspace_id, record) for _, workspace_id, record in events], sending)
        failed = set(report.failed)
        for parked, workspace_id, record in events:
            if record["messageId"] in failed:
                reason = "no Segment write key" if destination(workspace_id) is None else "Segment"
                left.append((parked, f"not sent: {reason}"))
            else:
                done.append(parked)  # sent, or parked again with Segment's new answer
    return done, left


# ---------------------------------------------------------------------------------------------- replay


def count_archived_batches(target: Target, workspace_id: str, since: date, until: date) -> int:
    """How many archived batches `replay` will go through (the length of its progress bar)."""
    total, day = 0, since
    while day <= until:
        total += target.store.count_archived(workspace_id, day)
        day += timedelta(days=1)
    return total


# ---------------------------------------------------------------------------------------------- purge


def purge_archive(target: Target, workspace_id: str, user_id: str | None) -> dict[str, Any]:
    """Remove deleted users' events from the workspace's archive and parked/ now (what the daily
    PurgeFunction does),
    or only one deleted user's (itself and its linked ids) with `user_id`."""
    store = target.store
    store.get_workspace(workspace_id)
    if user_id is not None:
        key = f"U#{user_id}"
        if store.profiles.read_entities(workspace_id, [key]).get(key, Stored()).deleted_at is None:
            raise NotFound("No delete of this user is recorded in the workspace.")
    for queue in ("ingest", "emitter"):  # as the daily run: dead letters into parked/ first, then purged
        keep_dead_letters(target, queue, take=True)
    done = purge(workspace_id, store.archive, store.profiles, user_id=user_id, parked=store.parked)
    return {"workspace_id": workspace_id, **done.figures()}


# ---------------------------------------------------------------------------------------------- invoke


def invoke(target: Target, logical_id: str, event: dict[str, Any], logs: io.TextIOBase | Any) -> Any:
    """Run one of the template's functions on an event, as `sam local invoke` does, without a container:
    its handler, memory, timeout and environment from template.yaml, against the target's AWS. The
    function's own output (its logs) goes to `logs`; the result is returned."""
    # EMF metrics off unless the shell turns them on: the result on stdout stays readable.
    variables = {"POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true")}
    variables |= target.environment
    functions = sorted(
        name
        for name, resource in target.resources.template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::Serverless::Function"
    )
    if logical_id not in functions:
        raise NotFound(f"template.yaml has no function {logical_id}; it has {', '.join(functions)}.")
    with lambda_environment(variables, aws=target.aws_environment()), contextlib.redirect_stdout(logs):
        function = load_function(target.resources.template, logical_id)
        try:
            result = function.invoke(event, str(uuid.uuid4()))
        except Exception as error:  # the function's own failure, reported as Lambda reports it
            raise FunctionFailed(f"{logical_id} failed: {type(error).__name__}: {error}") from None
    return json.loads(json.dumps(result, default=str))
