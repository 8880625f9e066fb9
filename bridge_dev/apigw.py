"""API Gateway, locally: the template's HTTP API (payload format 2.0) in front of its functions.

`HttpApi` is a WSGI app that does API Gateway's part: only the routes of the functions' `HttpApi` events
answer, a request becomes a v2 event (`api_gateway_event`), the function's answer becomes the response
(`http_answer`), and what API Gateway answers itself (404, 413, 500) has API Gateway's body. The local
stack serves it with werkzeug (`QuietRequestHandler`); the functions run through `bridge_dev.runtime`.
"""

from __future__ import annotations

import base64
import json
import re
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from werkzeug.serving import WSGIRequestHandler
from werkzeug.wsgi import ClosingIterator

from bridge_dev.runtime import ACCOUNT_ID, LocalFunction
from bridge_dev.template import TemplateError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

HOST = "127.0.0.1"
"""Where the local stack serves (and what a request without a peer address comes from)."""
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
"""API Gateway's payload quota for an HTTP API request."""
_DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
_TEXT_MEDIA_TYPES = {"application/json", "application/javascript", "application/xml"}

Answer = tuple[int, list[tuple[str, str]], bytes]


def http_routes(template: Mapping[str, Any]) -> dict[str, str]:
    """Route keys ("POST /v1/segment") of every function's HttpApi events -> the function's logical id."""
    routes: dict[str, str] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") != "HttpApi":
                continue
            properties = event.get("Properties", {})
            path = properties.get("Path")
            if not isinstance(path, str) or "+" in path or not _TEMPLATE_SEGMENT.fullmatch(path):
                raise TemplateError(
                    f"{logical_id}: only fixed paths and whole-segment {{name}} variables are served "
                    f"locally ({path})"
                )
            routes[f"{str(properties.get('Method', 'ANY')).upper()} {path}"] = logical_id
    return routes


_TEMPLATE_SEGMENT = re.compile(r"(/([^/{}]*|\{[A-Za-z0-9_]+\}))+")
"""A path of fixed segments and whole-segment variables (API Gateway's {name}; {name+} is not served)."""


def route_match(route_path: str, raw_path: str) -> dict[str, str] | None:
    """The path parameters (percent-decoded, as API Gateway passes them) if `raw_path` (as sent) matches
    the route's path, else None. A variable matches one whole, non-empty segment."""
    wanted, given = route_path.split("/"), raw_path.split("/")
    if len(wanted) != len(given):
        return None
    parameters: dict[str, str] = {}
    for pattern, segment in zip(wanted, given, strict=True):
        if pattern.startswith("{") and pattern.endswith("}"):
            if not segment:
                return None
            parameters[pattern[1:-1]] = unquote(segment)
        elif pattern != segment:
            return None
    return parameters


def is_text(content_type: str | None) -> bool:
    """Whether API Gateway passes a body of this type as text (anything else arrives base64)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    return (
        media_type.startswith("text/")
        or media_type in _TEXT_MEDIA_TYPES
        or media_type.endswith(("+json", "+xml"))
    )


def api_gateway_event(
    environ: WSGIEnvironment,
    body: bytes,
    route_key: str,
    *,
    request_id: str,
    received: datetime,
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The API Gateway HTTP API (payload format 2.0) event for a request."""
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").lower()
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            name = key.replace("_", "-").lower()
        else:
            continue
        headers[name] = str(value)
    source_ip = str(environ.get("REMOTE_ADDR", HOST))
    forwarded_for = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = f"{forwarded_for}, {source_ip}" if forwarded_for else source_ip
    headers["x-forwarded-port"] = str(environ.get("SERVER_PORT", ""))
    headers["x-forwarded-proto"] = "http"
    cookies = headers.pop("cookie", None)

    raw_query = str(environ.get("QUERY_STRING", ""))
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    raw_path = urlsplit(str(environ.get("RAW_URI") or environ.get("PATH_INFO", "/"))).path
    method = str(environ["REQUEST_METHOD"])

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "domainName": headers.get("host", HOST),
            "domainPrefix": headers.get("host", HOST).split(".")[0],
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": str(environ.get("SERVER_PROTOCOL", "HTTP/1.1")),
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": received.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(received.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = [cookie.strip() for cookie in cookies.split(";") if cookie.strip()]
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"], event["isBase64Encoded"] = _event_body(body, headers)
    return event


def _event_body(body: bytes, headers: Mapping[str, str]) -> tuple[str, bool]:
    """API Gateway passes text (a textual content type, not compressed) as is, anything else base64."""
    if is_text(headers.get("content-type")) and not headers.get("content-encoding"):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def http_answer(result: Any, request_id: str) -> Answer:
    """The HTTP response API Gateway makes of a function's (payload format 2.0) result."""
    if isinstance(result, dict) and "statusCode" in result:
        status = result["statusCode"]
        raw_body = result.get("body") or ""
        if not isinstance(status, int) or not isinstance(raw_body, str):
            return _gateway_error(HTTPStatus.INTERNAL_SERVER_ERROR, request_id)
        body = base64.b64decode(raw_body) if result.get("isBase64Encoded") else raw_body.encode("utf-8")
        headers = [(str(name), str(value)) for name, value in (result.get("headers") or {}).items()]
        headers += [("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or []]
    else:
        # A result without statusCode: API Gateway answers 200 with the result as JSON.
        status, headers, body = 200, [("Content-Type", "application/json")], json.dumps(result).encode()
    headers = [(name, value) for name, value in headers if name.lower() != "content-length"]
    return status, [*headers, ("Content-Length", str(len(body))), ("apigw-requestid", request_id)], body


def _gateway_error(status: HTTPStatus, request_id: str) -> Answer:
    body = json.dumps({"message": status.phrase}, separators=(",", ":")).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("apigw-requestid", request_id),
    ]
    return status.value, headers, body


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the API answered, for the request log (no headers, query or body: they hold keys)."""

    method: str
    path: str
    status: int
    milliseconds: float


class HttpApi:
    """A WSGI app that does what API Gateway does for the template's HTTP API."""

    def __init__(
        self,
        routes: Mapping[str, LocalFunction],
        on_request: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        self.routes = dict(routes)
        self.on_request = on_request

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        status, headers, body = self.answer(environ, request_id)
        start_response(f"{status} {_phrase(status)}", headers)
        if self.on_request is None:
            return [body]
        record = RequestRecord(
            method=str(environ["REQUEST_METHOD"]),
            path=str(environ.get("PATH_INFO", "")),
            status=status,
            milliseconds=(time.perf_counter() - started) * 1000,
        )
        on_request = self.on_request
        # Logged once the response is written, so the log's own work never delays the client.
        return ClosingIterator([body], lambda: on_request(record))

    def answer(self, environ: WSGIEnvironment, request_id: str) -> Answer:
        received = datetime.now(UTC)
        body = _read_body(environ)
        if body is None:
            return _gateway_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, request_id)
        method, path = str(environ["REQUEST_METHOD"]).upper(), str(environ.get("PATH_INFO", ""))
        route_key = f"{method} {path}" if f"{method} {path}" in self.routes else f"ANY {path}"
        parameters: dict[str, str] | None = None
        if route_key not in self.routes:  # fixed routes first, then those with {variables}, as API Gateway
            raw_path = urlsplit(str(environ.get("RAW_URI") or path)).path
            for key in self.routes:
                verb, _, route_path = key.partition(" ")
                if verb in (method, "ANY") and (found := route_match(route_path, raw_path)) is not None:
                    route_key, parameters = key, found
                    break
        function = self.routes.get(route_key)
        if function is None:
            return _gateway_error(HTTPStatus.NOT_FOUND, request_id)
        event = api_gateway_event(
            environ, body, route_key, request_id=request_id, received=received, path_parameters=parameters
        )
        try:
            # Lambda hands the function JSON and takes JSON back.
            result = json.loads(json.dumps(function.invoke(event, str(uuid.uuid4()))))
        except Exception:
            traceback.print_exc()
            return _gateway_error(HTTPStatus.INTERNAL_SERVER_ERROR, request_id)
        return http_answer(result, request_id)


def _read_body(environ: WSGIEnvironment) -> bytes | None:
    """The request body; None when it is over API Gateway's payload quota."""
    stream = environ["wsgi.input"]
    declared = str(environ.get("CONTENT_LENGTH") or "")
    if declared.isdigit():
        length = int(declared)
        if length > MAX_PAYLOAD_BYTES:
            if length <= _DRAIN_LIMIT_BYTES:  # read it, so the client gets to read the 413
                while length > 0 and (chunk := stream.read(min(length, 1 << 20))):
                    length -= len(chunk)
            return None
        return bytes(stream.read(length)) if length else b""
    if environ.get("wsgi.input_terminated"):  # chunked
        body = bytes(stream.read(MAX_PAYLOAD_BYTES + 1))
        return None if len(body) > MAX_PAYLOAD_BYTES else body
    return b""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class QuietRequestHandler(WSGIRequestHandler):
    """werkzeug's handler without its access log: the stack logs requests its own way."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass
