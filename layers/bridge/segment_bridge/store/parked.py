"""Parked: what was not sent or applied, kept whole in the archive bucket until someone acts on it.

parked/emitter/<YYYY-MM-DD>/<name>.json.gz   an outbound event a person must act on (Segment refused it
    for good, it cannot be sent as it is, or Segment had not taken it by the end of the retry horizon)
    {"queue": "emitter", "kind": "parked event", "parked_at", "reason", "record", "workspace_id"?,
     "written_at"?, "response"?: {"status", "body"}}   (`record`: the track call, or the item itself
    when it is invalid). Named by what it holds: the day it was written and `evt-<hash of its
    workspace and messageId>` (`item-<hash of them and the record>` without one), so parking the same
    event again (a record handed again, a re-drive refused again) rewrites the one object.
parked/<queue>/<YYYY-MM-DD>/sqs-<MessageId>.json.gz   a dead letter copied from its queue (IngestDLQ: a
    queue message the processor gave up on; EmitterDLQ: Lambda's on-failure record of a stream batch)
    {"queue", "kind": "dead letter", "message_id", "sent_at", "receive_count", "body"}

Each parked event is also signalled on the EmitterDLQ (its age alarms):
    {"parked": <key>, "reason", "workspace_id"?, "event"?, "messageId"?, "record"?}
with the record itself only while the message stays under SIGNAL_BYTES (SQS takes 256 KB; an outbox
item may be 400 KB). Objects under parked/ never expire unless the stack's ParkedRetentionDays says so.

leases/<name>.json   who holds a re-drive (`dlq redrive emitter`) and until when, written with S3's
    conditional writes (If-None-Match to take a free one, If-Match to take over an expired one or renew
    it), so two re-drives at once never send the same parked events.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from segment_bridge.errors import Conflict, NotFound
from segment_bridge.settings import Settings
from segment_bridge.store.aws import Clients, aws_errors
from segment_bridge.store.queues import DeadLetter
from segment_bridge.values import to_json

ParkedQueue = Literal["ingest", "emitter"]
PREFIX = "parked/"
LEASES = "leases/"
SIGNAL_BYTES = 64 * 1024
READ_FAILURE = "Parked items cannot be read right now."


@dataclass(frozen=True)
class ParkedItem:
    key: str
    document: dict[str, Any]

    @property
    def parked_id(self) -> str:
        """The key without its prefix and suffix: `<queue>/<day>/<name>` -> `<day>/<name>`."""
        return self.key.removeprefix(PREFIX).split("/", 1)[-1].removesuffix(".json.gz")


@dataclass(frozen=True)
class Lease:
    key: str
    holder: str
    etag: str
    expires_at: float


def parked_name(record: Any, workspace_id: str | None = None) -> str:
    """A parked event's name, from what it holds: its workspace and messageId (one per outbox item, rule
    and record), else the record's whole content."""
    message_id = record.get("messageId") if isinstance(record, dict) else None
    if isinstance(message_id, str) and message_id:
        named = f"{workspace_id or ''}\n{message_id}"
        return "evt-" + hashlib.sha256(named.encode("utf-8")).hexdigest()[:32]
    return "item-" + hashlib.sha256(_dumps_any([workspace_id, record]).encode("utf-8")).hexdigest()[:32]


def _dumps_any(value: Any) -> str:
    return json.dumps(as_json(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def as_json(value: Any) -> Any:
    """Anything an item or a stream image holds as JSON: Decimals as numbers, sets as lists, binary as
    {"$base64": ...}, anything else as its text."""
    value = to_json(value)
    if isinstance(value, dict):
        return {str(key): as_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_json(item) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$base64": base64.b64encode(bytes(value)).decode()}
    if value is None or isinstance(value, str | int | float | bool):
        if isinstance(value, float) and value != value:  # NaN is not JSON
            return str(value)
        return value
    raw = getattr(value, "value", None)  # boto3's Binary
    if isinstance(raw, bytes):
        return {"$base64": base64.b64encode(raw).decode()}
    return str(value)


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(as_json(document), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class Parked:
    def __init__(self, settings: Settings, clients: Clients) -> None:
        self.bucket = settings.archive_bucket
        self.emitter_dlq_url = settings.emitter_dlq_url
        self.clients = clients

    def park_outbound(
        self,
        reason: str,
        record: dict[str, Any],
        response: dict[str, Any] | None = None,
        workspace_id: str | None = None,
        written_at: float | None = None,
    ) -> str:
        """Keep an outbound event that was not sent, whole, with the reason, its workspace and Segment's
        answer, under parked/emitter/ (first: the durable copy, named by what it holds), then signal it
        on the EmitterDLQ; its key."""
        now = datetime.now(UTC)
        document: dict[str, Any] = {
            "queue": "emitter",
            "kind": "parked event",
            "parked_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "reason": reason,
            "record": record,
        }
        if workspace_id is not None:
            document["workspace_id"] = workspace_id
        if response is not None:
            document["response"] = response
        written = now
        if written_at is not None:
            try:
                written = datetime.fromtimestamp(written_at, UTC)
                document["written_at"] = written.isoformat(timespec="seconds").replace("+00:00", "Z")
            except (OverflowError, OSError, ValueError):
                written = now
        key = f"{PREFIX}emitter/{written:%Y-%m-%d}/{parked_name(record, workspace_id)}.json.gz"
        text = self._put(key, document, "The outbound event could not be parked.")
        signal: dict[str, Any] = {"parked": key, "reason": reason[:1024]}
        if workspace_id is not None:
            signal["workspace_id"] = workspace_id
        record_json = as_json(record)
        if isinstance(record_json, dict):
            signal |= {
                name: str(record_json[name])[:1024] for name in ("event", "messageId") if name in record_json
            }
        body = json.dumps(signal, separators=(",", ":"), ensure_ascii=False)
        if len(text.encode("utf-8")) + len(body.encode("utf-8")) <= SIGNAL_BYTES:
            # small enough to travel whole: the signal is readable without the bucket
            signal |= {"record": record_json, **({"response": document["response"]} if response else {})}
            body = json.dumps(signal, separators=(",", ":"), ensure_ascii=False)
        with aws_errors("The parked outbound event could not be signalled (it is kept in the bucket)."):
            self.clients.sqs.send_message(QueueUrl=self.emitter_dlq_url, MessageBody=body)
        return key

    # --- leases: one re-drive at a time ------------------------------------------------------------

    def take_lease(self, name: str, holder: str, now: float, seconds: float) -> Lease:
        """The lease `name` for `holder` until now + seconds; Conflict while another holder's is live."""
        key = f"{LEASES}{name}.json"
        taken = self._put_lease(key, holder, now, seconds, if_none_match="*")
        if taken is not None:
            return taken
        with aws_errors(READ_FAILURE, refused={"NoSuchKey": NotFound(key)}):
            found = self.clients.s3.get_object(Bucket=self.bucket, Key=key)
            current = json.loads(found["Body"].read() or b"{}")
        if float(current.get("expires_at", 0)) > now:
            until = datetime.fromtimestamp(float(current["expires_at"]), UTC).isoformat(timespec="seconds")
            raise Conflict(f"Another re-drive holds the {name} lease until {until.replace('+00:00', 'Z')}.")
        taken = self._put_lease(key, holder, now, seconds, if_match=found["ETag"])
        if taken is None:
            raise Conflict(f"Another re-drive took the {name} lease just now.")
        return taken

    def renew_lease(self, lease: Lease, now: float, seconds: float) -> Lease:
        """The same lease for longer; Conflict if it was taken over meanwhile (it had expired)."""
        renewed = self._put_lease(lease.key, lease.holder, now, seconds, if_match=lease.etag)
        if renewed is None:
            raise Conflict("The re-drive lost its lease (it expired and another re-drive took it).")
        return renewed

    def release_lease(self, lease: Lease) -> None:
        """Give the lease back (marked expired, so the next taker need not wait); gone already: fine."""
        self._put_lease(lease.key, lease.holder, 0.0, 0.0, if_match=lease.etag)

    def _put_lease(
        self,
        key: str,
        holder: str,
        now: float,
        seconds: float,
        *,
        if_match: str = "",
        if_none_match: str = "",
    ) -> Lease | None:
        body = json.dumps({"holder": holder, "taken_at": now, "expires_at": now + seconds}).encode()
        lost = Conflict("taken")
        refused = {"PreconditionFailed": lost, "ConditionalRequestConflict": lost, "NoSuchKey": lost}
        try:
            with aws_errors("The re-drive lease could not be written.", refused=refused):
                s3 = self.clients.s3
                if if_match:
                    answer = s3.put_object(Bucket=self.bucket, Key=key, Body=body, IfMatch=if_match)
                else:
                    answer = s3.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch=if_none_match)
        except Conflict:
            return None
        return Lease(key, holder, str(answer.get("ETag", "")), now + seconds)

    def keep_dead_letter(self, queue: ParkedQueue, letter: DeadLetter) -> str:
        """Copy a dead letter to parked/<queue>/ (the same letter always to the same key); its key."""
        day = letter.sent_at[:10] if len(letter.sent_at) >= 10 else "unknown"
        key = f"{PREFIX}{queue}/{day}/sqs-{letter.message_id}.json.gz"
        document = {
            "queue": queue,
            "kind": "dead letter",
            "message_id": letter.message_id,
            "sent_at": letter.sent_at,
            "receive_count": letter.receive_count,
            "body": letter.body,
        }
        self._put(key, document, "The dead letter could not be kept in the bucket; it stays on its queue.")
        return key

    def list_parked(self, queue: ParkedQueue, limit: int) -> list[ParkedItem]:
        """Up to `limit` parked items of a queue, oldest day first."""
        found: list[ParkedItem] = []
        for parked in self.items(queue):
            if len(found) >= limit:
                break
            found.append(parked)
        return found

    def items(self, queue: ParkedQueue) -> Iterator[ParkedItem]:
        """Every parked item of a queue, oldest day first, read one at a time (skipping one removed
        meanwhile)."""
        s3 = self.clients.s3
        with aws_errors(READ_FAILURE):
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{PREFIX}{queue}/"
            )
            for page in pages:
                for summary in page.get("Contents", []):
                    document = self.read(summary["Key"])
                    if document is not None:
                        yield ParkedItem(summary["Key"], document)

    def count(self, queue: ParkedQueue) -> int:
        """How many items are parked for a queue (keys only listed: one request per 1,000)."""
        with aws_errors(READ_FAILURE):
            pages = self.clients.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{PREFIX}{queue}/"
            )
            return sum(page.get("KeyCount", 0) for page in pages)

    def replace(self, key: str, document: dict[str, Any]) -> None:
        """Rewrite a parked item in place (a purge took some of its events out)."""
        self._put(key, document, "A parked item could not be rewritten; it stays as it was.")

    def read(self, key: str) -> dict[str, Any] | None:
        """A parked item's document; None once it is gone (re-driven meanwhile)."""
        s3 = self.clients.s3
        try:
            with aws_errors(READ_FAILURE, refused={"NoSuchKey": NotFound(key)}):
                raw = s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except NotFound:
            return None
        try:
            document = json.loads(gzip.decompress(raw).decode("utf-8"))
        except (OSError, ValueError):
            return {"kind": "unreadable", "reason": "not gzip JSON"}
        return document if isinstance(document, dict) else {"kind": "unreadable", "reason": "not an object"}

    def exists(self, key: str) -> bool:
        try:
            with aws_errors(READ_FAILURE, refused={"404": NotFound(key), "NoSuchKey": NotFound(key)}):
                self.clients.s3.head_object(Bucket=self.bucket, Key=key)
        except NotFound:
            return False
        return True

    def remove(self, key: str) -> None:
        """Delete a parked item that was dealt with (sent, re-parked, or put back on its queue)."""
        with aws_errors("A parked item could not be removed; it stays parked."):
            self.clients.s3.delete_object(Bucket=self.bucket, Key=key)

    def _put(self, key: str, document: dict[str, Any], failure: str) -> str:
        text = _dumps(document)
        with aws_errors(failure):
            self.clients.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=gzip.compress(text.encode("utf-8"), mtime=0),
                ContentType="application/json",
                ContentEncoding="gzip",
            )
        return text
