"""ProcessorFunction: SQS batch of packed Segment events -> raw archive -> mapping -> DynamoDB profiles.

Each queue message is judged on its own (partial batch response): one failed message never blocks the
rest, and after the queue's maxReceiveCount it lands in the IngestDLQ, whole, ready to be re-driven. A
message the invocation has no time left for is not started: it goes back to the queue (TimeBudget). Each
gets an equal share of the invocation's time: a privacy delete still erasing when its share is spent
fails its message alone, and the redelivery resumes where it stopped (TimeShares).
"""

from __future__ import annotations

from functools import lru_cache, partial

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_bridge.cache import TtlCache
from segment_bridge.mapping import Mapping
from segment_bridge.processing import TimeBudget, TimeShares
from segment_bridge.settings import get_settings
from segment_bridge.store import get_store

logger, metrics = Logger(), Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
budget = TimeBudget()


@lru_cache(maxsize=1)
def mappings() -> TtlCache[str, Mapping]:
    return TtlCache(get_store().workspaces.get_mapping, ttl=get_settings().auth_cache_seconds)


def handle(record: SQSRecord, lambda_context: LambdaContext, shares: TimeShares) -> None:
    remaining_ms = lambda_context.get_remaining_time_in_millis()
    applied = budget.receive(
        remaining_ms,
        record.body,
        record.message_id,
        store=get_store(),
        mappings=mappings(),
        out_of_time=shares.next(),
    )
    logger.info("message applied", extra=applied.figures())
    metrics.add_metric(name="HistoryWritten", unit=MetricUnit.Count, value=applied.history_written)
    metrics.add_metric(name="DuplicatesIgnored", unit=MetricUnit.Count, value=applied.duplicates)
    metrics.add_metric(name="EventsUnapplied", unit=MetricUnit.Count, value=len(applied.unapplied))
    metrics.add_metric(name="PreferencesIgnored", unit=MetricUnit.Count, value=applied.ignored_preferences)
    metrics.add_metric(name="TimestampsClamped", unit=MetricUnit.Count, value=applied.clamped_timestamps)
    metrics.add_metric(name="MappingPathsFailed", unit=MetricUnit.Count, value=applied.failed_paths)
    metrics.add_metric(name="ProfileOverBudget", unit=MetricUnit.Count, value=applied.over_budget)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, object], context: LambdaContext) -> PartialItemFailureResponse:
    records = event.get("Records")
    shares = TimeShares(
        context.get_remaining_time_in_millis, len(records) if isinstance(records, list) else 1
    )
    return process_partial_response(
        event=event, record_handler=partial(handle, shares=shares), processor=processor, context=context
    )
