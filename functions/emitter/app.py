"""EmitterFunction: outbox stream -> Segment track calls (/v1/batch), deterministic and never lost.

One batch of stream records becomes a few gzip'd /v1/batch requests per workspace, so Powertools'
per-record BatchProcessor does not fit; the answer is the same partial batch response it would build.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_bridge.cache import TtlCache
from segment_bridge.destinations import ChangeRule, Destination, InvalidRule
from segment_bridge.outbound.delivery import PARALLEL_WORKSPACES, Sending, deliver, stream_changes
from segment_bridge.outbound.egress import HttpSender
from segment_bridge.settings import get_settings
from segment_bridge.stats import count_deliveries, today
from segment_bridge.store import get_store

if TYPE_CHECKING:  # Powertools' batch package (and asyncio with it) only for the answer's type
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

logger, metrics = Logger(), Metrics()
SAFETY_SECONDS = 5.0


@lru_cache(maxsize=1)
def destinations() -> TtlCache[str, Destination]:
    return TtlCache(get_store().workspaces.segment_destination, ttl=get_settings().auth_cache_seconds)


@lru_cache(maxsize=1)
def rules() -> TtlCache[str, list[ChangeRule | InvalidRule]]:
    return TtlCache(lambda _: get_store().workspaces.change_rules(), ttl=get_settings().auth_cache_seconds)


@lru_cache(maxsize=1)
def sender() -> HttpSender:
    return HttpSender(policy=get_settings().segment_endpoints)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, object], context: LambdaContext) -> PartialItemFailureResponse:
    settings = get_settings()
    changes = stream_changes(event, time.time)
    report = deliver(
        changes,
        outbox_table=settings.outbox_table,
        own_tables=frozenset({settings.profiles_table, settings.events_table}),
        sending=Sending(
            destination=destinations().get,
            sender=sender(),
            parking=get_store().parked,
            deadline=time.time() + context.get_remaining_time_in_millis() / 1000 - SAFETY_SECONDS,
            clock=time.time,  # wall clock: records' ages come from their stream timestamps
            sleep=time.sleep,
            parallel=PARALLEL_WORKSPACES,  # a stalled destination delays no other workspace
        ),
        rules=rules().get("all") or [],
    )
    logger.info("outbox batch delivered", extra=report.figures())
    count_deliveries(get_store(), report.by_workspace, today())
    for name, value in (
        ("EventsSent", report.sent),
        ("EventsRetried", report.retried),
        ("EventsParked", report.parked),
        ("ParkedByInvalidRules", report.invalid_rules),
        ("EchoesSuppressed", report.echoes),
        ("DestinationsGivenUp", len(report.given_up)),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    return {"batchItemFailures": [{"itemIdentifier": record_id} for record_id in report.failed]}
