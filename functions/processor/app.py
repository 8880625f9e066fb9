"""ProcessorFunction: SQS batch of packed Segment events -> raw archive -> mapping -> DynamoDB profiles.

Each queue message is judged on its own (partial batch response). A message ends one of three ways:
- applied: SQS deletes it;
- deferred, unfinished for a reason of time, never of failure: the invocation had no time left to start
  it (TimeBudget), its privacy delete used its share of the invocation's time (TimeShares) with linked
  ids still to erase, or a profile it writes stayed contended by other invocations past WRITE_ATTEMPTS.
  It is sent to the IngestQueue again as a fresh message (same body, same workspace group, a receive
  count of its own; a hot profile's after a 1-10 s pause) and reported done, so waiting never spends
  one of its maxReceiveCount receives and never sends it to the IngestDLQ; the next receive starts it,
  or resumes the delete where it stopped (metric MessagesDeferred);
- failed, when AWS fails (or the deferred copy cannot be sent): SQS redelivers it after the visibility
  timeout, and after maxReceiveCount it lands in the IngestDLQ, whole, ready to be re-driven.
"""

from __future__ import annotations

import gc
from functools import lru_cache, partial

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_bridge.processor.mappings import CurrentMappings
from segment_bridge.processor.message import Deferred, Invocation, TimeBudget, TimeShares
from segment_bridge.store import get_store

logger, metrics = Logger(), Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
budget = TimeBudget()


@lru_cache(maxsize=1)
def mappings() -> CurrentMappings:
    """Each message's mapping: the stored version, checked at its start (docs/exactness.md)."""
    return CurrentMappings(get_store().mappings)


@lru_cache(maxsize=1)
def freeze_warm_heap() -> None:
    """Once per environment, after its first invocation: what is alive then (the imported modules, boto3's
    clients and their service models, the mapping cache) lives as long as the environment, so Python's
    cyclic garbage collector stops scanning it (gc.freeze). Every full collection a message's allocations
    trigger (several per full message) then scans what was made since, not also the warm environment's
    90,000 objects (about 50 ms of CPU each). The young generations are collected first (cheap: the
    invocation's cyclic garbage is there); a full collection would scan the whole process, which on the
    local stack holds the emulated AWS and every environment."""
    gc.collect(1)
    gc.freeze()


def handle(record: SQSRecord, invocation: Invocation) -> None:
    result = invocation.receive_or_defer(record.body)
    if isinstance(result, Deferred):
        logger.info("message deferred", extra={"reason": result.reason})
        metrics.add_metric(name="MessagesDeferred", unit=MetricUnit.Count, value=1)
        return
    if result.refused:
        logger.info("message refused: its workspace is being deleted or is gone")
        metrics.add_metric(name="MessagesRefused", unit=MetricUnit.Count, value=result.refused)
        return
    logger.info("message applied", extra=result.figures())
    metrics.add_metric(name="HistoryWritten", unit=MetricUnit.Count, value=result.history_written)
    metrics.add_metric(name="DuplicatesIgnored", unit=MetricUnit.Count, value=result.duplicates)
    metrics.add_metric(name="EventsUnapplied", unit=MetricUnit.Count, value=len(result.unapplied))
    metrics.add_metric(name="PreferencesIgnored", unit=MetricUnit.Count, value=result.ignored_preferences)
    metrics.add_metric(name="TimestampsClamped", unit=MetricUnit.Count, value=result.clamped_timestamps)
    metrics.add_metric(name="MappingPathsFailed", unit=MetricUnit.Count, value=result.failed_paths)
    metrics.add_metric(name="ProfileOverBudget", unit=MetricUnit.Count, value=result.over_budget)
    metrics.add_metric(name="IdsBlocked", unit=MetricUnit.Count, value=result.blocked_ids)
    metrics.add_metric(name="LinksRefused", unit=MetricUnit.Count, value=result.refused_links)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, object], context: LambdaContext) -> PartialItemFailureResponse:
    records = event.get("Records")
    store = get_store()
    shares = TimeShares(
        context.get_remaining_time_in_millis, len(records) if isinstance(records, list) else 1
    )
    invocation = Invocation(store, store.queues, mappings(), budget, shares)
    answer = process_partial_response(
        event=event,
        record_handler=partial(handle, invocation=invocation),
        processor=processor,
        context=context,
    )
    freeze_warm_heap()
    return answer
