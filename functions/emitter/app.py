"""EmitterFunction: outbox stream -> Segment track calls (delivery itself arrives with issue #4).

Until then every new outbox item is parked whole in the EmitterDLQ with its reason, so nothing the
product writes is lost: a stream's on-failure destination alone keeps only pointers that expire in 24 h.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_bridge.store import get_store

logger, metrics = Logger(), Metrics()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
NOT_SENT = "outbound delivery to Segment is not enabled in this version"


def handle(record: DynamoDBRecord) -> None:
    if record.dynamodb is None or record.dynamodb.new_image is None:
        return  # a deletion (or TTL expiry) of an outbox item sends nothing
    get_store().park_outbound(NOT_SENT, record.dynamodb.new_image)
    metrics.add_metric(name="OutboundParked", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, object], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=handle, processor=processor, context=context)
