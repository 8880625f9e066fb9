"""`invoke`: a function of template.yaml run on an event against the stack, as `sam local invoke` does."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import click

from bridge_dev.cli.app import (
    cli,
    json_option,
    show,
    target_of,
)
from bridge_dev.cli.files import read_event
from bridge_dev.runtime import lambda_environment, load_function
from bridge_dev.target import Target
from segment_bridge.errors import BridgeError, NotFound


@cli.command("invoke")
@click.argument("function")
@click.option(
    "-e",
    "--event",
    "event_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    help="The event (JSON file, - for standard input), e.g. events/ingest_webhook_batch.json. Required.",
)
@json_option
@click.pass_context
def invoke_command(ctx: click.Context, function: str, event_file: Path, as_json: bool) -> None:
    """Run a function of template.yaml (e.g. IngestFunction) on an event, as `sam local invoke` does,
    without Docker: its handler and environment, against the stack. Its logs go to stderr."""
    result = invoke(target_of(ctx), function, read_event(event_file), sys.stderr)
    show(as_json, result, lambda: json.dumps(result, indent=2, ensure_ascii=False))


class FunctionFailed(BridgeError):
    """A function raised on the event it was given (what Lambda reports as an invocation error)."""

    status, code = 500, "function_error"


def invoke(target: Target, logical_id: str, event: dict[str, Any], logs: io.TextIOBase | Any) -> Any:
    """Run one of the template's functions on an event, as `sam local invoke` does, without a container:
    its handler, memory, timeout and environment from template.yaml, against the target's AWS. The
    function's own output (its logs) goes to `logs`; the result is returned."""
    # EMF metrics off unless the shell turns them on: the result on stdout stays readable.
    variables = {"POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true")}
    variables |= target.environment
    functions = sorted(
        name
        for name, resource in target.resources.template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::Serverless::Function"
    )
    if logical_id not in functions:
        raise NotFound(f"template.yaml has no function {logical_id}; it has {', '.join(functions)}.")
    with lambda_environment(variables, aws=target.aws_environment()), contextlib.redirect_stdout(logs):
        function = load_function(target.resources.template, logical_id)
        try:
            result = function.invoke(event, str(uuid.uuid4()))
        except Exception as error:  # the function's own failure, reported as Lambda reports it
            raise FunctionFailed(f"{logical_id} failed: {type(error).__name__}: {error}") from None
    return json.loads(json.dumps(result, default=str))
