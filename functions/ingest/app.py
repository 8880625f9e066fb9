"""IngestFunction: a Segment delivery (webhook or SDK) -> authenticated, judged, durably queued."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_bridge.errors import BridgeError
from segment_bridge.ingest.auth import CachedKeyDirectory
from segment_bridge.ingest.intake import HttpRequest, Limits, receive
from segment_bridge.settings import get_settings
from segment_bridge.store import get_store

logger, metrics = Logger(), Metrics()
app = APIGatewayHttpResolver()
ROUTES = ("segment", "batch", "import", "identify", "track", "page", "screen", "group", "alias")


@lru_cache(maxsize=1)
def key_directory() -> CachedKeyDirectory:
    return CachedKeyDirectory(
        get_store().credentials.workspace_for_key_hash, ttl=get_settings().auth_cache_seconds
    )


def deliver() -> Response[dict[str, object]]:
    event = app.current_event
    request = HttpRequest(
        path=event.raw_path,
        headers={name.lower(): value for name, value in (event.headers or {}).items()},
        query=event.query_string_parameters or {},
        body=event.body,
        is_base64_encoded=bool(event.is_base64_encoded),
        received_at=datetime.fromtimestamp(event.request_context.time_epoch / 1000, tz=UTC),
        request_id=event.request_context.request_id,
    )
    limits = Limits(queue_message_bytes=get_settings().queue_message_bytes)
    outcome = receive(request, directory=key_directory(), sink=get_store(), limits=limits)
    logger.info("delivery queued", extra=outcome.figures())
    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=outcome.accepted)
    metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=len(outcome.rejected))
    metrics.add_metric(name="EchoesSuppressed", unit=MetricUnit.Count, value=outcome.echoes)
    return json_response(200, outcome.body())


for route in ROUTES:
    app.post(f"/v1/{route}")(deliver)


def json_response(status: int, body: dict[str, object]) -> Response[dict[str, object]]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@app.exception_handler(BridgeError)
def refused(error: BridgeError) -> Response[dict[str, object]]:
    logger.warning("delivery refused", extra={"code": error.code, "status": error.status})
    metrics.add_metric(name="DeliveriesRefused", unit=MetricUnit.Count, value=1)
    return json_response(error.status, error.body())


@app.exception_handler(Exception)
def failed(_: Exception) -> Response[dict[str, object]]:
    logger.exception("unexpected failure")
    metrics.add_metric(name="DeliveriesFailed", unit=MetricUnit.Count, value=1)
    return json_response(500, {"code": "internal_error", "message": "Something failed on our side; retry."})


@app.not_found
def no_route(_: Exception) -> Response[dict[str, object]]:
    return json_response(404, {"code": "not_found", "message": "POST events to /v1/segment or /v1/batch."})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, object], context: LambdaContext) -> dict[str, object]:
    return app.resolve(event, context)
