"""The local stack: an embedded AWS (moto in server mode) and the HTTP API in front of the real handlers.

`make dev` runs `python -m bridge_dev.local`. Everything comes from template.yaml: the tables, queues and
bucket (`bridge_dev.template`), the functions' environment, and the API's routes (each function's
`HttpApi` events). `HttpApi` does API Gateway's part for an HTTP API with payload format 2.0: only the
template's routes answer, a request becomes a v2 event, the function's answer becomes the response.
`LocalFunction` does Lambda's: the handler loaded from CodeUri/Handler, one invocation at a time.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib.util
import json
import logging
import os
import shlex
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from http import HTTPStatus
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import requests
from moto.server import ThreadedMotoServer
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wsgi import ClosingIterator

from bridge_dev.events import (
    DEMO_API_KEY,
    DEMO_WORKSPACE_ID,
    EVENTS_DIR,
    SIGNED_API_KEY,
    SIGNED_SHARED_SECRET,
    SIGNED_WORKSPACE_ID,
)
from bridge_dev.pollers import Poller, SqsPoller, StreamPoller
from bridge_dev.segment_api import FakeSegment
from bridge_dev.target import FAKE_CREDENTIAL
from bridge_dev.template import TEMPLATE_PATH, LocalResources, TemplateError, create_resources
from segment_bridge.errors import Conflict
from segment_bridge.settings import get_settings
from segment_bridge.store import Store, get_store

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from mypy_boto3_sqs import SQSClient

HOST = "127.0.0.1"
DEFAULT_PORT = 3000  # sam local start-api's
DEFAULT_AWS_PORT = 5000  # moto_server's
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
"""API Gateway's payload quota for an HTTP API request."""
_DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
WEBHOOK_PATH = "/v1/segment"
SAMPLE_EVENT = EVENTS_DIR / "ingest_webhook_batch.json"

Handler = Callable[[dict[str, Any], Any], Any]
Answer = tuple[int, list[tuple[str, str]], bytes]

# Variables that would send boto3 elsewhere than the embedded AWS, or to someone's real account.
_AWS_OVERRIDES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
_TEXT_MEDIA_TYPES = {"application/json", "application/javascript", "application/xml"}


class PortInUse(OSError):
    """A port the local stack needs is taken."""


# ---------------------------------------------------------------------------------------------- Lambda


@dataclass
class LocalFunction:
    """One function of the template, as Lambda runs it: its handler, memory and timeout.

    Invocations are serialised, as in one Lambda execution environment: Powertools keeps the current
    event on the resolver and logger/metrics state per process, so two requests must not overlap.
    """

    logical_id: str
    handler: Handler
    memory_mb: int
    timeout_seconds: int
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def invoke(self, event: dict[str, Any], request_id: str) -> Any:
        with self._lock:
            return self.handler(event, LambdaContext(self, request_id))


class LambdaContext:
    """What Lambda passes a handler as `context` (what Powertools reads of it)."""

    function_version = "$LATEST"

    def __init__(self, function: LocalFunction, request_id: str) -> None:
        self.function_name = function.logical_id
        self.memory_limit_in_mb = function.memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function.logical_id}"
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{function.logical_id}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + function.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_function(template: Mapping[str, Any], logical_id: str) -> LocalFunction:
    """Import the function's handler from its CodeUri and Handler, under a name of its own."""
    resource = template.get("Resources", {}).get(logical_id, {})
    if resource.get("Type") != "AWS::Serverless::Function":
        raise TemplateError(f"{logical_id} is not an AWS::Serverless::Function")
    properties = {
        **template.get("Globals", {}).get("Function", {}),
        **resource.get("Properties", {}),
    }
    module_path, _, attribute = str(properties["Handler"]).rpartition(".")
    source = TEMPLATE_PATH.parent / str(properties["CodeUri"]) / (module_path.replace(".", "/") + ".py")
    name = f"bridge_local_{logical_id}"
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise TemplateError(f"cannot load {source} for {logical_id}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return LocalFunction(
        logical_id=logical_id,
        handler=getattr(module, attribute),
        memory_mb=int(properties.get("MemorySize", 128)),
        timeout_seconds=int(properties.get("Timeout", 3)),
    )


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
            if not isinstance(path, str) or "{" in path:
                raise TemplateError(f"{logical_id}: only fixed HttpApi paths are served locally ({path})")
            routes[f"{str(properties.get('Method', 'ANY')).upper()} {path}"] = logical_id
    return routes


# ---------------------------------------------------------------------------------------------- API Gateway


def is_text(content_type: str | None) -> bool:
    """Whether API Gateway passes a body of this type as text (anything else arrives base64)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    return (
        media_type.startswith("text/")
        or media_type in _TEXT_MEDIA_TYPES
        or media_type.endswith(("+json", "+xml"))
    )


def api_gateway_event(
    environ: WSGIEnvironment, body: bytes, route_key: str, *, request_id: str, received: datetime
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
        function = self.routes.get(route_key)
        if function is None:
            return _gateway_error(HTTPStatus.NOT_FOUND, request_id)
        event = api_gateway_event(environ, body, route_key, request_id=request_id, received=received)
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


class _QuietRequestHandler(WSGIRequestHandler):
    """werkzeug's handler without its access log: the stack logs requests its own way."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


# ---------------------------------------------------------------------------------------------- the stack


@dataclass(frozen=True, slots=True)
class DemoWorkspace:
    workspace_id: str
    name: str
    api_key: str
    shared_secret: str | None = None


DEMO_WORKSPACES = (
    DemoWorkspace(DEMO_WORKSPACE_ID, "Demo", DEMO_API_KEY),
    DemoWorkspace(SIGNED_WORKSPACE_ID, "Signed", SIGNED_API_KEY, SIGNED_SHARED_SECRET),
)
"""The workspaces the sample events in events/ authenticate as."""


def seed_demo_workspaces(store: Store) -> None:
    """Create the demo workspaces and their keys; what already exists is left as it is."""
    for workspace in DEMO_WORKSPACES:
        with contextlib.suppress(Conflict):
            store.create_workspace(workspace.name, workspace_id=workspace.workspace_id)
        with contextlib.suppress(Conflict):  # the key is live already
            store.issue_key(workspace.workspace_id, workspace.api_key)
        if workspace.shared_secret:
            store.set_shared_secret(workspace.workspace_id, workspace.shared_secret)


def aws_environment(endpoint: str) -> dict[str, str]:
    """Fake credentials and the endpoint every boto3 client then uses (boto3 reads AWS_ENDPOINT_URL)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": FAKE_CREDENTIAL,
        "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIAL,
        "AWS_SESSION_TOKEN": FAKE_CREDENTIAL,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


@dataclass
class LocalStack:
    """A running local stack. `stop()` (or leaving the `with` block) stops it and restores os.environ."""

    api_url: str
    aws_endpoint: str
    resources: LocalResources
    functions: Mapping[str, LocalFunction]
    _api_server: BaseWSGIServer = field(repr=False)
    _api_thread: threading.Thread = field(repr=False)
    _moto: ThreadedMotoServer | None = field(repr=False)
    _saved_environ: dict[str, str] = field(repr=False)
    segment: FakeSegment | None = None
    _pollers: list[Poller] = field(default_factory=list, repr=False)
    _stream_checkpoints: dict[str, str] = field(default_factory=dict, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def webhook_url(self) -> str:
        return self.api_url + WEBHOOK_PATH

    @cached_property
    def _sqs(self) -> SQSClient:
        return boto3.client("sqs", endpoint_url=self.aws_endpoint, region_name=REGION)

    def queue_depth(self, queue: str = "IngestQueue") -> int:
        """ApproximateNumberOfMessages of one of the template's queues."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.resources.queue_urls[queue], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def restart_pollers(self) -> None:
        """Stop the event source mappings and start them again (as Lambda's may be, at any time): the
        queue keeps its messages, the stream poller resumes after its last checkpoint."""
        for poller in self._pollers:
            poller.stop()
        self._pollers = _start_pollers(self)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for poller in self._pollers:
            poller.stop()
        if self.segment is not None:
            self.segment.stop()
        self._api_server.shutdown()
        self._api_thread.join(timeout=5)
        if self._moto is not None:
            # moto keeps its state per process, not per server: forget it, so a stack started again in
            # this process (tests) starts fresh, as `make dev` does in a new process.
            with contextlib.suppress(requests.RequestException):
                requests.post(f"{self.aws_endpoint}/moto-api/reset", timeout=10)
            self._moto.stop()
        _restore_environ(self._saved_environ)

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def start(
    port: int = 0,
    aws_port: int = 0,
    *,
    aws_endpoint: str | None = None,
    log: Callable[[str], None] | None = None,
    segment_port: int | None = None,
) -> LocalStack:
    """Start the embedded AWS (or use `aws_endpoint`), create the template's resources, seed the demo
    workspaces and serve the HTTP API on 127.0.0.1:`port` (0 picks a free port).

    `log`, if given, gets one line per request: `POST /v1/segment 200 12ms  queue: 1 message`.
    """
    saved_environ = dict(os.environ)
    moto: ThreadedMotoServer | None = None
    werkzeug_logger = logging.getLogger("werkzeug")
    if werkzeug_logger.level == logging.NOTSET:
        # moto's server logs every AWS call through werkzeug's logger: keep its warnings and errors.
        werkzeug_logger.setLevel(logging.WARNING)
    try:
        if aws_endpoint is None:
            _check_port_free(aws_port, "--aws-port")
            moto = ThreadedMotoServer(ip_address=HOST, port=aws_port, verbose=False)
            moto.start()
            host, bound = moto.get_host_and_port()
            aws_endpoint = f"http://{host}:{bound}"
        _check_port_free(port, "--port")
        for name in [*_AWS_OVERRIDES, *(name for name in os.environ if name.startswith("AWS_ENDPOINT_URL_"))]:
            os.environ.pop(name, None)
        os.environ.update(aws_environment(aws_endpoint))
        resources = create_resources(endpoint_url=aws_endpoint)
        os.environ.update(resources.environment())
        # EMF metrics would print a JSON document per request; the functions' logs stay.
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
        get_settings.cache_clear()
        get_store.cache_clear()
        seed_demo_workspaces(get_store())

        routes = http_routes(resources.template)
        functions = {
            logical_id: load_function(resources.template, logical_id) for logical_id in set(routes.values())
        }
        api = HttpApi({route: functions[logical_id] for route, logical_id in routes.items()})
        server = make_server(HOST, port, api, threaded=True, request_handler=_QuietRequestHandler)
    except BaseException:
        if moto is not None:
            moto.stop()
        _restore_environ(saved_environ)
        raise

    thread = threading.Thread(target=server.serve_forever, name="local-http-api", daemon=True)
    stack = LocalStack(
        api_url=f"http://{HOST}:{server.server_port}",
        aws_endpoint=aws_endpoint,
        resources=resources,
        functions=functions,
        _api_server=server,
        _api_thread=thread,
        _moto=moto,
        _saved_environ=saved_environ,
    )
    if log is not None:
        api.on_request = lambda record: log(_request_line(record, stack))
    thread.start()
    if segment_port is not None:
        try:
            _run_pipeline(stack, segment_port, log)
        except BaseException:
            stack.stop()
            raise
    return stack


DEMO_WRITE_KEY = "demo-segment-write-key"


def _run_pipeline(stack: LocalStack, segment_port: int, log: Callable[[str], None] | None = None) -> None:
    """The rest of the pipeline: a Segment stand-in the demo workspace sends to, and the event source
    mappings that feed the ProcessorFunction (SQS) and the EmitterFunction (outbox stream)."""
    _check_port_free(segment_port, "--segment-port")
    stack.segment = FakeSegment({DEMO_WRITE_KEY}, log=log).start(segment_port)
    get_store().set_segment_destination(DEMO_WORKSPACE_ID, DEMO_WRITE_KEY, stack.segment.url)
    functions = dict(stack.functions)
    for logical_id in ("ProcessorFunction", "EmitterFunction"):
        functions[logical_id] = load_function(stack.resources.template, logical_id)
    stack.functions = functions
    stack._pollers = _start_pollers(stack)


def _start_pollers(stack: LocalStack) -> list[Poller]:
    """The template's two event source mappings; the stream's resumes from the stack's checkpoints."""
    template, resources, functions = stack.resources.template, stack.resources, stack.functions
    sqs = template["Resources"]["ProcessorFunction"]["Properties"]["Events"]["Ingest"]["Properties"]
    stream = template["Resources"]["EmitterFunction"]["Properties"]["Events"]["Outbox"]["Properties"]
    on_failure = stream.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    return [
        SqsPoller(
            functions["ProcessorFunction"].invoke,
            resources.queue_urls["IngestQueue"],
            resources.queue_arns["IngestQueue"],
            int(sqs.get("BatchSize", 10)),
            stack.aws_endpoint,
        ).start(),
        StreamPoller(
            functions["EmitterFunction"].invoke,
            resources.tables["OutboxTable"],
            stream,
            resources.queue_urls[_queue_of(resources, on_failure)] if on_failure else None,
            stack.aws_endpoint,
            stack._stream_checkpoints,
        ).start(),
    ]


def _queue_of(resources: LocalResources, destination: Any) -> str:
    """The logical id of the queue an on-failure destination (!GetAtt Queue.Arn) names."""
    arn = resources.resolve(destination)
    return next(name for name, queue_arn in resources.queue_arns.items() if queue_arn == arn)


def _restore_environ(saved: Mapping[str, str]) -> None:
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()
    get_store.cache_clear()


def _check_port_free(port: int, option: str) -> None:
    """Fail fast on a taken port (moto's server would otherwise wait forever for its thread)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            raise PortInUse(f"{HOST}:{port} is in use; choose another port with {option}.") from error


def _request_line(record: RequestRecord, stack: LocalStack) -> str:
    try:
        depth = stack.queue_depth()
        queue = f"{depth} message" + ("" if depth == 1 else "s")
    except Exception:
        queue = "unknown"
    return f"{record.method} {record.path} {record.status} {record.milliseconds:.0f}ms  queue: {queue}"


# ---------------------------------------------------------------------------------------------- the CLI


def sample_curl(api_url: str, sample: Path = SAMPLE_EVENT) -> str:
    """A shell line that posts a sample event's body with its headers, as the API's client would."""
    event = json.loads(sample.read_text(encoding="utf-8"))
    extract = f'import json,sys; sys.stdout.write(json.load(open("{_shell_path(sample)}"))["body"])'
    headers = "".join(
        " -H " + shlex.quote(f"{name}: {value}")
        for name, value in event["headers"].items()
        if name in ("content-type", "authorization")
    )
    return (
        f"{shlex.quote(_shell_path(Path(sys.executable)))} -c {shlex.quote(extract)}"
        f" | curl -sS -w '\\n' {api_url}{event['rawPath']}{headers} --data-binary @-"
    )


def _shell_path(path: Path) -> str:
    """The path relative to the working directory when it is below it, else absolute."""
    absolute = path.absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def banner(stack: LocalStack) -> str:
    return "\n".join(
        [
            f"Segment Bridge local stack (embedded AWS at {stack.aws_endpoint})",
            "",
            f"  API (SDK host)   {stack.api_url}",
            f"  Webhook URL      {stack.webhook_url}",
            f"  Workspace        {DEMO_WORKSPACE_ID}",
            f"  API key          {DEMO_API_KEY}",
            f"  Signed demo      {SIGNED_WORKSPACE_ID}, key {SIGNED_API_KEY}, "
            f"shared secret {SIGNED_SHARED_SECRET}",
            "",
            "Send the sample webhook batch:",
            f"  {sample_curl(stack.api_url)}",
            "",
            f"  Segment stand-in {stack.segment.url if stack.segment else '(not started)'}  "
            f"(write key {DEMO_WRITE_KEY}: what the emitter sends lands there)",
            "",
            "Requests are logged below with the IngestQueue's depth. Ctrl-C stops.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge_dev.local",
        description="Run Segment Bridge locally: an embedded AWS (moto) and the HTTP API on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="the API's port (default 3000)")
    parser.add_argument(
        "--aws-port", type=int, default=DEFAULT_AWS_PORT, help="the embedded AWS's port (default 5000)"
    )
    parser.add_argument(
        "--segment-port", type=int, default=3001, help="the Segment stand-in's port (default 3001)"
    )
    args = parser.parse_args(argv)

    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        with start(
            args.port, args.aws_port, log=lambda line: print(line, flush=True), segment_port=args.segment_port
        ) as stack:
            print(banner(stack), flush=True)
            while not stopping.wait(0.5):
                pass
            print("Stopping...", flush=True)
    except PortInUse as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
