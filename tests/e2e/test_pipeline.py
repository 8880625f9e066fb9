"""The whole pipeline on the local stack: a Segment SDK in, profiles written, product events out."""

from __future__ import annotations

import time

import boto3
import pytest

from bridge_dev.events import DEMO_API_KEY, DEMO_WORKSPACE_ID
from bridge_dev.local import start

pytestmark = pytest.mark.e2e
TIMEOUT = 20


def eventually(check, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("the pipeline did not get there in time")


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
