"""JobsFunction: one archive job task per JobsQueue message (purge, replay, offboarding), run from its
cursor within the invocation's time (segment_bridge.jobs.engine; docs/archive-jobs.md).

A task out of time saves its cursor, sends its message again and is reported done; one whose AWS calls
fail is reported failed: SQS delivers it again after the visibility timeout (from its last save) and,
after maxReceiveCount, keeps it in the JobsDLQ.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_bridge.jobs.engine import TASK_RESERVE_SECONDS, run_task
from segment_bridge.jobs.fleet import FINISHERS, KINDS
from segment_bridge.store import get_store

logger, metrics = Logger(), Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


def handle(record: SQSRecord, lambda_context: LambdaContext) -> None:
    store = get_store()
    outcome = run_task(
        record.body,
        store.jobs,
        store,
        lambda: lambda_context.get_remaining_time_in_millis() < TASK_RESERVE_SECONDS * 1000,
        KINDS,
        FINISHERS,
    )
    logger.info("task run", extra={"status": outcome.status, "kind": outcome.kind})
    metrics.add_metric(name="JobTasksRun", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, object], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=handle, processor=processor, context=context)
