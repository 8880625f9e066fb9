"""The local stack: an embedded AWS (moto in server mode) and the HTTP API in front of the real handlers.

`make dev` runs `python -m bridge_dev.local`. Everything comes from template.yaml: the tables, queues and
bucket (`bridge_dev.template`), the functions' environment, and the API's routes (each function's
`HttpApi` events). `bridge_dev.apigw` does API Gateway's part (only the template's routes answer, a
request becomes a v2 event, the function's answer becomes the response); `bridge_dev.runtime` does
Lambda's (the handler loaded from CodeUri/Handler, one invocation at a time, the functions' environment);
`bridge_dev.pollers` does the event source mappings'.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

import boto3
import requests
from moto.server import ThreadedMotoServer
from werkzeug.serving import BaseWSGIServer, make_server

from bridge_dev import fast_query
from bridge_dev.apigw import HOST, HttpApi, QuietRequestHandler, RequestRecord, http_routes
from bridge_dev.events import (
    DEMO_API_KEY,
    DEMO_WORKSPACE_ID,
    EVENTS_DIR,
    SIGNED_API_KEY,
    SIGNED_SHARED_SECRET,
    SIGNED_WORKSPACE_ID,
)
from bridge_dev.pollers import Poller, SqsPoller, StreamPoller
from bridge_dev.runtime import REGION, LocalFunction, lambda_environment, load_function
from bridge_dev.segment_api import FakeSegment
from bridge_dev.target import FAKE_CREDENTIAL, LOCAL_ENDPOINT
from bridge_dev.template import LOCAL_AWS_PORT, LocalResources, create_resources
from segment_bridge.errors import Conflict
from segment_bridge.store import Store, get_store

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

DEFAULT_PORT = 3000  # sam local start-api's
LOCAL_JOB_WORKERS = 2
"""JobsFunction pollers on the local stack (the template's MaximumConcurrency is for AWS; locally each
worker is a thread of one process on the machine's cores)."""
LOCAL_REPLAY_WINDOW = 1
"""The local stack's ReplayWindow (REPLAY_WINDOW_MESSAGES; the template's default, 60, is for AWS's 120
ProcessorFunction environments): here the ProcessorFunction is one environment, so a replay keeps one
message queued at a time and a live message waits behind at most that one (docs/archive-jobs.md)."""
WEBHOOK_PATH = "/v1/segment"
SAMPLE_EVENT = EVENTS_DIR / "ingest_webhook_batch.json"


class PortInUse(OSError):
    """A port the local stack needs is taken."""


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
    _environment: contextlib.ExitStack = field(repr=False)
    """The functions' environment, set in os.environ while the stack runs."""
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
        self._environment.close()

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
    environment = contextlib.ExitStack()
    moto: ThreadedMotoServer | None = None
    werkzeug_logger = logging.getLogger("werkzeug")
    if werkzeug_logger.level == logging.NOTSET:
        # moto's server logs every AWS call through werkzeug's logger: keep its warnings and errors.
        werkzeug_logger.setLevel(logging.WARNING)
    try:
        if aws_endpoint is None:
            _check_port_free(aws_port, "--aws-port")
            fast_query.install()  # a Query at a partition's cost, as DynamoDB's (bridge_dev.fast_query)
            moto = ThreadedMotoServer(ip_address=HOST, port=aws_port, verbose=False)
            moto.start()
            host, bound = moto.get_host_and_port()
            aws_endpoint = f"http://{host}:{bound}"
        _check_port_free(port, "--port")
        # The embedded AWS's credentials and endpoint (nothing of the shell's AWS_* variables), then the
        # template's environment for the resources made there. EMF metrics would print a JSON document
        # per request; the functions' logs stay. The replay window is the local stack's own.
        environment.enter_context(lambda_environment({}, aws=aws_environment(aws_endpoint)))
        resources = create_resources(endpoint_url=aws_endpoint)
        environment.enter_context(
            lambda_environment(
                resources.environment()
                | {"POWERTOOLS_METRICS_DISABLED": "true", "REPLAY_WINDOW_MESSAGES": str(LOCAL_REPLAY_WINDOW)}
            )
        )
        seed_demo_workspaces(get_store())

        routes = http_routes(resources.template)
        functions = {
            logical_id: load_function(resources.template, logical_id) for logical_id in set(routes.values())
        }
        api = HttpApi({route: functions[logical_id] for route, logical_id in routes.items()})
        server = make_server(HOST, port, api, threaded=True, request_handler=QuietRequestHandler)
    except BaseException:
        if moto is not None:
            moto.stop()
        environment.close()
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
        _environment=environment,
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
    for logical_id in ("ProcessorFunction", "EmitterFunction", "JobsFunction"):
        functions[logical_id] = load_function(stack.resources.template, logical_id)
    stack.functions = functions
    stack._pollers = _start_pollers(stack)


def _start_pollers(stack: LocalStack) -> list[Poller]:
    """The template's event source mappings (the ingest queue, the JobsQueue's with as many pollers as its
    MaximumConcurrency allows locally, the outbox stream, the outbound retry queue); the stream's resumes
    from the stack's checkpoints."""
    template, resources, functions = stack.resources.template, stack.resources, stack.functions
    sqs = template["Resources"]["ProcessorFunction"]["Properties"]["Events"]["Ingest"]["Properties"]
    tasks = template["Resources"]["JobsFunction"]["Properties"]["Events"]["Tasks"]["Properties"]
    emitter_events = template["Resources"]["EmitterFunction"]["Properties"]["Events"]
    stream, retries = emitter_events["Outbox"]["Properties"], emitter_events["Retries"]["Properties"]
    on_failure = stream.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    return [
        SqsPoller(
            functions["ProcessorFunction"].invoke,
            resources.queue_urls["IngestQueue"],
            resources.queue_arns["IngestQueue"],
            int(sqs.get("BatchSize", 10)),
            stack.aws_endpoint,
        ).start(),
        *(
            SqsPoller(
                functions["JobsFunction"].invoke,
                resources.queue_urls["JobsQueue"],
                resources.queue_arns["JobsQueue"],
                int(tasks.get("BatchSize", 1)),
                stack.aws_endpoint,
            ).start()
            for _ in range(LOCAL_JOB_WORKERS)
        ),
        StreamPoller(
            functions["EmitterFunction"].invoke,
            resources.tables["OutboxTable"],
            stream,
            resources.queue_urls[_queue_of(resources, on_failure)] if on_failure else None,
            stack.aws_endpoint,
            stack._stream_checkpoints,
        ).start(),
        SqsPoller(  # what Segment has not taken yet, each message once its DelaySeconds are over
            functions["EmitterFunction"].invoke,
            resources.queue_urls["OutboundRetryQueue"],
            resources.queue_arns["OutboundRetryQueue"],
            int(retries.get("BatchSize", 10)),
            stack.aws_endpoint,
        ).start(),
    ]


def _queue_of(resources: LocalResources, destination: Any) -> str:
    """The logical id of the queue an on-failure destination (!GetAtt Queue.Arn) names."""
    arn = resources.resolve(destination)
    return next(name for name, queue_arn in resources.queue_arns.items() if queue_arn == arn)


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
            "The operator CLI, in another terminal:",
            *cli_lines(stack.aws_endpoint),
            "",
            "Requests are logged below with the IngestQueue's depth. Ctrl-C stops.",
        ]
    )


def cli_lines(aws_endpoint: str) -> list[str]:
    """How to aim `segment-bridge` at this stack: nothing to add on the default port, else the endpoint
    (an option or the variable the CLI reads)."""
    if aws_endpoint == LOCAL_ENDPOINT:
        return [f"  .venv/bin/segment-bridge users show {DEMO_WORKSPACE_ID} user-42"]
    return [
        f"  export SEGMENT_BRIDGE_ENDPOINT={aws_endpoint}",
        f"  .venv/bin/segment-bridge users show {DEMO_WORKSPACE_ID} user-42"
        f"    (or: segment-bridge --endpoint {aws_endpoint} ...)",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge_dev.local",
        description="Run Segment Bridge locally: an embedded AWS (moto) and the HTTP API on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="the API's port (default 3000)")
    parser.add_argument(
        "--aws-port", type=int, default=LOCAL_AWS_PORT, help="the embedded AWS's port (default 5000)"
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
