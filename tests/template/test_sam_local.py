"""The `sam local invoke` contract, without Docker: env.json gives each function exactly the variables the
template declares for it, aimed at `make dev`'s embedded AWS, and that endpoint reaches every AWS client."""

from __future__ import annotations

import json

import boto3
import pytest

from bridge_dev.events import DOCKER_AWS_ENDPOINT, ENV_FILE, LOCAL_AWS_PORT
from bridge_dev.template import LocalResources, load_template

TEMPLATE = load_template()
FUNCTIONS = sorted(
    name
    for name, resource in TEMPLATE["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function"
)
ENV = json.loads(ENV_FILE.read_text(encoding="utf-8"))


def declared_variables(function: str) -> set[str]:
    """The variables the template declares for a function: Globals' and its own."""
    shared = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    own = TEMPLATE["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
    return set(shared) | set(own)


def _resources(**parameters: str) -> LocalResources:
    return LocalResources(
        tables={}, queue_urls={}, queue_arns={}, buckets={}, template=TEMPLATE, parameters=parameters
    )


def test_env_json_names_every_function_of_the_template():
    assert sorted(ENV) == FUNCTIONS


@pytest.mark.parametrize("function", FUNCTIONS)
def test_env_json_sets_exactly_the_variables_the_template_declares_and_the_endpoint(function):
    # sam local invoke only overrides declared variables: one missing here would silently aim at AWS.
    assert set(ENV[function]) == declared_variables(function)
    assert "AWS_ENDPOINT_URL" in ENV[function]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_env_json_aims_every_function_at_make_devs_aws_as_a_container_reaches_it(function):
    variables = ENV[function]
    assert (
        variables["AWS_ENDPOINT_URL"]
        == DOCKER_AWS_ENDPOINT
        == f"http://host.docker.internal:{LOCAL_AWS_PORT}"
    )
    for name in ("INGEST_QUEUE_URL", "INGEST_DLQ_URL", "EMITTER_DLQ_URL", "JOBS_QUEUE_URL"):
        assert variables[name].startswith(DOCKER_AWS_ENDPOINT + "/"), name


def test_the_endpoint_variable_is_absent_unless_the_parameter_is_set():
    variable = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["AWS_ENDPOINT_URL"]
    assert TEMPLATE["Parameters"]["AwsEndpointUrl"]["Default"] == ""
    assert variable == {"Fn::If": ["HasAwsEndpoint", {"Ref": "AwsEndpointUrl"}, {"Ref": "AWS::NoValue"}]}
    assert not _resources().condition("HasAwsEndpoint")  # on AWS: no variable, nothing changes
    assert _resources(AwsEndpointUrl="http://localhost:5000").condition("HasAwsEndpoint")


STORE_SERVICES = ("dynamodb", "sqs", "s3", "secretsmanager", "dynamodbstreams")
"""Every AWS service segment_bridge.store calls."""


@pytest.mark.parametrize("service", STORE_SERVICES)
def test_with_aws_endpoint_url_set_every_client_a_store_makes_goes_there(service, monkeypatch):
    """A Store built from Settings (as the functions build it) names no endpoint of its own, so its clients
    take boto3's configured one: boto3 >= 1.31 reads AWS_ENDPOINT_URL for every service, which is what
    AwsEndpointUrl sets. tests/e2e/test_sam_local.py runs the handlers so against make dev's AWS."""
    from botocore.config import Config

    from segment_bridge.settings import Settings
    from segment_bridge.store import Store

    monkeypatch.setenv("AWS_ENDPOINT_URL", DOCKER_AWS_ENDPOINT)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    settings = Settings.model_validate(
        {name: value for name, value in ENV["ProcessorFunction"].items() if name != "AWS_ENDPOINT_URL"}
    )
    assert Store(settings).endpoint_url is None
    client = boto3.client(service, config=Config(retries={"mode": "standard"}), endpoint_url=None)
    assert client.meta.endpoint_url == DOCKER_AWS_ENDPOINT


@pytest.mark.parametrize("service", STORE_SERVICES)
def test_without_aws_endpoint_url_every_client_goes_to_aws(service, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv(f"AWS_ENDPOINT_URL_{service.upper()}", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert boto3.client(service).meta.endpoint_url.endswith(".amazonaws.com")
