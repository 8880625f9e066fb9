"""The segment-bridge CLI against a running local stack: what an operator types, and what it changes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from bridge_dev.cli import main
from bridge_dev.events import DEMO_API_KEY, DEMO_WORKSPACE_ID
from bridge_dev.local import DEMO_WRITE_KEY, LocalStack, start
from bridge_dev.target import local_target
from segment_bridge.errors import ServiceUnavailable
from segment_bridge.ingest.auth import sign
from segment_bridge.keys import hash_key
from segment_bridge.store.profiles import ProfileRepository
from tests.e2e.conftest import eventually

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with start(port=0, aws_port=0, segment_port=0) as running:
        yield running


class Cli:
    def __init__(self, stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
        self.stack, self.capsys = stack, capsys

    def __call__(self, *args: str, ok: bool = True) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--endpoint", self.stack.aws_endpoint, *args])
        out, err = self.capsys.readouterr()
        out = _without_function_logs(out)
        assert (code == 0) is ok, (code, out, err)
        return code, out, err

    def json(self, *args: str) -> Any:
        _, out, _ = self(*args, "--json")
        return json.loads(out)


def _without_function_logs(out: str) -> str:
    """The CLI's own output: the in-process stack's functions log one-line JSON to the same stdout."""
    return "".join(
        line for line in out.splitlines(keepends=True) if not line.startswith(('{"level"', '{"_aws"'))
    )


@pytest.fixture
def cli(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(stack, capsys)


def post(stack: LocalStack, key: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(
        f"{stack.api_url}/v1/batch",
        data=json.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}", **(headers or {})},
        timeout=10,
    )


def identify(user: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "traits": traits, "messageId": f"cli-{user}-{time.time_ns()}"}


# ---------------------------------------------------------------------------------------------- workspaces


def test_a_new_workspace_key_is_shown_once_and_authenticates_at_the_api(stack, cli):
    created = cli.json("workspaces", "create", "Acme")
    assert created["api_key"].startswith("sbk_")

    assert post(stack, created["api_key"], {"batch": [identify("u1", plan="pro")]}).status_code == 200
    listed = {w["workspace_id"]: w for w in cli.json("workspaces", "list")}
    assert listed[created["workspace_id"]]["key_ids"] == [created["key_id"]]
    assert created["api_key"] not in json.dumps(listed)  # only hashes are kept


def test_rotating_gives_a_second_key_a_third_is_refused_and_revoking_removes_the_old(stack, cli):
    created = cli.json("workspaces", "create", "Rotating")
    workspace = created["workspace_id"]

    rotated = cli.json("workspaces", "rotate-key", workspace)
    assert post(stack, rotated["api_key"], {"batch": [identify("u2")]}).status_code == 200
    assert rotated["old_key_ids"] == [created["key_id"]]

    _, _, err = cli("workspaces", "rotate-key", workspace, ok=False)
    assert "already has 2 live keys" in err

    revoked = cli.json("workspaces", "revoke-key", workspace, created["key_id"])
    assert revoked["effective_within_seconds"] == 60
    listed = {w["workspace_id"]: w for w in cli.json("workspaces", "list")}
    assert listed[workspace]["key_ids"] == [rotated["key_id"]]
    # Revoked keys are refused once the functions' key cache (AUTH_CACHE_SECONDS) expires; a fresh store
    # (what a new container has) no longer knows the key.
    fresh = local_target(stack.aws_endpoint).store
    assert fresh.workspace_for_key_hash(hash_key(created["api_key"])) is None


def test_a_generated_shared_secret_makes_the_api_check_signatures(stack, cli):
    workspace = cli.json("workspaces", "create", "Signing")
    secret = cli.json("workspaces", "secret", workspace["workspace_id"], "--generate")["shared_secret"]
    body = json.dumps(identify("signed-user"))

    unsigned = requests.post(
        f"{stack.api_url}/v1/identify",
        data=body,
        headers={"Authorization": f"Bearer {workspace['api_key']}", "Content-Type": "application/json"},
        timeout=10,
    )
    signed = requests.post(
        f"{stack.api_url}/v1/identify",
        data=body,
        headers={
            "Authorization": f"Bearer {workspace['api_key']}",
            "Content-Type": "application/json",
            "X-Signature": sign(secret, body.encode()),
        },
        timeout=10,
    )
    assert unsigned.status_code == 401
    assert signed.status_code == 200

    cli("workspaces", "secret", workspace["workspace_id"], "--unset")
    listed = {w["workspace_id"]: w for w in cli.json("workspaces", "list")}
    assert listed[workspace["workspace_id"]]["shared_secret"] is False


def test_errors_have_a_code_and_a_message_and_exit_1(cli):
    code, out, err = cli("users", "show", "ws_nope", "nobody", "--json", ok=False)
    assert code == 1
    assert out == ""
    assert json.loads(err) == {"code": "not_found", "message": "No workspace ws_nope."}

    _, _, err = cli("workspaces", "secret", DEMO_WORKSPACE_ID, ok=False)
    assert "exactly one of" in err


def test_without_a_running_stack_the_cli_says_how_to_start_one(capsys):
    code = main(["--endpoint", "http://127.0.0.1:9", "workspaces", "list"])
    assert code == 1
    assert "make dev" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- destination


def test_the_destination_is_stored_with_its_key_masked(cli):
    workspace = cli.json("workspaces", "create", "Outbound")["workspace_id"]
    assert "has no Segment destination" in cli("destination", "show", workspace)[1]

    cli("destination", "set", workspace, "--write-key", "wk_0123456789abcdef", "--endpoint", "eu")
    shown = cli.json("destination", "show", workspace)
    assert shown == {
        "workspace_id": workspace,
        "url": "https://events.eu1.segmentapis.com/v1/batch",
        "write_key": "…cdef",
    }
    _, _, err = cli("destination", "set", workspace, "--write-key", "k", "--endpoint", "ftp://x", ok=False)
    assert "us, eu or an https URL" in err
    _, _, err = cli(
        "destination", "set", workspace, "--write-key", "k", "--endpoint", "https://169.254.169.254", ok=False
    )
    assert "metadata" in err


# ---------------------------------------------------------------------------------------------- mapping


def test_an_invalid_mapping_file_is_refused_naming_each_field(cli, tmp_path):
    bad = tmp_path / "mapping.yaml"
    bad.write_text("history_days: 0\nchannels:\n  email: 'traits.['\nbogus: 1\n")
    _, _, err = cli("mapping", "validate", str(bad), ok=False)
    assert "history_days" in err
    assert "channels.email" in err
    assert "bogus" in err


def test_preview_shows_the_change_without_writing_and_set_then_replay_applies_it(stack, cli, tmp_path):
    workspace = cli.json("workspaces", "create", "Mapped")
    events = [identify("mapped-user", contact={"mail": "m@example.com"}, locale="de")]
    assert post(stack, workspace["api_key"], {"batch": events}).status_code == 200
    eventually(lambda: _user(cli, workspace["workspace_id"], "mapped-user"))
    assert _user(cli, workspace["workspace_id"], "mapped-user")["channels"] == {}

    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("channels:\n  email: contact.mail\npreferences:\n  language: locale\n")
    sample = tmp_path / "events.json"
    sample.write_text(json.dumps({"batch": events}))
    preview = cli.json(
        "mapping", "preview", workspace["workspace_id"], str(sample), "--mapping", str(mapping)
    )
    [change] = preview["changes"]
    assert change["changed"]["channels"] == {"before": {}, "after": {"email": ["m@example.com"]}}
    assert change["changed"]["preferences"]["after"] == {"language": "de"}
    assert _user(cli, workspace["workspace_id"], "mapped-user")["channels"] == {}  # nothing written

    assert cli.json("mapping", "set", workspace["workspace_id"], str(mapping))["version"] == 1
    assert cli.json("mapping", "show", workspace["workspace_id"])["channels"] == {"email": "contact.mail"}
    today = time.strftime("%Y-%m-%d", time.gmtime())
    dry = cli.json("replay", workspace["workspace_id"], "--since", today, "--dry-run")
    assert (dry["batches"], dry["changed"]) == (1, 1)
    assert _user(cli, workspace["workspace_id"], "mapped-user")["channels"] == {}

    replayed = cli.json("replay", workspace["workspace_id"], "--since", today)  # a job on the fleet, followed
    assert (replayed["state"], replayed["profiles_changed"], replayed["messages_applied"]) == ("done", 1, 1)
    assert cli.json("replay", "status", replayed["job_id"])["state"] == "done"
    user = _user(cli, workspace["workspace_id"], "mapped-user")
    assert user["channels"] == {"email": ["m@example.com"]}
    assert user["preferences"] == {"language": "de"}

    again = cli.json("replay", workspace["workspace_id"], "--since", today)
    assert (again["profiles_changed"], again["history_written"]) == (0, 0)  # nothing changes twice
    assert cli.json("replay", workspace["workspace_id"], "--since", today, "--dry-run")["changed"] == 0


def _user(cli: Cli, workspace: str, user: str) -> Any:
    code = main(["--endpoint", cli.stack.aws_endpoint, "users", "show", workspace, user, "--json"])
    out = _without_function_logs(cli.capsys.readouterr().out)
    return json.loads(out) if code == 0 else None


# ---------------------------------------------------------------------------------------------- reading


def test_users_events_groups_and_rejected_show_what_the_pipeline_stored(stack, cli):
    workspace = cli.json("workspaces", "create", "Reading")
    ws, key = workspace["workspace_id"], workspace["api_key"]
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    batch = [
        {"type": "track", "anonymousId": "anon-r", "event": "Visited", "timestamp": f"{now}.001Z"},
        {
            "type": "identify",
            "userId": "reader",
            "anonymousId": "anon-r",
            "traits": {"email": "r@example.com"},
        },
        {"type": "track", "userId": "reader", "event": "Read Article", "properties": {"id": 7}},
        {"type": "group", "userId": "reader", "groupId": "team-r", "traits": {"name": "Readers"}},
        {"type": "track", "userId": "reader"},  # no event name: rejected
    ]
    answer = post(stack, key, {"batch": batch})
    assert answer.status_code == 200
    assert [r["index"] for r in answer.json()["rejected"]] == [4]

    user = eventually(lambda: (u := _user(cli, ws, "reader")) and u["groups"] and u)
    assert user["channels"] == {"email": ["r@example.com"]}
    assert user["groups"] == ["team-r"]
    assert user["counts"] == {"Read Article": 1}
    assert user["linked"] == {"anon-r": {"counts": {"Visited": 1}}}
    assert user["counts_with_linked"] == {"Read Article": 1, "Visited": 1}

    history = cli.json("events", "list", ws, "reader")
    assert [(e["name"], e["id"]) for e in history] == [("Visited", "anon-r"), ("Read Article", "reader")]
    assert [e["name"] for e in cli.json("events", "list", ws, "reader", "--no-linked")] == ["Read Article"]

    group = cli.json("groups", "show", ws, "team-r")
    assert group["traits"] == {"name": "Readers"}
    assert group["members"] == ["U#reader"]

    [refused] = cli.json("rejected", "list", ws)
    assert refused["index"] == 4
    assert "event" in refused["reason"]
    assert "event" not in refused
    assert cli.json("rejected", "list", ws, "--events")[0]["event"]["userId"] == "reader"


# ---------------------------------------------------------------------------------------------- outbound


def test_publish_reaches_the_segment_stand_in_as_one_track_call_exactly_once(stack, cli):
    published = cli.json(
        "publish", DEMO_WORKSPACE_ID, "--user", "cli-user", "--event", "Report Exported",
        "--properties", '{"format": "csv"}',
    )  # fmt: skip
    sent = eventually(lambda: stack.segment.events.get(published["messageId"]))
    assert sent["type"] == "track"
    assert sent["event"] == "Report Exported"
    assert sent["userId"] == "cli-user"
    assert sent["properties"] == {"format": "csv"}
    time.sleep(1.5)
    assert stack.segment.deliveries[published["messageId"]] == 1

    _, _, err = cli(
        "publish", DEMO_WORKSPACE_ID, "--event", "X", "--user", "u", "--properties", "[1]", ok=False
    )
    assert "JSON object" in err


def test_an_event_without_a_destination_is_parked_and_redrives_once_one_is_set(stack, cli):
    ws = cli.json("workspaces", "create", "Late Destination")["workspace_id"]
    published = cli.json("publish", ws, "--user", "late-user", "--event", "Trial Started")

    parked = eventually(
        lambda: [
            d for d in cli.json("dlq", "list", "emitter") if d.get("messageId") == published["messageId"]
        ]
    )
    assert parked[0]["workspace_id"] == ws
    assert "no Segment write key" in parked[0]["reason"]

    kept = cli.json("dlq", "redrive", "emitter")
    assert any(left["message_id"] == parked[0]["message_id"] for left in kept["left"])
    assert published["messageId"] not in stack.segment.events

    cli("destination", "set", ws, "--write-key", DEMO_WRITE_KEY, "--endpoint", stack.segment.url)
    assert cli.json("dlq", "redrive", "emitter")["redriven"] >= 1
    assert stack.segment.events[published["messageId"]]["event"] == "Trial Started"
    assert stack.segment.deliveries[published["messageId"]] == 1
    assert not [d for d in cli.json("dlq", "list", "emitter") if d.get("messageId") == published["messageId"]]


# ---------------------------------------------------------------------------------------------- dead letters


def test_a_poisoned_message_ends_in_the_dlq_and_redrives_after_the_fix(stack, cli, monkeypatch):
    ws = cli.json("workspaces", "create", "Poisoned")
    sqs = boto3.client("sqs", endpoint_url=stack.aws_endpoint, region_name="us-east-1")
    queue = stack.resources.queue_urls["IngestQueue"]
    visibility = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["VisibilityTimeout"])["Attributes"]
    # The template's 360 s visibility timeout would make five receives take half an hour.
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "1"})
    time.sleep(2)  # moto fixes a receive's visibility timeout when its long poll (1 s) starts
    original = ProfileRepository.read_entities

    def broken(self: ProfileRepository, workspace_id: str, *args: Any, **kwargs: Any) -> Any:
        if workspace_id == ws["workspace_id"]:
            raise ServiceUnavailable("the profiles table fails for this workspace")
        return original(self, workspace_id, *args, **kwargs)

    monkeypatch.setattr(ProfileRepository, "read_entities", broken)
    try:
        assert post(stack, ws["api_key"], {"batch": [identify("poisoned-user", plan="x")]}).status_code == 200
        [letter] = eventually(
            lambda: [
                d for d in cli.json("dlq", "list", "ingest") if d.get("workspace_id") == ws["workspace_id"]
            ],
            timeout=60,
        )
    finally:
        sqs.set_queue_attributes(QueueUrl=queue, Attributes=visibility)
    assert letter["receive_count"] >= 5
    assert letter["events"] == 1
    assert _user(cli, ws["workspace_id"], "poisoned-user") is None

    monkeypatch.setattr(ProfileRepository, "read_entities", original)  # the fix
    assert cli.json("dlq", "redrive", "ingest")["redriven"] >= 1
    user = eventually(lambda: _user(cli, ws["workspace_id"], "poisoned-user"))
    assert user["traits"] == {"plan": "x"}
    assert not [d for d in cli.json("dlq", "list", "ingest") if d.get("workspace_id") == ws["workspace_id"]]


# ---------------------------------------------------------------------------------------------- the script


def test_the_console_script_invokes_a_function_of_the_template_on_a_sample_event(stack):
    script = Path(sys.executable).parent / "segment-bridge"
    done = subprocess.run(  # noqa: S603 - our own console script
        [str(script), "--endpoint", stack.aws_endpoint, "invoke", "IngestFunction", "-e",
         str(ROOT / "events" / "ingest_webhook_batch.json"), "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["accepted"] == 4
    assert "IngestFunction" in done.stderr  # the function's own logs go to stderr
    assert DEMO_API_KEY not in done.stderr


# ---------------------------------------------------------------------------------------------- tail, stats


def test_tail_shows_a_delivery_within_seconds_and_stats_count_it(stack, cli):
    from bridge_dev.watch import Tail

    tail = Tail(local_target(stack.aws_endpoint), DEMO_WORKSPACE_ID)
    tail.start()
    before = cli.json("stats", DEMO_WORKSPACE_ID, "--days", "1")[0]
    sent_at = time.monotonic()
    good, bad = identify(f"tail-{time.time_ns()}"), {"type": "track", "userId": "u", "messageId": "tail-bad"}
    assert post(stack, DEMO_API_KEY, {"batch": [good, bad]}).status_code == 200

    seen: list[dict[str, Any]] = []

    def applied() -> bool:
        seen.extend(tail.poll())
        return any(line["kind"] == "applied" and line["messageId"] == good["messageId"] for line in seen)

    eventually(applied, timeout=10)
    assert time.monotonic() - sent_at < 6  # about 2 s to settle, plus the pollers
    assert [line["reason"] for line in seen if line["kind"] == "rejected"] == ["event: Field required"]
    after = cli.json("stats", DEMO_WORKSPACE_ID, "--days", "1")[0]
    assert (after["accepted"] - before["accepted"], after["rejected"] - before["rejected"]) == (1, 1)
    assert after["applied"] - before["applied"] == 1
