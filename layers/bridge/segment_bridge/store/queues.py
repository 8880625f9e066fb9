"""The queues: the ingest queue (intake's packed messages, and the processor's deferred ones) and the
operator's view of both dead-letter queues.

EmitterDLQ messages
    a parked outbound event's signal (store/parked.py: the event itself is kept in the bucket)
    or Lambda's on-failure record for a stream batch: {"requestContext", "DDBStreamBatchInfo"}
IngestDLQ messages: IngestQueue messages (intake's envelope) that failed maxReceiveCount times.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from segment_bridge.errors import BridgeError, ServiceUnavailable
from segment_bridge.settings import Settings
from segment_bridge.store.aws import Clients, Sleep, aws_errors

SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 1_048_576
SEND_ATTEMPTS = 4
_BACKOFF_SECONDS = (0.05, 0.2, 0.5)
PEEK_SECONDS = 30
"""Listing a dead-letter queue hides each message this long at most; they are made visible at once."""
TAKE_SECONDS = 120
"""A re-drive hides the messages it works on this long; one not deleted by then is visible again."""
DEFER_DELAY_SECONDS = 0
"""A deferred message is visible again at once: every deferral makes progress (a delete's erase records
each chunk; the time budget always starts an invocation's first message), so there is no loop to slow."""


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    body: str
    receive_count: int
    sent_at: str
    receipt_handle: str = field(repr=False)


def _dead_letter(message: Any) -> DeadLetter:
    attributes = message.get("Attributes", {})
    sent = int(attributes.get("SentTimestamp", "0")) / 1000
    return DeadLetter(
        message_id=message["MessageId"],
        body=message["Body"],
        receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
        sent_at=datetime.fromtimestamp(sent, UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        receipt_handle=message["ReceiptHandle"],
    )


def _workspace_of(body: str) -> str | None:
    """The workspace of an ingest queue message (intake's envelope), None if the body is not one."""
    try:
        workspace = json.loads(body).get("workspaceId")
    except (ValueError, AttributeError):
        return None
    return workspace if isinstance(workspace, str) and workspace else None


def sqs_batches(bodies: list[str]) -> Iterator[list[str]]:
    """Bodies grouped into SendMessageBatch calls within SQS's entry and byte limits."""
    batch: list[str] = []
    size = 0
    for body in bodies:
        if batch and (len(batch) == SQS_BATCH_ENTRIES or size + len(body) > SQS_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(body)
        size += len(body)
    if batch:
        yield batch


class Queues:
    def __init__(self, settings: Settings, clients: Clients, sleep: Sleep) -> None:
        self.ingest_queue_url = settings.ingest_queue_url
        self.emitter_dlq_url = settings.emitter_dlq_url
        self.clients = clients
        self.sleep = sleep

    # --- the ingest queue ----------------------------------------------------------------------

    def enqueue(self, bodies: list[str], workspace_id: str) -> None:
        """Put every body on the ingest queue, retrying failed entries; ServiceUnavailable if one fails.
        Each message's MessageGroupId is its workspace: on a standard queue that makes SQS a fair queue
        (one workspace's backlog does not hold up the others' messages); ordering and delivery stay a
        standard queue's."""
        for batch in sqs_batches(bodies):
            self._send_batch(batch, workspace_id)

    def _send_batch(self, bodies: list[str], group: str) -> None:
        pending = {str(index): body for index, body in enumerate(bodies)}
        for attempt in range(SEND_ATTEMPTS):
            if attempt:
                self.sleep(
                    _BACKOFF_SECONDS[min(attempt - 1, len(_BACKOFF_SECONDS) - 1)]
                    * (1 + secrets.randbelow(100) / 100)
                )
            try:
                with aws_errors("The queue did not take every event; retry the request."):
                    response = self.clients.sqs.send_message_batch(
                        QueueUrl=self.ingest_queue_url,
                        Entries=[
                            {"Id": entry_id, "MessageBody": body, "MessageGroupId": group}
                            for entry_id, body in pending.items()
                        ],
                    )
            except ServiceUnavailable:
                continue  # the whole call failed: try every entry again
            failed = response.get("Failed", [])
            if any(entry.get("SenderFault") for entry in failed):
                reasons = sorted({entry.get("Code", "") for entry in failed if entry.get("SenderFault")})
                raise BridgeError(f"The queue refused a message ({', '.join(reasons)}).")
            pending = {entry["Id"]: pending[entry["Id"]] for entry in failed}
            if not pending:
                return
        raise ServiceUnavailable("The queue did not take every event; retry the request.")

    def defer(self, body: str, workspace_id: str, delay_seconds: int = DEFER_DELAY_SECONDS) -> None:
        """Put a message the processor has not finished back on the ingest queue as a fresh message (same
        body, its workspace's MessageGroupId, a receive count of its own); ServiceUnavailable if the queue
        does not take it (the original then fails as any message does)."""
        with aws_errors("A deferred message could not be put back on the queue."):
            self.clients.sqs.send_message(
                QueueUrl=self.ingest_queue_url,
                MessageBody=body,
                MessageGroupId=workspace_id,
                DelaySeconds=delay_seconds,
            )

    # --- dead letters (the operator's view of both DLQs) ----------------------------------------

    def peek_dead_letters(self, queue_url: str, limit: int = 100) -> list[DeadLetter]:
        """Up to `limit` messages of a dead-letter queue, left on it (visible again at once)."""
        seen: dict[str, DeadLetter] = {}
        try:
            while len(seen) < limit:
                messages = self._receive(queue_url, min(10, limit - len(seen)), PEEK_SECONDS)
                fresh = [m for m in messages if m["MessageId"] not in seen]
                if not fresh:
                    break
                for message in fresh:
                    seen[message["MessageId"]] = _dead_letter(message)
        finally:
            self.release_dead_letters(queue_url, list(seen.values()))
        return list(seen.values())

    def take_dead_letters(self, queue_url: str, count: int = 10) -> list[DeadLetter]:
        """Up to `count` messages, hidden for TAKE_SECONDS: delete each once it is dealt with, or it
        returns to the queue."""
        return [_dead_letter(m) for m in self._receive(queue_url, min(count, 10), TAKE_SECONDS)]

    def _receive(self, queue_url: str, count: int, hide_seconds: int) -> list[Any]:
        with aws_errors("The dead-letter queue cannot be read right now."):
            return self.clients.sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=count,
                VisibilityTimeout=hide_seconds,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            ).get("Messages", [])

    def release_dead_letters(self, queue_url: str, letters: list[DeadLetter]) -> None:
        """Make messages taken or peeked at visible again at once."""
        for letter in letters:
            # On failure it becomes visible again when its visibility timeout ends anyway.
            with contextlib.suppress(ClientError, BotoCoreError):
                self.clients.sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=letter.receipt_handle, VisibilityTimeout=0
                )

    def requeue(self, queue_url: str, letters: list[DeadLetter]) -> None:
        """Send dead letters, as they are, to `queue_url` (the queue they came from); back on the ingest
        queue, each in its workspace's message group again."""
        entries: list[Any] = []
        for n, letter in enumerate(letters):
            entry = {"Id": str(n), "MessageBody": letter.body}
            if queue_url == self.ingest_queue_url and (group := _workspace_of(letter.body)):
                entry["MessageGroupId"] = group
            entries.append(entry)
        with aws_errors("The messages could not be sent back to their queue."):
            response = self.clients.sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if response.get("Failed"):
            raise ServiceUnavailable("The queue did not take every message back; nothing was lost.")

    def delete_dead_letters(self, queue_url: str, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        with aws_errors("Dead letters could not be deleted; they stay on the queue."):
            self.clients.sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": letter.receipt_handle} for n, letter in enumerate(letters)
                ],
            )
