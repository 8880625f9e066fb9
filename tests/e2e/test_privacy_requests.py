"""Privacy requests reaching the local stack over HTTP (issue 25): Segment's three documented delete
payloads as Segment posts them, each then ending with a receipt in state "purged" after `segment-bridge
purge`, and the Destination Function (segment/bridge-function.js) run under Node by a harness that calls
its handlers as Segment's Functions runtime does."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any

import boto3
import pytest
import requests

from bridge_dev.cli import main
from bridge_dev.events import DEMO_API_KEY, DEMO_WORKSPACE_ID
from bridge_dev.local import LocalStack, start
from tests.conftest import ROOT
from tests.e2e.conftest import TIMEOUT, eventually
from tests.e2e.test_cli import _without_function_logs

pytestmark = pytest.mark.e2e

DELETES = json.loads((ROOT / "tests" / "data" / "segment_deletes.json").read_text(encoding="utf-8"))
SHAPES = sorted(DELETES.keys() - {"_about"})
NODE_MAJOR = 20


@pytest.fixture(scope="module")
def stack():
    with start(port=0, aws_port=0, segment_port=0) as running:
        yield running


def _item(stack: Any, user: str, sk: str) -> dict[str, Any] | None:
    dynamodb = boto3.resource("dynamodb", endpoint_url=stack.aws_endpoint, region_name="us-east-1")
    table = dynamodb.Table(stack.resources.tables["ProfilesTable"])
    return table.get_item(Key={"pk": f"WS#{DEMO_WORKSPACE_ID}#U#{user}", "sk": sk}).get("Item")


def _post(stack: Any, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(
        stack.api_url + "/v1/segment",
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {DEMO_API_KEY}", "Content-Type": "application/json"}
        | (headers or {}),
        timeout=TIMEOUT,
    )


def test_segments_three_delete_payloads_each_erase_their_user_through_the_local_stack(stack):
    for shape in SHAPES:
        user = DELETES[shape]["userId"]
        before = "2020-05-01T00:00:00Z" if shape == "partner" else "2025-12-01T00:00:00Z"
        assert _post(stack, {"type": "identify", "userId": user, "timestamp": before}).status_code == 200
        eventually(lambda user=user: _item(stack, user, "PROFILE"))

        answer = _post(stack, DELETES[shape])

        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 1
    for shape in SHAPES:
        user = DELETES[shape]["userId"]
        tombstone = eventually(
            lambda user=user: (_item(stack, user, "DELETED") or {}).get("status") == "erased"
        )
        assert tombstone
        assert _item(stack, user, "PROFILE") is None


def segment_bridge(stack: LocalStack, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    """The CLI in process against the stack, --json: its exit status and its JSON (None on an error)."""
    capsys.readouterr()
    code = main(["--endpoint", stack.aws_endpoint, *args, "--json"])
    out = _without_function_logs(capsys.readouterr().out)
    return code, json.loads(out) if code == 0 else None


@pytest.mark.parametrize("shape", SHAPES)
def test_a_documented_delete_shape_ends_with_a_purged_receipt(stack, capsys, shape):
    def sb(*args: str) -> tuple[int, Any]:
        return segment_bridge(stack, capsys, *args)

    user = f"receipt-{shape}"  # not the other test's users: a receipt keeps its first arrival's source
    delete = DELETES[shape] | {"userId": user}
    if "messageId" in delete:
        delete["messageId"] = f"{delete['messageId']}-receipt"
    before = "2020-05-01T00:00:00Z" if shape == "partner" else "2025-12-01T00:00:00Z"
    classic_webhooks = {"User-Agent": "Segment.io/1.0"}
    identify = {"type": "identify", "userId": user, "timestamp": before, "traits": {"plan": "pro"}}
    assert _post(stack, identify, classic_webhooks).status_code == 200
    eventually(lambda: _item(stack, user, "PROFILE"))

    answer = _post(stack, delete, classic_webhooks)
    assert answer.status_code == 200, answer.text

    def erased() -> bool:
        code, receipts = sb("deletions", "show", DEMO_WORKSPACE_ID, user)
        return code == 0 and receipts[0]["state"] == "erased"

    eventually(erased)
    assert _item(stack, user, "PROFILE") is None
    code, purged = sb("purge", DEMO_WORKSPACE_ID)  # plans the purge job and waits for the fleet's workers
    assert code == 0
    assert purged["state"] == "done"
    assert purged["receipts_purged"] >= 1
    [receipt] = sb("deletions", "show", DEMO_WORKSPACE_ID, user)[1]
    assert (receipt["state"], receipt["source"], receipt["deleted_at"]) == (
        "purged",
        "segment",
        delete["timestamp"],
    )


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"Node.js {NODE_MAJOR} is needed to test segment/bridge-function.js (segment/README.md)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout  # noqa: S603
    major = int(re.match(r"v(\d+)", version).group(1))  # type: ignore[union-attr]
    if major < NODE_MAJOR:
        pytest.fail(f"Node.js {NODE_MAJOR} or later is needed; found {version.strip()}")
    return node


def test_the_destination_function_under_node_forwards_events_and_a_delete_that_erases_the_user(stack):
    user = "function-deleted-user"
    done = subprocess.run(  # noqa: S603 - node, on our own test file
        [_node(), "--test", str(ROOT / "segment" / "test" / "bridge-function.test.js")],
        env={
            **os.environ,
            "BRIDGE_URL": stack.api_url,
            "BRIDGE_API_KEY": DEMO_API_KEY,
            "BRIDGE_TEST_USER": user,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# skipped 0" in done.stdout  # the tests against the stack ran
    assert "# fail 0" in done.stdout

    tombstone = eventually(
        lambda: (
            (_item(stack, user, "DELETED") or {}).get("status") == "erased" and _item(stack, user, "DELETED")
        )
    )
    assert tombstone["deleted_at"] == "2025-12-02T00:00:00.000Z"
    assert _item(stack, user, "PROFILE") is None
    assert eventually(lambda: _item(stack, f"{user}-batch", "PROFILE"))  # the batch's valid event
