"""Lambda's runtime, locally: a function of template.yaml as Lambda runs it, without a container.

The local stack, the CLI's `invoke` and the tests all run functions through this module:
- `load_function`: the handler imported from CodeUri/Handler (a fresh import: a new execution
  environment), with the memory and timeout the template gives it (Globals, then the function's own);
- `LambdaContext`: what Lambda passes a handler as `context`, with a deadline from the timeout;
- `lambda_environment`: os.environ as Lambda gives the functions, for a block's time, restored after;
- `lambda_sqs_event` and `lambda_stream_record`: what boto3 reads from SQS and DynamoDB streams, in the
  shape Lambda's event sources hand a function.

Lambda runs each function in a process of its own; here they share one, and with it Powertools' one
formatter per service name (`Logger()` in every handler): `load_function` keeps that formatter's keys per
thread (`keys_per_thread`), so a line carries the function_name and request id of the invocation that
logged it, not of whichever function was invoked last.

It imports no emulator (moto, werkzeug): the CLI uses it against a deployed stack too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from bridge_dev.template import TEMPLATE_PATH, TemplateError
from segment_bridge.settings import get_settings
from segment_bridge.store import get_store

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
"""moto's default account: the local stack's, and what a local context's ARN names."""

Handler = Callable[[dict[str, Any], Any], Any]


def keys_per_thread(module: ModuleType) -> None:
    """Each Powertools Logger of a handler module: its formatter's keys (`log_format`: what every line
    carries, which `inject_lambda_context` appends to or, with clear_state, replaces) kept per thread,
    each thread starting from the keys the formatter had here: what one Lambda process has to itself.
    Done once per formatter (the functions' Loggers share one), by a subclass made for it whose
    `log_format` is a property over a thread-local."""
    from aws_lambda_powertools import Logger

    for value in vars(module).values():
        formatter: Any = value.registered_formatter if isinstance(value, Logger) else None
        if formatter is None or getattr(formatter, "keys_per_thread", False):
            continue
        base, local = dict(formatter.log_format), threading.local()

        def keys(_: object, base: dict[str, Any] = base, local: threading.local = local) -> dict[str, Any]:
            if not hasattr(local, "keys"):
                local.keys = dict(base)
            return local.keys  # type: ignore[no-any-return]

        def replace(_: object, value: dict[str, Any], local: threading.local = local) -> None:
            local.keys = value

        kind = type(formatter)
        members = {"log_format": property(keys, replace), "keys_per_thread": True}
        vars(formatter).pop("log_format", None)
        formatter.__class__ = type(f"PerThread{kind.__name__}", (kind,), members)


# ---------------------------------------------------------------------------------------------- functions


@dataclass
class LocalFunction:
    """One function of the template, as Lambda runs it: its handler, memory and timeout.

    Invocations are serialised, as in one Lambda execution environment: Powertools keeps the current
    event on the resolver and logger/metrics state per process, so two invocations must not overlap.
    """

    logical_id: str
    handler: Handler
    memory_mb: int
    timeout_seconds: int
    module: ModuleType = field(repr=False)
    """The handler's module, as imported for this function (its caches, its Logger and Metrics)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def context(self, request_id: str | None = None, *, seconds_left: float | None = None) -> LambdaContext:
        """A context for one invocation: `seconds_left` (default: the function's timeout) until its
        deadline."""
        return LambdaContext(
            self.logical_id,
            self.memory_mb,
            self.timeout_seconds if seconds_left is None else seconds_left,
            request_id or str(uuid.uuid4()),
        )

    def invoke(
        self, event: dict[str, Any], request_id: str | None = None, *, seconds_left: float | None = None
    ) -> Any:
        """Call the handler with `event` and a fresh context; its result as the handler returns it."""
        with self._lock:
            return self.handler(event, self.context(request_id, seconds_left=seconds_left))


class LambdaContext:
    """What Lambda passes a handler as `context` (what Powertools reads of it)."""

    function_version = "$LATEST"

    def __init__(self, function_name: str, memory_mb: int, seconds_left: float, request_id: str) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + seconds_left

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def function_properties(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    """A function's properties as SAM reads them: Globals.Function, overridden by the function's own."""
    resource = template.get("Resources", {}).get(logical_id, {})
    if resource.get("Type") != "AWS::Serverless::Function":
        raise TemplateError(f"{logical_id} is not an AWS::Serverless::Function")
    return {**template.get("Globals", {}).get("Function", {}), **resource.get("Properties", {})}


def load_function(
    template: Mapping[str, Any], logical_id: str, *, code_root: Path | None = None
) -> LocalFunction:
    """Import the function's handler from its CodeUri (under `code_root`, by default the template's
    folder) and Handler, under a name of its own.

    Each call imports the module again: a new execution environment, nothing cached from before."""
    properties = function_properties(template, logical_id)
    module_path, _, attribute = str(properties["Handler"]).rpartition(".")
    root = TEMPLATE_PATH.parent if code_root is None else code_root
    source = root / str(properties["CodeUri"]) / (module_path.replace(".", "/") + ".py")
    name = f"bridge_local_{logical_id}"
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise TemplateError(f"cannot load {source} for {logical_id}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    keys_per_thread(module)
    return LocalFunction(
        logical_id=logical_id,
        handler=getattr(module, attribute),
        memory_mb=int(properties.get("MemorySize", 128)),
        timeout_seconds=int(properties.get("Timeout", 3)),
        module=module,
    )


# ---------------------------------------------------------------------------------------------- environment


@contextlib.contextmanager
def lambda_environment(
    variables: Mapping[str, str], *, aws: Mapping[str, str] | None = None, inherit: bool = True
) -> Iterator[None]:
    """os.environ as Lambda gives the template's functions, for the block's time: `variables` set (the
    template's environment, resolved for a stack) and, with `aws`, every AWS_* variable of the caller
    replaced by `aws` (credentials, region, endpoint), so no profile or endpoint override of the shell
    sends the functions' boto3 elsewhere. With `inherit=False` nothing else of the caller's environment
    stays (a container's, as `sam local invoke` gives it). The settings and store caches are cleared on
    the way in and out; os.environ is restored whole on the way out."""
    saved = dict(os.environ)
    try:
        if not inherit:
            os.environ.clear()
        if aws is not None:
            for name in [name for name in os.environ if name.startswith("AWS_")]:
                del os.environ[name]
            os.environ.update(aws)
        os.environ.update(variables)
        _forget_environment()
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        _forget_environment()


def _forget_environment() -> None:
    """What the functions' code caches from os.environ."""
    get_settings.cache_clear()
    get_store.cache_clear()


# ---------------------------------------------------------------------------------------------- events


def lambda_sqs_event(queue_arn: str, messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Messages received with boto3's SQS client, in the shape Lambda's SQS event source hands a function."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for message in messages
        ]
    }


def lambda_stream_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A record read with boto3's dynamodbstreams client, in the shape Lambda hands a function."""
    created = record["dynamodb"].get("ApproximateCreationDateTime")
    shaped: dict[str, Any] = json.loads(json.dumps(record, default=str))
    if created is not None:
        shaped["dynamodb"]["ApproximateCreationDateTime"] = int(
            created.timestamp() if hasattr(created, "timestamp") else time.time()
        )
    shaped["eventSourceARN"] = stream_arn
    return shaped
