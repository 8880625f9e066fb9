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
def session(
    monkeypatch: pytest.MonkeyPatch, boto_session: boto3.session.Session
) -> Iterator[boto3.session.Session]:
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
        yield boto_session


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

    # AWS_ENDPOINT_URL only with the AwsEndpointUrl parameter (sam local invoke): absent by default.
    assert set(environment) == set(variables) - {"AWS_ENDPOINT_URL"}
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


def test_what_one_caller_changes_in_the_template_no_later_caller_sees(tmp_path: Path):
    path = tmp_path / "template.yaml"
    path.write_text("Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n", encoding="utf-8")

    first = load_template(path)
    first["Resources"]["Queue"]["Type"] = "changed"
    first["Resources"]["Other"] = {}

    assert load_template(path) == {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}
    path.write_text("Resources: {}\n", encoding="utf-8")
    assert load_template(path) == {"Resources": {}}  # an edited file is read again


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
        # plus the endpoint `sam local invoke` needs (tests/template/test_sam_local.py)
        assert set(variables) == {*expected, "AWS_ENDPOINT_URL"}, function
        for name, value in variables.items():
            if name == "AWS_ENDPOINT_URL":
                continue
            if name.endswith("_QUEUE_URL") or name.endswith("_DLQ_URL"):
                queue = value.rsplit("/", 1)[-1]  # moto in server mode names the URL after its own host
                assert expected[name].endswith(f"/{queue}"), (function, name)
            else:
                assert value == expected[name], (function, name)


def test_the_ingest_handler_serves_exactly_the_template_routes():
    from tests.conftest import lambda_function

    events = load_template()["Resources"]["IngestFunction"]["Properties"]["Events"]
    routes = {
        (e["Properties"]["Method"], e["Properties"]["Path"])
        for e in events.values()
        if e["Type"] == "HttpApi"
    }
    served = {("POST", f"/v1/{route}") for route in lambda_function("IngestFunction").module.ROUTES}
    assert routes == served


def test_settings_read_only_variables_the_template_declares():
    from segment_bridge.settings import Settings

    declared = set(load_template()["Globals"]["Function"]["Environment"]["Variables"])
    read = {field.alias for field in Settings.model_fields.values()}
    assert read <= declared


# ---------------------------------------------------------------------------------------------- hardening


def _alarm_target() -> dict[str, Any]:
    return {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}


def test_every_alarm_notifies_the_alarm_topic_when_raised_and_cleared(template):
    alarms = _of_type(template, "AWS::CloudWatch::Alarm")
    assert alarms

    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [_alarm_target()], name
        assert alarm["Properties"]["OKActions"] == [_alarm_target()], name
    assert template["Outputs"]["AlarmTopicArn"]["Value"] == _alarm_target()


def test_the_stack_creates_its_own_encrypted_topic_only_without_alarm_topic_arn(template):
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""
    assert template["Conditions"]["CreateAlarmTopic"] == {"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}
    resources = template["Resources"]
    for name in ("AlarmTopic", "AlarmKey"):
        assert resources[name]["Condition"] == "CreateAlarmTopic", name
    assert resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "AlarmKey"}
    assert resources["AlarmKey"]["Properties"]["EnableKeyRotation"] is True
    assert resources["AlarmEmailSubscription"]["Condition"] == "SubscribeAlarmEmail"


def _watched(alarm: dict[str, Any]) -> tuple[str, str]:
    """(metric, what it is about): a resource's logical id (Ref, Fn::GetAtt) or a literal dimension value."""
    value = alarm["Properties"]["Dimensions"][0]["Value"]
    if isinstance(value, dict):
        value = value["Ref"] if "Ref" in value else value["Fn::GetAtt"][0]
    return alarm["Properties"]["MetricName"], value


def test_alarms_watch_both_dead_letter_queues_each_function_and_the_emitter_iterator_age(template):
    watched = {_watched(alarm) for alarm in _of_type(template, "AWS::CloudWatch::Alarm").values()}

    assert {
        ("ApproximateNumberOfMessagesVisible", "IngestDLQ"),
        ("ApproximateNumberOfMessagesVisible", "EmitterDLQ"),
        ("ApproximateAgeOfOldestMessage", "IngestDLQ"),
        ("ApproximateAgeOfOldestMessage", "EmitterDLQ"),
        ("Errors", "IngestFunction"),
        ("Errors", "ProcessorFunction"),
        ("Errors", "EmitterFunction"),
        ("IteratorAge", "EmitterFunction"),
    } <= watched


def test_the_ingest_handler_emits_the_metric_its_internal_errors_alarm_watches(template):
    from tests.conftest import lambda_function

    alarm = template["Resources"]["IngestInternalErrorsAlarm"]["Properties"]
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    ingest = lambda_function("IngestFunction").module

    ingest.failed(RuntimeError("a bug"))
    emitted = ingest.metrics.serialize_metric_set()
    ingest.metrics.clear_metrics()

    [metric_set] = emitted["_aws"]["CloudWatchMetrics"]
    assert alarm["Namespace"] == variables["POWERTOOLS_METRICS_NAMESPACE"] == metric_set["Namespace"]
    assert alarm["MetricName"] in {metric["Name"] for metric in metric_set["Metrics"]}
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
        name: emitted[name] for name in metric_set["Dimensions"][0]
    }
    assert emitted["service"] == variables["POWERTOOLS_SERVICE_NAME"]


def test_every_queue_table_bucket_and_topic_is_encrypted_at_rest(template):
    resources = template["Resources"]

    for name, queue in _of_type(template, "AWS::SQS::Queue").items():
        properties = queue["Properties"]
        assert properties.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in properties, name
    for name, table in _of_type(template, "AWS::DynamoDB::Table").items():
        assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True, name
    for name, bucket in _of_type(template, "AWS::S3::Bucket").items():
        assert bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"], name
    for name, topic in _of_type(template, "AWS::SNS::Topic").items():
        assert topic["Properties"]["KmsMasterKeyId"], name
    assert _of_type(template, "AWS::SNS::Topic") == {"AlarmTopic": resources["AlarmTopic"]}


def _statements(value: Any) -> Iterator[dict[str, Any]]:
    """Every policy statement in a part of the template, inside Fn::If branches too."""
    if isinstance(value, dict):
        if "Effect" in value and "Action" in value:
            yield value
        for item in value.values():
            yield from _statements(item)
    elif isinstance(value, list):
        for item in value:
            yield from _statements(item)


def test_functions_have_inline_policies_only_and_no_allow_has_a_wildcard_action(template):
    functions = _of_type(template, "AWS::Serverless::Function")
    for name, function in functions.items():
        # SAM policy templates are expanded at deploy time (SQSSendMessagePolicy grants sqs:SendMessage*).
        assert all(set(policy) == {"Statement"} for policy in function["Properties"]["Policies"]), name

    allows = [s for s in _statements(template["Resources"]) if s["Effect"] == "Allow"]
    assert allows
    for statement in allows:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not [action for action in actions if "*" in action], statement


def test_api_throttling_comes_from_parameters_with_defaults(template):
    settings = template["Resources"]["BridgeApi"]["Properties"]["DefaultRouteSettings"]

    for name in ("ThrottlingBurstLimit", "ThrottlingRateLimit"):
        assert settings[name] == {"Ref": name}
        assert template["Parameters"][name]["Default"] > 0


def test_every_checkov_suppression_names_one_check_and_says_why(template):
    skips = [
        (name, skip)
        for name, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]

    assert skips
    for name, skip in skips:
        assert skip["id"].startswith("CKV_AWS_"), (name, skip)
        assert len(skip.get("comment", "").split()) >= 8, (name, skip)


# --- the dashboard ------------------------------------------------------------------------------------

AWS_METRICS = {
    # namespace: (the resource type its dimension names, the dimension, the metrics we chart)
    "AWS/ApiGateway": ("AWS::Serverless::HttpApi", "ApiId", {"Count", "4xx", "5xx", "Latency"}),
    "AWS/SQS": (
        "AWS::SQS::Queue",
        "QueueName",
        {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"},
    ),
    "AWS/Lambda": (
        "AWS::Serverless::Function",
        "FunctionName",
        {"Errors", "Throttles", "Duration", "IteratorAge"},
    ),
}


def _dashboard_metrics(template: dict[str, Any]) -> list[list[Any]]:
    """Each metric line of the dashboard: [namespace, name, dimension, value, ..., {options}?], with the
    ${...} references of its Fn::Sub left in place."""
    (dashboard,) = _of_type(template, "AWS::CloudWatch::Dashboard").values()
    body = json.loads(dashboard["Properties"]["DashboardBody"]["Fn::Sub"])
    return [metric for widget in body["widgets"] for metric in widget["properties"]["metrics"]]


def _emitted_metrics() -> set[str]:
    """The metric names the handlers pass to Powertools' add_metric: literal names, and the names of the
    (name, value) tuples a loop feeds it."""
    import ast

    root = Path(__file__).resolve().parents[2] / "functions"
    names: set[str] = set()
    for source in root.glob("*/app.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_metric":
                name = next(k.value for k in node.keywords if k.arg == "name")
                if isinstance(name, ast.Constant):
                    names.add(name.value)
            if (
                isinstance(node, ast.For)
                and isinstance(node.iter, ast.Tuple)
                and "add_metric" in ast.unparse(node)
            ):
                names |= {
                    element.elts[0].value
                    for element in node.iter.elts
                    if isinstance(element, ast.Tuple) and isinstance(element.elts[0], ast.Constant)
                }
    return names


def test_every_metric_the_dashboard_charts_is_emitted_or_an_aws_metric_of_a_resource_of_the_stack(template):
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    emitted = _emitted_metrics()
    assert {"EventsAccepted", "EventsSent", "EventsParked"} <= emitted  # the parser finds both forms

    for namespace, name, *rest in _dashboard_metrics(template):
        dimensions = dict(zip(rest[0::2], rest[1::2], strict=False)) if rest else {}
        dimensions = {key: value for key, value in dimensions.items() if isinstance(key, str)}
        if namespace == variables["POWERTOOLS_METRICS_NAMESPACE"]:
            assert name in emitted, f"no handler emits {name}"
            assert dimensions == {"service": variables["POWERTOOLS_SERVICE_NAME"]}, name
            continue
        assert namespace in AWS_METRICS, f"{namespace} is neither ours nor charted on purpose"
        resource_type, dimension, metrics = AWS_METRICS[namespace]
        assert name in metrics, f"{namespace} {name}"
        (value,) = [value for key, value in dimensions.items() if key == dimension]
        logical_id = value.removeprefix("${").removesuffix("}").removesuffix(".QueueName")
        assert template["Resources"][logical_id]["Type"] == resource_type, value


def test_the_dashboard_charts_what_issue_15_lists(template):
    charted = {(metric[0], metric[1], metric[3]) for metric in _dashboard_metrics(template)}
    names = {(namespace, name) for namespace, name, _ in charted}
    assert {("AWS/ApiGateway", status) for status in ("Count", "4xx", "5xx")} <= names
    assert {("SegmentBridge", "EventsAccepted"), ("SegmentBridge", "EventsRejected")} <= names
    assert {("SegmentBridge", "EventsSent"), ("SegmentBridge", "EventsParked")} <= names
    for queue in ("IngestQueue", "IngestDLQ", "EmitterDLQ"):
        for metric in ("ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"):
            assert ("AWS/SQS", metric, f"${{{queue}.QueueName}}") in charted
    for function in ("ProcessorFunction", "EmitterFunction"):
        for metric in ("Errors", "Duration"):
            assert ("AWS/Lambda", metric, f"${{{function}}}") in charted
    assert ("AWS/Lambda", "IteratorAge", "${EmitterFunction}") in charted
    assert "DashboardUrl" in template["Outputs"]


def test_the_dead_letter_queues_age_alarms_fire_well_before_sqs_drops_a_message(template):
    alarms = _of_type(template, "AWS::CloudWatch::Alarm").values()
    ages = [a for a in alarms if a["Properties"]["MetricName"] == "ApproximateAgeOfOldestMessage"]
    assert len(ages) == 2
    for alarm in ages:
        assert alarm["Properties"]["Threshold"] <= 7 * 24 * 3600  # SQS keeps a message 14 days


def test_parked_items_never_expire_unless_the_operator_sets_a_retention(template):
    rules = template["Resources"]["ArchiveBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (parked,) = [rule for rule in rules if "Fn::If" in rule]
    condition, expiring, otherwise = parked["Fn::If"]
    assert template["Parameters"]["ParkedRetentionDays"]["Default"] == 0
    assert template["Conditions"][condition] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ParkedRetentionDays"}, 0]}]
    }
    assert expiring["Prefix"] == "parked/"
    assert expiring["ExpirationInDays"] == {"Ref": "ParkedRetentionDays"}
    assert otherwise == {"Ref": "AWS::NoValue"}
    assert not [rule for rule in rules if "Fn::If" not in rule and rule["Prefix"].startswith("parked")]


def test_the_emitter_may_write_only_parked_events_to_the_bucket(template):
    statements = template["Resources"]["EmitterFunction"]["Properties"]["Policies"][0]["Statement"]
    s3 = [s for s in statements if isinstance(s, dict) and str(s.get("Action", "")).startswith("s3:")]
    assert s3 == [
        {
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": {"Fn::Sub": "${ArchiveBucket.Arn}/parked/emitter/*"},
        }
    ]


def test_deployed_stacks_send_only_to_public_https_endpoints_by_default(template):
    parameter = template["Parameters"]["SegmentEndpoints"]
    assert parameter["Default"] == "public"
    assert parameter["AllowedValues"] == ["public", "private", "local"]
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["SEGMENT_ENDPOINTS"] == {"Ref": "SegmentEndpoints"}
