"""The ReaderFunction in the template: read-only on the tables it reads, its own routes (no catch-all),
its own throttle and alarms."""

from __future__ import annotations

from bridge_dev.template import load_template

READ_ONLY = {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"}
FACETS = ("traits", "external_ids", "events", "links", "metadata")


def _statements() -> list[dict]:
    policies = load_template()["Resources"]["ReaderFunction"]["Properties"]["Policies"]
    return [statement for policy in policies for statement in policy["Statement"]]


def test_the_reader_may_only_read():
    actions = set()
    for statement in _statements():
        assert statement["Effect"] == "Allow"
        found = statement["Action"]
        actions |= set(found if isinstance(found, list) else [found])
    assert actions == READ_ONLY


def test_the_reader_serves_one_get_route_per_collection_and_facet_with_their_own_throttle():
    template = load_template()
    events = template["Resources"]["ReaderFunction"]["Properties"]["Events"].values()
    routes = {f"{e['Properties']['Method']} {e['Properties']['Path']}" for e in events}
    expected = {
        f"GET /v1/spaces/{{workspace}}/collections/{collection}/profiles/{{external_id}}/{facet}"
        for collection in ("users", "accounts")
        for facet in FACETS
    }
    assert routes == expected
    settings = template["Resources"]["BridgeApi"]["Properties"]["RouteSettings"]
    assert set(settings) == expected
    for route in expected:
        assert settings[route] == {
            "ThrottlingBurstLimit": {"Ref": "ReadThrottlingBurstLimit"},
            "ThrottlingRateLimit": {"Ref": "ReadThrottlingRateLimit"},
        }
    # no cap of the read path below API Gateway's account quota (DynamoDB on-demand serves more)
    assert template["Parameters"]["ReadThrottlingRateLimit"]["Default"] == 10000


def test_the_reader_has_its_own_alarms():
    resources = load_template()["Resources"]
    watched = {
        (alarm["Properties"]["MetricName"], str(alarm["Properties"]["Dimensions"][0]["Value"]))
        for alarm in resources.values()
        if alarm["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert ("Errors", "{'Ref': 'ReaderFunction'}") in watched
    assert ("ReadsFailed", "segment-bridge") in watched
