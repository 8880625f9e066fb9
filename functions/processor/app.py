"""ProcessorFunction: SQS batch of packed Segment events -> raw archive (mapping into DynamoDB: issue #3).

Each queue message is judged on its own (partial batch response): one bad message never blocks the rest,
and after the queue's maxReceiveCount it lands in the IngestDLQ, whole, ready to be re-driven.
"""

from __future__ import annotations

from datetime import datetime

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_bridge.envelope import unpack
from segment_bridge.store import get_store

logger, metrics = Logger(), Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


def handle(record: SQSRecord) -> None:
    envelope, events = unpack(record.body)
    name = f"{envelope.requestId}-{record.message_id}"
    get_store().archive_raw(envelope.workspaceId, datetime.fromisoformat(envelope.receivedAt), name, events)
    metrics.add_metric(name="EventsArchived", unit=MetricUnit.Count, value=len(events))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, object], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=handle, processor=processor, context=context)
