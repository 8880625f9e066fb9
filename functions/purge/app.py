"""PurgeFunction: dead letters swept into the bucket every hour; deleted users' events purged every day.

Every run first sweeps both dead-letter queues into the bucket's parked/ (dead_letters.py), so nothing
waits on a queue that drops messages after 14 days. The daily run (`{"task": "purge"}`, the default) then
plans one purge job per workspace with deletions listed (jobs/purge.py): the JobsFunction's workers read
and rewrite the workspace's raw/, rejected/, unapplied/ and parked/ in parallel (docs/archive-jobs.md,
docs/privacy.md); workspaces without any are not read.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_bridge.dead_letters import sweep_both
from segment_bridge.jobs.purge import plan_purge
from segment_bridge.settings import get_settings
from segment_bridge.store import get_store

logger, metrics = Logger(), Metrics()
SAFETY_MS = 5_000
"""A sweep-only run stops sweeping with this much time left (one step: 10 messages received and written)."""
PURGE_SHARE = 2 / 3
"""In the daily run, the share of the time left that the sweep leaves to the purge after it."""


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, object], context: LambdaContext) -> dict[str, int]:
    store, settings = get_store(), get_settings()
    task = "sweep" if event.get("task") == "sweep" else "purge"
    stop_at_ms = SAFETY_MS if task == "sweep" else context.get_remaining_time_in_millis() * PURGE_SHARE
    total = sweep_both(
        {"ingest": settings.ingest_dlq_url, "emitter": settings.emitter_dlq_url},
        store.queues,
        store.parked,
        out_of_time=lambda: context.get_remaining_time_in_millis() < stop_at_ms,
    )
    kept = total["ingest_dead_letters_kept"] + total["emitter_dead_letters_kept"]
    metrics.add_metric(name="DeadLettersParked", unit=MetricUnit.Count, value=kept)
    # What waits for an operator (ParkedItemsAlarm): on while anything is parked, whatever its age.
    metrics.add_metric(
        name="ItemsParked", unit=MetricUnit.Count, value=total["ingest_parked"] + total["emitter_parked"]
    )
    if task == "purge":
        figures = {"workspaces": 0, "purge_jobs": 0}
        for workspace in store.list_workspaces():
            figures["workspaces"] += 1
            if plan_purge(workspace.workspace_id, store) is not None:
                figures["purge_jobs"] += 1
        metrics.add_metric(name="PurgeJobsPlanned", unit=MetricUnit.Count, value=figures["purge_jobs"])
        total |= figures
    logger.info(
        "dead letters swept" if task == "sweep" else "dead letters swept, archive purges planned", extra=total
    )
    return total
