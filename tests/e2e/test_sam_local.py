"""`sam local invoke FUNCTION -e events/… --env-vars env.json` against `make dev`, minus Docker: the
handler runs with exactly env.json's variables (sam local passes those, the region and the caller's
credentials) and must do its work on the local stack's AWS, reached through AWS_ENDPOINT_URL alone."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from bridge_dev.events import DEMO_WORKSPACE_ID, DOCKER_AWS_ENDPOINT, ENV_FILE
from bridge_dev.local import LocalStack, start
from bridge_dev.runtime import lambda_environment
from bridge_dev.target import FAKE_CREDENTIAL
from tests.conftest import SECONDS_LEFT, lambda_function
from tests.functional.conftest import sample

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with start(port=0, aws_port=0) as running:  # make dev, without the pollers
        yield running


@pytest.fixture
def sam_local_invoke(stack: LocalStack):
    """Runs a function's handler in the environment `sam local invoke --env-vars env.json` gives its
    container, with host.docker.internal:5000 standing for the stack's AWS port."""

    def invoke(function: str, event_file: str) -> object:
        variables = json.loads(ENV_FILE.read_text(encoding="utf-8"))[function]
        container = {
            name: value.replace(DOCKER_AWS_ENDPOINT, stack.aws_endpoint) for name, value in variables.items()
        }
        aws = {
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": FAKE_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIAL,
        }
        with lambda_environment(container | aws | {"POWERTOOLS_METRICS_DISABLED": "true"}, inherit=False):
            return lambda_function(function).invoke(sample(event_file), seconds_left=SECONDS_LEFT)

    return invoke


def test_the_processor_event_writes_profiles_on_the_local_stack(stack, sam_local_invoke):
    assert sam_local_invoke("ProcessorFunction", "processor_sqs_batch.json") == {"batchItemFailures": []}

    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=stack.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id=FAKE_CREDENTIAL,
        aws_secret_access_key=FAKE_CREDENTIAL,
    )
    item = dynamodb.get_item(
        TableName="ProfilesTable",
        Key={"pk": {"S": f"WS#{DEMO_WORKSPACE_ID}#U#user-42"}, "sk": {"S": "PROFILE"}},
    )
    assert item["Item"]["counts"]["M"]["Signed Up"] == {"N": "1"}
    archived = boto3.client(
        "s3",
        endpoint_url=stack.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id=FAKE_CREDENTIAL,
        aws_secret_access_key=FAKE_CREDENTIAL,
    ).list_objects_v2(Bucket="segment-bridge-archive", Prefix="raw/")
    assert archived["KeyCount"] >= 2


def test_the_ingest_event_is_queued_on_the_local_stack(stack, sam_local_invoke):
    answer = sam_local_invoke("IngestFunction", "ingest_webhook_batch.json")

    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["accepted"] == 4
    assert stack.queue_depth("IngestQueue") >= 1
