"""PurgeFunction (daily, EventBridge schedule): removes deleted users' events from the archive.

One pass over each workspace's raw/, rejected/ and unapplied/ per run, for all the workspace's deletions
listed since the last run (README "Privacy deletes"); workspaces without any are not read.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_bridge.deletion import purge
from segment_bridge.store import get_store

logger, metrics = Logger(), Metrics()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, object], context: LambdaContext) -> dict[str, int]:
    store = get_store()
    total = {"workspaces": 0, "entities": 0, "objects_read": 0, "objects_rewritten": 0, "events_removed": 0}
    for workspace in store.list_workspaces():
        figures = purge(workspace.workspace_id, store.archive, store.profiles).figures()
        total["workspaces"] += 1
        for name, value in figures.items():
            total[name] += value
    logger.info("archive purged", extra=total)
    metrics.add_metric(name="ArchivedEventsPurged", unit=MetricUnit.Count, value=total["events_removed"])
    return total
