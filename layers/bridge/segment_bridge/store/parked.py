"""Parked: what was not sent or applied, kept whole in the archive bucket until someone acts on it.

parked/emitter/<YYYY-MM-DD>/<HHMMSS>-<id>.json.gz     an outbound event the emitter did not send
    {"queue": "emitter", "kind": "parked event", "parked_at", "reason", "record", "workspace_id"?,
     "response"?: {"status", "body"}}   (`record`: the track call, or the item itself when it is invalid)
parked/<queue>/<YYYY-MM-DD>/sqs-<MessageId>.json.gz   a dead letter copied from its queue (IngestDLQ: a
    queue message the processor gave up on; EmitterDLQ: Lambda's on-failure record of a stream batch)
    {"queue", "kind": "dead letter", "message_id", "sent_at", "receive_count", "body"}

Each parked event is also signalled on the EmitterDLQ (its age alarms):
    {"parked": <key>, "reason", "workspace_id"?, "event"?, "messageId"?, "record"?}
with the record itself only while the message stays under SIGNAL_BYTES (SQS takes 256 KB; an outbox
item may be 400 KB). Objects under parked/ never expire unless the stack's ParkedRetentionDays says so.
"""

from __future__ import annotations

import base64
import gzip
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from segment_bridge.errors import NotFound
from segment_bridge.settings import Settings
from segment_bridge.store.aws import Clients, aws_errors
from segment_bridge.store.queues import DeadLetter
from segment_bridge.values import to_json

ParkedQueue = Literal["ingest", "emitter"]
PREFIX = "parked/"
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
    ) -> None:
        """Keep an outbound event that was not sent, whole, with the reason, its workspace and Segment's
        answer, under parked/emitter/ (first: the durable copy), then signal it on the EmitterDLQ."""
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
        key = f"{PREFIX}emitter/{now:%Y-%m-%d}/{now:%H%M%S}-{secrets.token_hex(8)}.json.gz"
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
