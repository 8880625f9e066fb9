"""The local stack over real HTTP: Segment's own clients and webhook-shaped requests against the API."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests

from bridge_dev.events import DEMO_API_KEY, DEMO_WORKSPACE_ID, SIGNED_WORKSPACE_ID
from bridge_dev.local import LocalStack, sample_curl, seed_demo_workspaces, start
from bridge_dev.template import create_resources
from segment_bridge.envelope import unpack
from segment_bridge.store import get_store
from tests.conftest import ROOT
from tests.functional.conftest import sample

pytestmark = pytest.mark.e2e

TIMEOUT = 10  # seconds, for every HTTP call and every wait


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with start(port=0, aws_port=0) as running:
        yield running


class Queue:
    """The IngestQueue as the processor will see it: every message read, deleted and unpacked."""

    def __init__(self, stack: LocalStack) -> None:
        self.url = stack.resources.queue_urls["IngestQueue"]
        self.sqs = boto3.client("sqs", endpoint_url=stack.aws_endpoint, region_name="us-east-1")

    def messages(self) -> list[tuple[Any, list[dict[str, Any]]]]:
        unpacked = []
        while got := self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", []):
            for message in got:
                unpacked.append(unpack(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return unpacked

    def events(self, workspace_id: str = DEMO_WORKSPACE_ID) -> list[dict[str, Any]]:
        messages = self.messages()
        assert {envelope.workspaceId for envelope, _ in messages} <= {workspace_id}
        return [event for _, events in messages for event in events]


@pytest.fixture
def queue(stack: LocalStack) -> Queue:
    queue = Queue(stack)
    queue.messages()  # what earlier tests left
    return queue


@pytest.fixture
def seen(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The API Gateway events the IngestFunction receives."""
    events: list[dict[str, Any]] = []
    function = stack.functions["IngestFunction"]
    handler = function.handler

    def recording(event: dict[str, Any], context: Any) -> Any:
        events.append(event)
        return handler(event, context)

    monkeypatch.setattr(function, "handler", recording)
    return events


def flush(client: Any) -> None:
    """Wait (bounded) until an SDK client has sent everything, then stop its consumer threads."""
    deadline = time.monotonic() + TIMEOUT
    while client.queue.unfinished_tasks:
        assert time.monotonic() < deadline, "the SDK did not send its queue in time"
        time.sleep(0.02)
    for consumer in client.consumers:
        consumer.pause()
        consumer.join(timeout=TIMEOUT)


def record_errors() -> tuple[list[Any], Callable[[Exception, list[Any]], None]]:
    errors: list[Any] = []
    return errors, lambda error, batch: errors.append((error, batch))


def send_identify_track_group(client: Any) -> list[str]:
    """identify + track + group through an SDK client; returns the messageIds it gave them."""
    sent = [
        client.identify("user-7", {"email": "grace@example.com", "plan": "team"}),
        client.track("user-7", "Report Exported", {"format": "csv"}),
        client.group("user-7", "org-9", {"name": "Acme"}),
    ]
    assert all(ok for ok, _ in sent)
    return [message["messageId"] for _, message in sent]


# --- Segment's SDK (analytics-python) ---------------------------------------------------------------


def test_analytics_python_events_land_on_the_queue_authenticated_by_basic_auth(stack, queue, seen):
    from segment.analytics import Client

    errors, on_error = record_errors()
    client = Client(
        DEMO_API_KEY, host=stack.api_url, on_error=on_error, max_retries=0, timeout=5, upload_interval=0.05
    )
    message_ids = send_identify_track_group(client)
    flush(client)

    assert errors == []
    [event] = seen
    assert event["rawPath"] == "/v1/batch"
    assert event["headers"]["authorization"].startswith("Basic ")
    assert event["isBase64Encoded"] is False
    landed = queue.events()
    assert [e["messageId"] for e in landed] == message_ids
    assert [e["type"] for e in landed] == ["identify", "track", "group"]
    assert landed[0]["traits"]["email"] == "grace@example.com"
    assert all("writeKey" not in e for e in landed)


def test_analytics_python_gzip_body_arrives_base64_and_lands(stack, queue, seen):
    from segment.analytics import Client

    errors, on_error = record_errors()
    client = Client(
        DEMO_API_KEY,
        host=stack.api_url,
        gzip=True,
        on_error=on_error,
        max_retries=0,
        timeout=5,
        upload_interval=0.05,
    )
    message_ids = send_identify_track_group(client)
    flush(client)

    assert errors == []
    [event] = seen
    assert event["headers"]["content-encoding"] == "gzip"
    assert event["isBase64Encoded"] is True
    assert [e["messageId"] for e in queue.events()] == message_ids


# --- RudderStack's SDK ------------------------------------------------------------------------------


def test_rudder_sdk_events_land_on_the_queue(stack, queue, seen, monkeypatch):
    import rudderstack.analytics as rudder_analytics

    errors, on_error = record_errors()
    monkeypatch.setattr(rudder_analytics, "default_client", None)
    monkeypatch.setattr(rudder_analytics, "write_key", DEMO_API_KEY)
    monkeypatch.setattr(rudder_analytics, "dataPlaneUrl", stack.api_url)
    monkeypatch.setattr(rudder_analytics, "on_error", on_error)
    monkeypatch.setattr(rudder_analytics, "max_retries", 0)
    monkeypatch.setattr(rudder_analytics, "timeout", 5)

    rudder_analytics.identify("user-8", {"email": "alan@example.com"})
    rudder_analytics.track("user-8", "Report Exported", {"format": "pdf"})
    rudder_analytics.group("user-8", "org-10", {"name": "Initech"})
    flush(rudder_analytics.default_client)

    assert errors == []
    [event] = seen
    # RudderStack posts to /v1/batch with Basic auth, gzip-compressed by default.
    assert event["rawPath"] == "/v1/batch"
    assert event["headers"]["authorization"].startswith("Basic ")
    assert event["isBase64Encoded"] is True
    landed = queue.events()
    assert [e["type"] for e in landed] == ["identify", "track", "group"]
    assert {e["userId"] for e in landed} == {"user-8"}
    # RudderStack puts identify's traits in context.traits, not at the top level.
    assert landed[0]["context"]["traits"]["email"] == "alan@example.com"


# --- Webhooks (Actions) -----------------------------------------------------------------------------


def post_sample(stack: LocalStack, name: str, body: str | None = None) -> requests.Response:
    """POST a committed sample event's body (or `body`) with its headers to its path, as Segment would."""
    event = sample(name)
    headers = {k: v for k, v in event["headers"].items() if k not in ("host", "content-length")}
    return requests.post(
        stack.api_url + event["rawPath"],
        data=(event["body"] if body is None else body).encode(),
        headers=headers,
        timeout=TIMEOUT,
    )


def test_signed_webhook_batch_lands_on_the_queue(stack, queue):
    answer = post_sample(stack, "ingest_webhook_signed_batch.json")

    assert answer.status_code == 200
    assert answer.json()["accepted"] == 4
    landed = queue.events(SIGNED_WORKSPACE_ID)
    expected = json.loads(sample("ingest_webhook_signed_batch.json")["body"])
    assert [e["messageId"] for e in landed] == [e["messageId"] for e in expected]


def test_webhook_batch_with_a_changed_byte_in_the_signed_element_is_refused(stack, queue):
    body = sample("ingest_webhook_signed_batch.json")["body"]
    tampered = body.replace("ada@example.com", "adb@example.com", 1)
    assert tampered != body

    answer = post_sample(stack, "ingest_webhook_signed_batch.json", tampered)

    assert answer.status_code == 401
    assert answer.json()["code"] == "invalid_signature"
    assert answer.json()["message"]
    assert queue.messages() == []


# --- what API Gateway does ----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/unknown"), ("POST", "/"), ("GET", "/v1/segment")])
def test_a_request_outside_the_templates_routes_gets_api_gateways_404(stack, method, path):
    answer = requests.request(method, stack.api_url + path, data=b"{}", timeout=TIMEOUT)

    assert answer.status_code == 404
    assert answer.json() == {"message": "Not Found"}


def test_a_wrong_key_is_refused_with_a_code_and_a_message(stack, queue):
    answer = post_sample(stack, "ingest_wrong_key.json")

    assert answer.status_code == 401
    assert set(answer.json()) >= {"code", "message"}
    assert answer.json()["code"] == "unauthorized"
    assert queue.messages() == []


def test_a_body_over_10_mb_is_refused_with_413(stack, queue):
    answer = requests.post(
        stack.webhook_url,
        data=b"[" + b" " * (10 * 1024 * 1024) + b"]",
        headers={"authorization": f"Bearer {DEMO_API_KEY}", "content-type": "application/json"},
        timeout=TIMEOUT,
    )

    assert answer.status_code == 413
    assert queue.messages() == []


def test_the_event_carries_what_api_gateway_sends(stack, seen):
    connection = http.client.HTTPConnection(urlsplit(stack.api_url).netloc, timeout=TIMEOUT)
    connection.putrequest("POST", "/v1/segment?writeKey=k&tag=a&tag=b")
    for name, value in [("X-Custom", "one"), ("X-Custom", "two"), ("Content-Type", "application/json")]:
        connection.putheader(name, value)
    connection.putheader("Content-Length", "2")
    connection.endheaders(b"[]")
    connection.getresponse().read()
    connection.close()

    [event] = seen
    assert event["version"] == "2.0"
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "POST /v1/segment"
    assert event["rawPath"] == "/v1/segment"
    assert event["rawQueryString"] == "writeKey=k&tag=a&tag=b"
    assert event["queryStringParameters"] == {"writeKey": "k", "tag": "a,b"}
    assert event["headers"]["x-custom"] == "one,two"
    assert all(name == name.lower() for name in event["headers"])
    assert (event["body"], event["isBase64Encoded"]) == ("[]", False)
    context = event["requestContext"]
    assert context["stage"] == "$default"
    assert context["http"] == {
        "method": "POST",
        "path": "/v1/segment",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "",
    }
    assert abs(context["timeEpoch"] / 1000 - time.time()) < 60


def test_requests_are_served_concurrently(stack, queue):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: post_sample(stack, "ingest_webhook_batch.json"), range(16)))

    assert [answer.status_code for answer in answers] == [200] * 16
    assert len(queue.events()) == 16 * 4


# --- starting again -----------------------------------------------------------------------------------


def test_starting_again_against_the_same_aws_reuses_resources_and_workspaces(stack, queue):
    create_resources(endpoint_url=stack.aws_endpoint)
    seed_demo_workspaces(get_store())
    seed_demo_workspaces(get_store())

    with start(port=0, aws_endpoint=stack.aws_endpoint) as second:
        assert second.resources.queue_urls == stack.resources.queue_urls
        answer = post_sample(second, "ingest_webhook_batch.json")
        assert answer.status_code == 200

    assert len(queue.events()) == 4
    assert post_sample(stack, "ingest_webhook_batch.json").status_code == 200


# --- the command line ---------------------------------------------------------------------------------


BASH = shutil.which("bash")


@pytest.mark.skipif(BASH is None or shutil.which("curl") is None, reason="needs bash and curl")
def test_the_printed_curl_line_posts_the_sample_batch(stack, queue):
    line = sample_curl(stack.api_url)

    done = subprocess.run(  # noqa: S603 - the line the command prints, as a user would paste it
        [str(BASH), "-c", line], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accepted"] == 4
    assert len(queue.events()) == 4


def test_the_command_prints_where_to_send_and_stops_cleanly_on_sigint():
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge_dev.local", "--port", "0", "--aws-port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(TIMEOUT, process.kill)
    watchdog.start()
    try:
        printed = []
        for line in process.stdout or []:
            printed.append(line)
            if "Ctrl-C" in line:
                break
        banner = "".join(printed)
        api_url = re.search(r"API \(SDK host\)\s+(\S+)", banner)
        assert api_url, banner
        assert f"Webhook URL      {api_url[1]}/v1/segment" in banner
        assert DEMO_WORKSPACE_ID in banner
        assert DEMO_API_KEY in banner
        answer = requests.post(api_url[1] + "/v1/unknown", data=b"{}", timeout=TIMEOUT)
        assert answer.status_code == 404
        logged = ""
        for line in process.stdout or []:  # the request line is printed once the answer has gone out
            if line.startswith("POST /v1/unknown"):
                logged = line
                break

        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, err
    assert logged.startswith("POST /v1/unknown 404")
    assert "Stopping" in out


def test_the_banner_says_how_to_aim_the_cli_at_a_stack_on_another_port():
    """`make dev ARGS="--aws-port N"`: the CLI's default (5000) is not where the stack is; the banner's
    line, used as printed, is."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge_dev.local", "--port", "0", "--aws-port", "0", "--segment-port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # never read: a full pipe would stall the stack's logging threads
        text=True,
    )
    watchdog = threading.Timer(TIMEOUT, process.kill)
    watchdog.start()
    try:
        printed = []
        for line in process.stdout or []:
            printed.append(line)
            if "Ctrl-C" in line:
                break
        banner = "".join(printed)
        endpoint = re.search(r"export SEGMENT_BRIDGE_ENDPOINT=(\S+)", banner)
        assert endpoint, banner
        assert f"--endpoint {endpoint[1]}" in banner
        listed = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from bridge_dev.cli import main; sys.exit(main())",
                "workspaces",
                "list",
                "--json",
            ],
            cwd=ROOT,
            env={**os.environ, "SEGMENT_BRIDGE_ENDPOINT": endpoint[1]},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=TIMEOUT)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert listed.returncode == 0, listed.stderr
    assert DEMO_WORKSPACE_ID in {workspace["workspace_id"] for workspace in json.loads(listed.stdout)}
