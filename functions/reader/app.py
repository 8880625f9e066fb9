"""ReaderFunction: the read API, shaped like Segment's Profile API (docs/read-api.md)."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import unquote

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from segment_bridge.errors import BridgeError, NotFound
from segment_bridge.read.api import answer, error_body, parse
from segment_bridge.read.auth import ReadTokens
from segment_bridge.read.client import CachedProtection
from segment_bridge.read.model import Reader
from segment_bridge.settings import get_settings
from segment_bridge.store import get_store

logger, metrics = Logger(), Metrics()
app = APIGatewayHttpResolver()
ROUTE = "/v1/spaces/<workspace>/collections/<collection>/profiles/<external_id>/<facet>"
USAGE = "/v1/spaces/<workspace>/collections/users|accounts/profiles/<id_type>:<id>/<facet>"


@lru_cache(maxsize=1)
def read_tokens() -> ReadTokens:
    return ReadTokens(
        get_store().credentials.workspace_for_read_token_hash, ttl=get_settings().auth_cache_seconds
    )


@lru_cache(maxsize=1)
def source() -> CachedProtection:
    return CachedProtection(get_store().reading, ttl=get_settings().auth_cache_seconds)


@app.get(ROUTE)
def read(workspace: str, collection: str, external_id: str, facet: str) -> Response[dict[str, object]]:
    event = app.current_event
    read_tokens().authorize({k.lower(): v for k, v in (event.headers or {}).items()}, workspace)
    request = parse(workspace, collection, unquote(external_id), facet, event.query_string_parameters or {})
    body = answer(request, Reader(source()))
    metrics.add_metric(name="ReadsAnswered", unit=MetricUnit.Count, value=1)
    return json_response(200, body)


def json_response(
    status: int, body: dict[str, object], headers: dict[str, str] | None = None
) -> Response[dict[str, object]]:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers
    )


@app.exception_handler(BridgeError)
def refused(error: BridgeError) -> Response[dict[str, object]]:
    logger.info("read refused", extra={"code": error.code, "status": error.status})
    name = "ReadsFailed" if error.status >= 500 else "ReadsRefused"
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    challenge = {"WWW-Authenticate": 'Basic realm="segment-bridge read API"'} if error.status == 401 else None
    return json_response(error.status, error_body(error), challenge)


@app.exception_handler(Exception)
def failed(_: Exception) -> Response[dict[str, object]]:
    logger.exception("unexpected failure")
    metrics.add_metric(name="ReadsFailed", unit=MetricUnit.Count, value=1)
    return json_response(500, error_body(BridgeError("Something failed on our side; retry.")))


@app.not_found
def no_route(_: Exception) -> Response[dict[str, object]]:
    return json_response(404, error_body(NotFound(f"No such route; the read API answers GET {USAGE}.")))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, object], context: LambdaContext) -> dict[str, object]:
    return app.resolve(event, context)
