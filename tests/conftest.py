"""Shared fixtures: fake AWS credentials, moto, the template's resources created on it, and a watch on
every log line and printed line for secrets and personal data."""

from __future__ import annotations

import base64
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import boto3
import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from bridge_dev.runtime import LocalFunction
    from bridge_dev.template import LocalResources

ROOT = Path(__file__).resolve().parent.parent

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "segment-bridge",
        "POWERTOOLS_METRICS_NAMESPACE": "SegmentBridge",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

# hypothesis: `HYPOTHESIS_PROFILE=long` (make fuzz) runs 20x hypothesis' default 100 examples; properties
# that set their own budget scale it by the same factor (see tests/functional/test_hostile_input.py).
# No per-example deadline in either: speed is the benchmarks' to measure, and a shared or loaded machine
# (CI's, this one's) would fail a property on time alone.
settings.register_profile("standard", deadline=None)
settings.register_profile("long", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "standard"))


SECONDS_LEFT = 10
"""The time an invocation in a test has left, whatever the function's timeout (the emitter keeps 5 s of
it in reserve)."""


def lambda_function(logical_id: str) -> LocalFunction:
    """A function of template.yaml as Lambda loads it (bridge_dev.runtime): its handler imported afresh,
    as in a new container (nothing cached), with its memory and timeout."""
    from bridge_dev.runtime import load_function
    from bridge_dev.template import load_template

    function = load_function(load_template(), logical_id)
    _follow_stdout()  # its Logger writes to the capture of whichever test (or example) is running
    return function


@pytest.fixture(scope="session")
def boto_session() -> boto3.session.Session:
    """One boto3 Session for the whole run: each new Session reads botocore's service models again.

    moto is imported first: it adds its stub to botocore's handlers, which a Session copies when made."""
    import moto  # noqa: F401

    return boto3.session.Session(region_name="us-east-1")


@pytest.fixture
def aws(boto_session: boto3.session.Session, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalResources]:
    """moto with every resource of template.yaml, and the environment the template gives functions.

    boto3's default session (`boto3.client`, what the store uses) is the run's one Session, not a new one
    per test as moto would make it: clients are then made from service models read once."""
    from moto import mock_aws

    from bridge_dev.runtime import lambda_environment
    from bridge_dev.template import create_resources

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto_session)
    with mock_aws(config={"core": {"reset_boto3_session": False}}):
        resources = create_resources(boto_session)
        with lambda_environment(resources.environment()):
            yield resources


# --- no secrets or personal data in logs --------------------------------------------------------------

EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(r"(?<![0-9+])\+[1-9][0-9]{7,14}(?![0-9])")
"""E.164 numbers only: looser patterns match request ids and timestamps. (The look-behinds keep both
patterns linear on long runs of letters or digits.)"""
MIN_SENSITIVE_LENGTH = 6
SERVICE_LOGGER = os.environ["POWERTOOLS_SERVICE_NAME"]


class Sensitive:
    """Values that must never appear in anything the code under test logs or prints: keys, secrets, and
    the personal data a test sends. Each is also looked for JSON-escaped, URL-quoted and base64'd (as in
    a Basic header)."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, *values: str) -> None:
        for value in values:
            if len(value) < MIN_SENSITIVE_LENGTH:
                raise ValueError(f"{value!r} is too short to look for in logs without false alarms")
            self.values.add(value)

    def scan(self, text: str) -> None:
        """Registers every email-like and phone-like (E.164) string in `text`."""
        self.add(*(EMAIL.findall(text) if "@" in text else ()), *(PHONE.findall(text) if "+" in text else ()))

    def leaks(self, output: str) -> list[str]:
        return sorted(value for value in self.values if any(form in output for form in _forms(value)))


def _forms(value: str) -> set[str]:
    encoded = value.encode("utf-8", "surrogatepass")
    return {
        value,
        json.dumps(value)[1:-1],
        quote(value, safe=""),
        base64.b64encode(encoded).decode().rstrip("="),
        base64.b64encode(encoded + b":").decode().rstrip("="),
    }


class _CurrentStdout:
    """A stream that writes to whatever `sys.stdout` is now. Powertools' Logger binds the sys.stdout of
    the moment it is first created; pointed here, its lines reach the capture of the test that runs."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _follow_stdout() -> None:
    for logger in list(logging.Logger.manager.loggerDict.values()):
        handler = getattr(logger, "powertools_handler", None)
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler.stream, _CurrentStdout):
            handler.stream = _CurrentStdout()


def _emitted(record: logging.LogRecord) -> bool:
    """What Lambda would write: everything our service logs, and other libraries' warnings and errors
    (their DEBUG output exists only when a test turns it on)."""
    return record.name.split(".")[0] == SERVICE_LOGGER or record.levelno >= logging.WARNING


def _rendered(record: logging.LogRecord) -> str:
    fields = json.dumps(record.__dict__, default=str, ensure_ascii=False)
    trace = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
    return "\n".join((record.getMessage(), fields, trace))


def _register_argument(
    monkeypatch: pytest.MonkeyPatch, owner: type, method: str, argument: str, register: Callable[[str], None]
) -> None:
    original = getattr(owner, method)
    signature = inspect.signature(original)

    def registering(*args: Any, **kwargs: Any) -> Any:
        value = signature.bind(*args, **kwargs).arguments.get(argument)
        if isinstance(value, str) and value:
            register(value)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, method, registering)


@pytest.fixture
def sensitive() -> Sensitive:
    """Register what a test's logs must not contain: `sensitive.add(value)`. The demo keys and secret,
    every key, shared secret and Segment write key given to the store, and the emails and phone numbers
    of the events sent through the functional fixtures are registered already."""
    from bridge_dev.events import DEMO_API_KEY, SIGNED_API_KEY, SIGNED_SHARED_SECRET

    found = Sensitive()
    found.add(DEMO_API_KEY, SIGNED_API_KEY, SIGNED_SHARED_SECRET)
    return found


@pytest.fixture(autouse=True)
def no_secrets_in_logs(
    sensitive: Sensitive,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    """Every test: no registered value in any log record or stdout/stderr line emitted while it ran.

    It reads pytest's captures at teardown: what a test itself takes out of them (capsys.readouterr(),
    caplog.clear()) escapes it."""
    from segment_bridge.store import Store

    for method, argument in (
        ("issue_key", "api_key"),
        ("issue_read_token", "token"),
        ("set_shared_secret", "secret"),
        ("set_segment_destination", "write_key"),
    ):
        _register_argument(monkeypatch, Store, method, argument, sensitive.add)
    _follow_stdout()
    yield
    _follow_stdout()
    out, err = capsys.readouterr()
    sys.stdout.write(out)  # still shown in pytest's report
    sys.stderr.write(err)
    records = [
        record for phase in ("setup", "call") for record in caplog.get_records(phase) if _emitted(record)
    ]
    records += [record for record in caplog.records if _emitted(record)]
    leaks = sensitive.leaks("\n".join([out, err, *map(_rendered, records)]))
    assert not leaks, f"secrets or personal data in logs or output: {leaks}"
