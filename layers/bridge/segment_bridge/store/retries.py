"""The OutboundRetryQueue: what Segment has not taken yet, waiting for its next attempt (outbound/retries.py
declares the message: one workspace's pending events, its attempt and when it is due).

Messages are sent with their pause as DelaySeconds (at most 900, SQS's longest), ten to a SendMessageBatch
and within its 1 MB; the EmitterFunction consumes the queue (its SQS event source), and a message that
fails maxReceiveCount times reaches the EmitterDLQ, swept into parked/emitter/ like every dead letter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segment_bridge.errors import ServiceUnavailable
from segment_bridge.settings import Settings
from segment_bridge.store.aws import Clients, aws_errors

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 1_048_576
MAX_DELAY_SECONDS = 900


class RetryQueue:
    def __init__(self, settings: Settings, clients: Clients) -> None:
        self.url = settings.outbound_retry_queue_url
        self.clients = clients

    def defer(self, messages: list[tuple[str, int]]) -> None:
        """Put each (body, delay seconds) on the queue; ServiceUnavailable if any is not taken (the ones
        sent before stay: the caller hands its records back, and Segment dedupes a second send)."""
        batch: list[tuple[str, int]] = []
        size = 0
        for body, delay in messages:
            length = len(body.encode("utf-8"))
            if batch and (len(batch) == SQS_BATCH_ENTRIES or size + length > SQS_BATCH_BYTES):
                self._send(batch)
                batch, size = [], 0
            batch.append((body, delay))
            size += length
        if batch:
            self._send(batch)

    def _send(self, batch: list[tuple[str, int]]) -> None:
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(n), "MessageBody": body, "DelaySeconds": max(0, min(MAX_DELAY_SECONDS, delay))}
            for n, (body, delay) in enumerate(batch)
        ]
        with aws_errors("The events to retry could not be set aside."):
            answer = self.clients.sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
        if answer.get("Failed"):
            raise ServiceUnavailable("The events to retry could not all be set aside.")
