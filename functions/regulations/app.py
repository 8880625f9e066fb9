"""RegulationsFunction, hourly: each opted-in workspace's Segment regulations queued as deletes; the age of
the deployment's oldest unfinished privacy request measured (OldestDeletionAlarm).

A workspace whose token Segment refuses does not stop the others; the run then fails at its end, so the
RegulationsErrorsAlarm tells an operator, and the log says which workspace (docs/privacy-receipts.md).
A workspace whose poll fails for a passing reason (Segment's API down or still rate-limiting) is logged
and waits for the next run.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_bridge.errors import BridgeError
from segment_bridge.privacy.regulations import TokenRefused, oldest_age_seconds, poll_workspace
from segment_bridge.settings import get_settings
from segment_bridge.store import get_store

logger, metrics = Logger(), Metrics()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, object], context: LambdaContext) -> dict[str, int]:
    store, settings = get_store(), get_settings()
    totals = {"workspaces": 0, "listed": 0, "regulations_queued": 0, "deletes_queued": 0, "refused": 0}
    failed: list[BridgeError] = []
    for workspace_id in store.regulations.polling_workspaces():
        try:
            done = poll_workspace(
                workspace_id,
                polls=store.regulations,
                queue=store.queues,
                receipts=store.receipts,
                policy=settings.segment_endpoints,
                max_bytes=settings.queue_message_bytes,
            )
        except BridgeError as error:  # this workspace waits for the next run; the others go on
            logger.warning("regulations not polled", extra={"workspace_id": workspace_id, "code": error.code})
            totals["refused"] += isinstance(error, TokenRefused)
            failed.append(error)
            continue
        if done is not None:
            totals["workspaces"] += 1
            for name, value in done.figures().items():
                if name in totals:
                    totals[name] += value
    age = oldest_age_seconds(store.receipts.oldest_unfinished(), datetime.now(UTC))
    metrics.add_metric(name="OldestUnfinishedDeletionSeconds", unit=MetricUnit.Seconds, value=age)
    metrics.add_metric(name="RegulationDeletesQueued", unit=MetricUnit.Count, value=totals["deletes_queued"])
    totals["oldest_unfinished_seconds"] = round(age)
    logger.info("regulations polled", extra=totals)
    refused = [error for error in failed if isinstance(error, TokenRefused)]
    if refused:  # an operator must act (a transient failure only waits for the next run)
        raise refused[0]
    return totals
