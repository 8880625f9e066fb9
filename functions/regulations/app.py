"""RegulationsFunction, hourly: the workspaces that poll their Segment regulations listed and one poll task
per workspace planned on the JobsQueue (segment_bridge.jobs.regulations: the JobsFunction polls them, each
in its own invocation); the age of the deployment's oldest unfinished privacy request measured
(OldestDeletionAlarm).

It reads the previous runs' finished jobs first: a token Segment refused in one of them fails this run at
its end (after planning), so the RegulationsErrorsAlarm tells an operator; the JobsFunction's log says
which workspace (docs/privacy-receipts.md). A poll that failed for a passing reason (Segment's API down or
still rate-limiting) is counted and waits for the next run.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_bridge.jobs.regulations import plan_regulations, settle_regulations
from segment_bridge.privacy.regulations import TokenRefused, oldest_age_seconds
from segment_bridge.store import get_store

logger, metrics = Logger(), Metrics()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, object], context: LambdaContext) -> dict[str, object]:
    store = get_store()
    settled = settle_regulations(store.jobs)
    polling = store.regulations.polling_workspaces()
    job = plan_regulations(polling, store.jobs)
    age = oldest_age_seconds(store.receipts.oldest_unfinished(), datetime.now(UTC))
    metrics.add_metric(name="OldestUnfinishedDeletionSeconds", unit=MetricUnit.Seconds, value=age)
    totals: dict[str, object] = {
        "workspaces": len(polling),
        "job_id": None if job is None else job.job_id,
        **settled,
        "oldest_unfinished_seconds": round(age),
    }
    logger.info("regulations planned", extra=totals)
    if settled["polls_refused"]:  # an operator must act (a transient failure only waits for the next run)
        raise TokenRefused(
            f"Segment's Public API refused {settled['polls_refused']} workspace token(s) in the last run: "
            "the JobsFunction's log names the workspace; store a valid token with `segment-bridge "
            "deletions token WORKSPACE`, or remove it with --unset."
        )
    return totals
