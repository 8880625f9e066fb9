"""The whole pipeline on the local stack: every kind of sender in, profiles written, product events out."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
import requests

from bridge_dev.cli.profiles import show_group, show_user
from bridge_dev.events import DEMO_API_KEY, DEMO_WORKSPACE_ID, SIGNED_WORKSPACE_ID
from bridge_dev.local import LocalStack, start
from bridge_dev.target import local_target
from tests.conftest import ROOT
from tests.e2e.conftest import TIMEOUT, eventually
from tests.functional.conftest import sample

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack():
    with start(port=0, aws_port=0, segment_port=0) as running:
        yield running


def test_sdk_events_become_a_profile_and_product_events_reach_segment_once(stack):
    from segment.analytics import Client

    client = Client(DEMO_API_KEY, host=stack.api_url, sync_mode=True, max_retries=1, timeout=TIMEOUT)
    client.identify("pipeline-user", {"email": "pipe@example.com", "language": "fr"})
    client.track("pipeline-user", "Signed Up", {"plan": "pro"})
    client.track("pipeline-user", "Signed Up", {"plan": "pro"})
    client.flush()

    dynamodb = boto3.resource("dynamodb", endpoint_url=stack.aws_endpoint, region_name="us-east-1")
    profiles = dynamodb.Table(stack.resources.tables["ProfilesTable"])
    key = {"pk": f"WS#{DEMO_WORKSPACE_ID}#U#pipeline-user", "sk": "PROFILE"}
    profile = eventually(
        lambda: (
            (profiles.get_item(Key=key).get("Item") or {}).get("counts", {}).get("Signed Up") == 2
            and profiles.get_item(Key=key)["Item"]
        )
    )
    assert profile["preferences"] == {"language": "fr"}
    assert list(profile["channels"]["email"]) == ["pipe@example.com"]

    outbox = dynamodb.Table(stack.resources.tables["OutboxTable"])
    outbox.put_item(
        Item={
            "pk": f"WS#{DEMO_WORKSPACE_ID}",
            "sk": "EVT#pipeline-1",
            "event": "Flow Completed",
            "userId": "pipeline-user",
            "properties": {"flowId": "onboarding"},
        }
    )
    sent = eventually(lambda: [e for e in stack.segment.events.values() if e["event"] == "Flow Completed"])
    assert sent[0]["userId"] == "pipeline-user"
    assert sent[0]["context"]["integration"]["name"] == "segment-bridge"
    time.sleep(1)
    assert stack.segment.deliveries[sent[0]["messageId"]] == 1


# ---------------------------------------------------------------------------------------------- senders

SDK23_PYTHON = ROOT / ".venv-sdk23" / "bin" / "python"
SDK23_SCRIPT = """
import sys
from segment.analytics import Client
client = Client(sys.argv[1], host=sys.argv[2], gzip=True, sync_mode=True, max_retries=0, timeout=20)
client.identify("{user}", {{"email": "{user}@example.com", "language": "pt"}})
client.track("{user}", "Report Exported", {{"format": "csv"}})
client.group("{user}", "org-{user}", {{"name": "Org of {user}"}})
"""


def analytics_python_24(stack: LocalStack, user: str, gzip: bool = False) -> None:
    """segment-analytics-python 2.4: Basic auth with the write key."""
    from segment.analytics import Client

    errors: list[Any] = []
    client = Client(
        DEMO_API_KEY,
        host=stack.api_url,
        gzip=gzip,
        sync_mode=True,
        max_retries=0,
        timeout=TIMEOUT,
        on_error=lambda error, batch: errors.append(error),
    )
    client.identify(user, {"email": f"{user}@example.com", "language": "pt"})
    client.track(user, "Report Exported", {"format": "csv"})
    client.group(user, f"org-{user}", {"name": f"Org of {user}"})
    assert errors == []


def analytics_python_23(stack: LocalStack, user: str) -> None:
    """segment-analytics-python 2.3 (its own venv: it cannot sit next to 2.4): the write key only in the
    gzip'd body, no Authorization header."""
    if not SDK23_PYTHON.exists():
        pytest.fail(f"{SDK23_PYTHON} is missing: run `make setup`")
    done = subprocess.run(  # noqa: S603 - our test venv's interpreter
        [str(SDK23_PYTHON), "-c", SDK23_SCRIPT.format(user=user), DEMO_API_KEY, stack.api_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    version = subprocess.run(  # noqa: S603
        [str(SDK23_PYTHON), "-c", "from segment.analytics.version import VERSION; print(VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert version.startswith("2.3."), version


def rudder_sdk(stack: LocalStack, user: str) -> None:
    """rudder-sdk-python: Basic auth, gzip, identify traits under context.traits."""
    import rudderstack.analytics as rudder_analytics

    errors: list[Any] = []
    saved = {
        name: getattr(rudder_analytics, name)
        for name in ("default_client", "write_key", "dataPlaneUrl", "on_error", "sync_mode", "max_retries")
    }
    try:
        rudder_analytics.default_client = None
        rudder_analytics.write_key = DEMO_API_KEY
        rudder_analytics.dataPlaneUrl = stack.api_url
        rudder_analytics.on_error = lambda error, batch: errors.append(error)
        rudder_analytics.sync_mode = True
        rudder_analytics.max_retries = 0
        rudder_analytics.identify(user, {"email": f"{user}@example.com", "language": "pt"})
        rudder_analytics.track(user, "Report Exported", {"format": "csv"})
        rudder_analytics.group(user, f"org-{user}", {"name": f"Org of {user}"})
    finally:
        for name, value in saved.items():
            setattr(rudder_analytics, name, value)
    assert errors == []


SENDERS: dict[str, Callable[[LocalStack, str], None]] = {
    "analytics-python-2.4": analytics_python_24,
    "analytics-python-2.4-gzip": lambda stack, user: analytics_python_24(stack, user, gzip=True),
    "analytics-python-2.3": analytics_python_23,
    "rudder-sdk-python": rudder_sdk,
}


@pytest.mark.parametrize("sender", list(SENDERS))
def test_each_sdk_lands_in_dynamodb_as_documented(stack, sender):
    user = f"user-{sender.replace('.', '-')}"
    SENDERS[sender](stack, user)

    target = local_target(stack.aws_endpoint)
    profile = eventually(lambda: _found(lambda: show_user(target, DEMO_WORKSPACE_ID, user), "groups"))
    assert profile["traits"] == {"email": f"{user}@example.com", "language": "pt"}
    assert profile["channels"] == {"email": [f"{user}@example.com"]}
    assert profile["preferences"] == {"language": "pt"}
    assert profile["groups"] == [f"org-{user}"]
    assert eventually(lambda: _found(lambda: show_user(target, DEMO_WORKSPACE_ID, user), "counts"))[
        "counts"
    ] == {"Report Exported": 1}
    group = show_group(target, DEMO_WORKSPACE_ID, f"org-{user}")
    assert group["traits"] == {"name": f"Org of {user}"}
    assert group["members"] == [f"U#{user}"]


def test_a_signed_webhooks_actions_batch_with_a_bearer_key_lands_in_dynamodb(stack):
    event = sample("ingest_webhook_signed_batch.json")
    assert event["headers"]["authorization"].startswith("Bearer ")
    assert "x-signature" in event["headers"]
    answer = requests.post(
        stack.api_url + event["rawPath"],
        data=event["body"].encode(),
        headers={k: v for k, v in event["headers"].items() if k not in ("host", "content-length")},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200, answer.text

    sent = json.loads(event["body"])
    target = local_target(stack.aws_endpoint)
    profile = eventually(lambda: _found(lambda: show_user(target, SIGNED_WORKSPACE_ID, "user-42"), "counts"))
    assert profile["traits"] == sent[0]["traits"]
    assert profile["groups"] == ["org-9"]
    assert set(profile["counts"]) == {"Signed Up", "Viewed Pricing Page"}


def _found(read: Callable[[], dict[str, Any]], field: str) -> dict[str, Any] | None:
    from segment_bridge.errors import NotFound

    try:
        found = read()
    except NotFound:
        return None
    return found if found.get(field) else None


def test_restarting_the_pollers_mid_run_loses_and_duplicates_nothing(stack):
    """Lambda's event source mappings may restart at any time: the queue keeps its messages and the
    stream mapping resumes after its checkpoint. 20 deliveries and 20 outbox items, restarting the
    pollers between each, land exactly once."""
    target = local_target(stack.aws_endpoint)
    dynamodb = boto3.resource("dynamodb", endpoint_url=stack.aws_endpoint, region_name="us-east-1")
    outbox = dynamodb.Table(stack.resources.tables["OutboxTable"])
    published = []
    for n in range(20):
        batch = [
            {"type": "track", "userId": "restart-user", "event": "Tick", "messageId": f"restart-{n}-{k}"}
            for k in range(5)
        ]
        answer = requests.post(
            f"{stack.api_url}/v1/batch",
            json={"batch": batch},
            headers={"Authorization": f"Bearer {DEMO_API_KEY}"},
            timeout=TIMEOUT,
        )
        assert answer.status_code == 200
        outbox.put_item(
            Item={"pk": f"WS#{DEMO_WORKSPACE_ID}", "sk": f"EVT#restart-{n}", "event": "Tock", "userId": "r"}
        )
        published.append(f"EVT#restart-{n}")
        stack.restart_pollers()

    profile = eventually(
        lambda: (
            _found(lambda: show_user(target, DEMO_WORKSPACE_ID, "restart-user"), "counts")
            if _count(target, "restart-user", "Tick") == 100
            else None
        ),
        timeout=60,
    )
    assert profile["counts"] == {"Tick": 100}
    tocks = eventually(lambda: len([e for e in stack.segment.events.values() if e["event"] == "Tock"]) == 20)
    assert tocks
    time.sleep(2)  # anything sent twice would have arrived by now
    sent = [m for m, e in stack.segment.events.items() if e["event"] == "Tock"]
    assert len(sent) == 20
    assert all(stack.segment.deliveries[m] == 1 for m in sent)


def _count(target: Any, user: str, name: str) -> int:
    profile = _found(lambda: show_user(target, DEMO_WORKSPACE_ID, user), "counts")
    return int(profile["counts"].get(name, 0)) if profile else 0
