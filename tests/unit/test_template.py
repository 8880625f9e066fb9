"""bridge_dev.template builds on moto what template.yaml declares; expected values come from the template."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bridge_dev.template import LocalResources, TemplateError, create_resources, load_template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


@pytest.fixture
def resources(session: boto3.session.Session, template: dict[str, Any]) -> LocalResources:
    return create_resources(session, template)


def _of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == type_}


def _queue_attributes(session: boto3.session.Session, url: str) -> dict[Any, str]:
    return session.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def test_ingest_queue_redrives_to_its_dead_letter_queue_after_the_template_receive_count(
    session, template, resources
):
    redrive = template["Resources"]["IngestQueue"]["Properties"]["RedrivePolicy"]
    dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert dlq == "IngestDLQ"

    created = json.loads(_queue_attributes(session, resources.queue_urls["IngestQueue"])["RedrivePolicy"])

    assert created["deadLetterTargetArn"] == _queue_attributes(session, resources.queue_urls[dlq])["QueueArn"]
    assert int(created["maxReceiveCount"]) == redrive["maxReceiveCount"]


def test_every_queue_takes_messages_as_large_as_the_limits_mapping(session, template, resources):
    limit = template["Mappings"]["Limits"]["Queue"]["MessageBytes"]
    queues = _of_type(template, "AWS::SQS::Queue")
    assert set(queues) == set(resources.queue_urls)

    for name, queue in queues.items():
        assert queue["Properties"]["MaximumMessageSize"] == {
            "Fn::FindInMap": ["Limits", "Queue", "MessageBytes"]
        }
        assert _queue_attributes(session, resources.queue_urls[name])["MaximumMessageSize"] == str(limit)


def test_queue_timeouts_and_retention_follow_the_template(session, template, resources):
    for name, queue in _of_type(template, "AWS::SQS::Queue").items():
        attributes = _queue_attributes(session, resources.queue_urls[name])
        for key in ("VisibilityTimeout", "MessageRetentionPeriod"):
            if key in queue["Properties"]:
                assert attributes[key] == str(queue["Properties"][key]), (name, key)


def test_tables_have_the_template_keys_indexes_stream_and_ttl(session, template, resources):
    dynamodb = session.client("dynamodb")
    tables = _of_type(template, "AWS::DynamoDB::Table")
    assert set(tables) == set(resources.tables)
    assert set(tables) <= set(dynamodb.list_tables()["TableNames"])

    for name, table in tables.items():
        properties = table["Properties"]
        description = dynamodb.describe_table(TableName=resources.tables[name])["Table"]
        assert description["KeySchema"] == properties["KeySchema"]
        assert sorted(
            index["IndexName"] for index in description.get("GlobalSecondaryIndexes", [])
        ) == sorted(index["IndexName"] for index in properties.get("GlobalSecondaryIndexes", []))
        ttl = dynamodb.describe_time_to_live(TableName=resources.tables[name])["TimeToLiveDescription"]
        if "TimeToLiveSpecification" in properties:
            assert ttl["TimeToLiveStatus"] == "ENABLED"
            assert ttl["AttributeName"] == properties["TimeToLiveSpecification"]["AttributeName"]
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED"


def test_outbox_table_has_the_stream_the_emitter_reads(session, template, resources):
    view_type = template["Resources"]["OutboxTable"]["Properties"]["StreamSpecification"]["StreamViewType"]

    description = session.client("dynamodb").describe_table(TableName=resources.tables["OutboxTable"])[
        "Table"
    ]

    assert description["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": view_type}
    assert description["LatestStreamArn"]


def test_environment_holds_every_global_variable_resolved_to_the_local_resources(
    session, template, resources
):
    variables = template["Globals"]["Function"]["Environment"]["Variables"]

    environment = resources.environment()

    assert set(environment) == set(variables)
    assert all(isinstance(value, str) and value for value in environment.values())
    ingest_url = session.client("sqs").get_queue_url(QueueName="IngestQueue")["QueueUrl"]
    assert environment["INGEST_QUEUE_URL"] == ingest_url
    assert environment["QUEUE_MESSAGE_BYTES"] == str(template["Mappings"]["Limits"]["Queue"]["MessageBytes"])
    assert environment["POWERTOOLS_LOG_LEVEL"] == template["Parameters"]["LogLevel"]["Default"]
    assert environment["AUTH_CACHE_SECONDS"] == str(template["Parameters"]["AuthCacheSeconds"]["Default"])
    assert environment["ARCHIVE_BUCKET"] in {
        b["Name"] for b in session.client("s3").list_buckets()["Buckets"]
    }
    for name, value in variables.items():
        if isinstance(value, dict) and value.get("Ref") in resources.tables:
            assert environment[name] == resources.tables[value["Ref"]]
        elif isinstance(value, str):
            assert environment[name] == value


def test_creating_the_resources_twice_reuses_what_exists(session, template, resources):
    again = create_resources(session, template)

    assert again == resources
    assert len(session.client("sqs").list_queues()["QueueUrls"]) == len(_of_type(template, "AWS::SQS::Queue"))


def test_bucket_is_named_as_asked(session, template):
    resources = create_resources(session, template, bucket_name="another-archive")

    assert resources.environment()["ARCHIVE_BUCKET"] == "another-archive"
    session.client("s3").head_bucket(Bucket="another-archive")


def test_load_template_reads_short_form_tags_as_long_form(tmp_path: Path):
    path = tmp_path / "template.yaml"
    path.write_text(
        """
AWSTemplateFormatVersion: 2010-09-09
Values:
  ref: !Ref Thing
  dotted: !GetAtt Queue.Arn
  listed: !GetAtt [Queue, QueueName]
  sub: !Sub "${AWS::StackName}-x"
  sublist: !Sub ["${A}", {A: !Ref B}]
  map: !FindInMap [Limits, Queue, MessageBytes]
  cond: !If [IsProd, !Join ["", [a, b]], !Select [0, !Split [",", "a,b"]]]
  logic: !And [!Equals [a, b], !Not [!Condition C], !Or [!Condition D, !Condition E]]
  other: [!Base64 x, !ImportValue y, !GetAZs ""]
""",
        encoding="utf-8",
    )

    loaded = load_template(path)

    assert loaded["AWSTemplateFormatVersion"] == "2010-09-09"
    assert loaded["Values"] == {
        "ref": {"Ref": "Thing"},
        "dotted": {"Fn::GetAtt": ["Queue", "Arn"]},
        "listed": {"Fn::GetAtt": ["Queue", "QueueName"]},
        "sub": {"Fn::Sub": "${AWS::StackName}-x"},
        "sublist": {"Fn::Sub": ["${A}", {"A": {"Ref": "B"}}]},
        "map": {"Fn::FindInMap": ["Limits", "Queue", "MessageBytes"]},
        "cond": {
            "Fn::If": [
                "IsProd",
                {"Fn::Join": ["", ["a", "b"]]},
                {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]},
            ]
        },
        "logic": {
            "Fn::And": [
                {"Fn::Equals": ["a", "b"]},
                {"Fn::Not": [{"Condition": "C"}]},
                {"Fn::Or": [{"Condition": "D"}, {"Condition": "E"}]},
            ]
        },
        "other": [{"Fn::Base64": "x"}, {"Fn::ImportValue": "y"}, {"Fn::GetAZs": ""}],
    }


def test_environment_refuses_what_it_cannot_resolve(session, template):
    broken = json.loads(json.dumps(template))
    broken["Globals"]["Function"]["Environment"]["Variables"]["LAYER"] = {"Ref": "BridgeLayer"}

    resources = create_resources(session, broken)

    with pytest.raises(TemplateError, match="BridgeLayer"):
        resources.environment()


def test_the_limits_mapping_alone_sets_queue_size_and_queue_message_bytes(session, template):
    changed = json.loads(json.dumps(template))
    changed["Mappings"]["Limits"]["Queue"]["MessageBytes"] = 131072

    resources = create_resources(session, changed)

    assert resources.environment()["QUEUE_MESSAGE_BYTES"] == "131072"
    for url in resources.queue_urls.values():
        assert _queue_attributes(session, url)["MaximumMessageSize"] == "131072"


def test_env_json_gives_every_function_the_template_variables_of_the_local_stack(
    session, template, resources
):
    env_json = json.loads((Path(__file__).parents[2] / "env.json").read_text(encoding="utf-8"))
    expected = resources.environment()

    assert set(env_json) == set(_of_type(template, "AWS::Serverless::Function"))
    for function, variables in env_json.items():
        assert set(variables) == set(expected), function
        for name, value in variables.items():
            if name in ("INGEST_QUEUE_URL", "INGEST_DLQ_URL", "EMITTER_DLQ_URL"):
                queue = value.rsplit("/", 1)[-1]  # moto in server mode names the URL after its own host
                assert expected[name].endswith(f"/{queue}"), (function, name)
            else:
                assert value == expected[name], (function, name)


def test_the_ingest_handler_serves_exactly_the_template_routes():
    from tests.conftest import load_handler

    events = load_template()["Resources"]["IngestFunction"]["Properties"]["Events"]
    routes = {
        (e["Properties"]["Method"], e["Properties"]["Path"])
        for e in events.values()
        if e["Type"] == "HttpApi"
    }
    served = {("POST", f"/v1/{route}") for route in load_handler("ingest").ROUTES}
    assert routes == served


def test_settings_read_only_variables_the_template_declares():
    from segment_bridge.settings import Settings

    declared = set(load_template()["Globals"]["Function"]["Environment"]["Variables"])
    read = {field.alias for field in Settings.model_fields.values()}
    assert read <= declared
