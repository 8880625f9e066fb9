"""`segment-bridge rules`, `stats` and `tail` on moto, with the real functions doing the work."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from bridge_dev.events import DEMO_WORKSPACE_ID, FLOW_COMPLETED_RULE
from bridge_dev.target import Target
from bridge_dev.watch import Tail
from tests.conftest import ROOT, lambda_function
from tests.functional.conftest import stream_lambda_event
from tests.functional.helpers import now_delivery, process_the_queue

RECORD = str(ROOT / "events" / "emitter_change_rule_modify.json")


@pytest.fixture
def rule_file(tmp_path: Path) -> Path:
    path = tmp_path / "flow-completed.yaml"
    path.write_text(json.dumps(FLOW_COMPLETED_RULE.model_dump(mode="json")), encoding="utf-8")
    return path


def test_a_rule_is_set_listed_tested_and_deleted_from_the_cli(sb, rule_file):
    assert sb("rules", "list").json == []
    stored = sb("rules", "set", str(rule_file))
    assert stored.json["stored"] == "flow-completed"
    assert [rule["name"] for rule in sb("rules", "list").json] == ["flow-completed"]

    (result,) = sb("rules", "test", str(rule_file), "--record", RECORD).json
    assert result["sends"] is True
    assert {k: result["track"][k] for k in ("event", "userId", "properties")} == {
        "event": "Flow Completed",
        "userId": "user-42",
        "properties": {"flowId": "onboarding"},
    }

    assert sb("rules", "delete", "flow-completed").json == {"deleted": "flow-completed"}
    assert sb("rules", "list").json == []


def test_a_stored_rule_that_no_longer_validates_can_still_be_deleted(sb, aws):
    broken = {"pk": "RULES", "sk": "RULE#broken", "config": '{"name": "broken", "when": "new.x =="}'}
    boto3.resource("dynamodb").Table(aws.tables["WorkspacesTable"]).put_item(Item=broken)

    (listed,) = sb("rules", "list").json  # listed with why, not an error
    assert (listed["name"], listed["table"]) == ("broken", None)
    assert "no longer valid" in listed["invalid"]
    assert sb("rules", "delete", "broken").json == {"deleted": "broken"}
    assert sb("rules", "delete", "broken").error["code"] == "not_found"


def test_rule_test_says_why_a_record_sends_nothing(sb, rule_file, tmp_path):
    unchanged = tmp_path / "record.json"
    unchanged.write_text(
        json.dumps({"eventName": "MODIFY", "old": {"status": "COMPLETED"}, "new": {"status": "COMPLETED"}})
    )
    (result,) = sb("rules", "test", str(rule_file), "--record", str(unchanged)).json
    assert result["sends"] is False
    assert result["why"].startswith("`when` is false")

    typed = tmp_path / "typed.json"  # a function given a value of another type: the emitter parks it
    other = FLOW_COMPLETED_RULE.model_copy(update={"when": "starts_with(new.status, 'C')"})
    typed.write_text(other.model_dump_json())
    numeric = tmp_path / "numeric.json"
    numeric.write_text(json.dumps({"eventName": "MODIFY", "old": {}, "new": {"status": 3}}))
    (parked,) = sb("rules", "test", str(typed), "--record", str(numeric)).json
    assert parked["why"].startswith("parked: change rule flow-completed: `when` cannot be evaluated")


def test_stats_count_a_days_deliveries_per_workspace(sb, ingest, aws):
    assert ingest(now_delivery("ingest_mixed_batch.json")).status == 200
    assert ingest(now_delivery("ingest_echo_batch.json")).status == 200
    process_the_queue(aws)
    sb("publish", DEMO_WORKSPACE_ID, "--event", "Paid", "--user", "user-1")  # no destination: parked
    lambda_function("EmitterFunction").invoke(stream_lambda_event(aws.tables["OutboxTable"]))

    (today,) = sb("stats", DEMO_WORKSPACE_ID, "--days", "1").json
    assert today["day"] == datetime.now(UTC).date().isoformat()
    assert {
        k: today[k] for k in ("accepted", "rejected", "echoes", "applied", "unapplied", "sent", "parked")
    } == {
        "accepted": 3,
        "rejected": 5,
        "echoes": 1,
        "applied": 3,
        "unapplied": 0,
        "sent": 0,
        "parked": 1,
    }
    every = sb("stats", "--days", "2").json
    assert {row["workspace_id"] for row in every} >= {DEMO_WORKSPACE_ID}
    assert len([row for row in every if row["workspace_id"] == DEMO_WORKSPACE_ID]) == 2


def test_tail_shows_accepted_rejected_and_echoes_then_applied(aws, boto_session, workspaces, ingest):
    tail = Tail(Target("moto", aws, boto_session), DEMO_WORKSPACE_ID, settle_seconds=0)
    tail.start()
    assert tail.poll() == []

    ingest(now_delivery("ingest_mixed_batch.json"))
    ingest(now_delivery("ingest_echo_batch.json"))
    first = tail.poll()  # not processed yet: refused at once, echoes counted
    assert [line["kind"] for line in first].count("rejected") == 5
    assert all(line["reason"] for line in first if line["kind"] == "rejected")
    assert {"kind": "echoes", "count": 1} in [
        {k: line[k] for k in ("kind", "count")} for line in first if "count" in line
    ]

    process_the_queue(aws)
    second = [line["kind"] for line in tail.poll()]
    assert second.count("accepted") == 3
    assert second.count("applied") == 3
    assert tail.poll() == []  # each event once
