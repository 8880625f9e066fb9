"""EmitterFunction: outbox stream -> Segment track calls (/v1/batch), deterministic and never lost; and the
OutboundRetryQueue -> Segment again, for what Segment had not taken yet.

One batch becomes a few gzip'd /v1/batch requests per workspace, so Powertools' per-record BatchProcessor
does not fit; the answer is the same partial batch response it would build (stream records or queue
messages that AWS failed to take care of).
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_bridge.cache import TtlCache
from segment_bridge.destinations import ChangeRule, Destination, InvalidRule
from segment_bridge.outbound.delivery import (
    PARALLEL_WORKSPACES,
    Report,
    Sending,
    deliver,
    deliver_retries,
    stream_changes,
)
from segment_bridge.outbound.egress import HttpSender
from segment_bridge.outbound.pacing import Pacer
from segment_bridge.settings import get_settings, integration_name
from segment_bridge.stats import count_deliveries, today
from segment_bridge.store import get_store

if TYPE_CHECKING:  # Powertools' batch package (and asyncio with it) only for the answer's type
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

logger, metrics = Logger(), Metrics()
SAFETY_SECONDS = 5.0


@lru_cache(maxsize=1)
def destinations() -> TtlCache[str, Destination]:
    return TtlCache(get_store().destinations.segment_destination, ttl=get_settings().auth_cache_seconds)


@lru_cache(maxsize=1)
def rules() -> TtlCache[str, list[ChangeRule | InvalidRule]]:
    return TtlCache(lambda _: get_store().rules.change_rules(), ttl=get_settings().auth_cache_seconds)


@lru_cache(maxsize=1)
def sender() -> HttpSender:
    return HttpSender(policy=get_settings().segment_endpoints)


@lru_cache(maxsize=1)
def pacer() -> Pacer:
    """Each workspace's pace and 429 holds, for as long as the container lives."""
    settings = get_settings()
    return Pacer(settings.segment_requests_per_second, settings.segment_events_per_second, time.time)


def sending(context: LambdaContext) -> Sending:
    settings, store = get_settings(), get_store()
    return Sending(
        destination=destinations().get,
        sender=sender(),
        parking=store.parked,
        deadline=time.time() + context.get_remaining_time_in_millis() / 1000 - SAFETY_SECONDS,
        clock=time.time,  # wall clock: records' ages come from their stream timestamps
        sleep=time.sleep,
        parallel=PARALLEL_WORKSPACES,  # a stalled destination delays no other workspace
        retries=store.retries,
        pacer=pacer(),
        integration=integration_name(),
        horizon_seconds=settings.outbound_retry_hours * 3600,
        message_bytes=settings.queue_message_bytes,
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    records = event.get("Records") or []
    if records and records[0].get("eventSource") == "aws:sqs":  # the OutboundRetryQueue
        report = deliver_retries([(r["messageId"], r["body"]) for r in records], sending(context))
    else:
        settings = get_settings()
        report = deliver(
            stream_changes(event, time.time),
            outbox_table=settings.outbox_table,
            own_tables=frozenset({settings.profiles_table, settings.events_table}),
            sending=sending(context),
            rules=rules().get("all") or [],
        )
    tell(report)
    return {
        "batchItemFailures": [{"itemIdentifier": record_id} for record_id in dict.fromkeys(report.failed)]
    }


def tell(report: Report) -> None:
    logger.info("outbound batch delivered", extra=report.figures())
    count_deliveries(get_store(), report.by_workspace, today())
    for name, value in (
        ("EventsSent", report.sent),
        ("EventsRetried", report.retried),
        ("EventsDeferred", report.deferred),
        ("EventsParked", report.parked),
        ("EventsExpired", report.expired),
        ("ParkedByInvalidRules", report.invalid_rules),
        ("EchoesSuppressed", report.echoes),
        ("DestinationsGivenUp", len(report.given_up)),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
