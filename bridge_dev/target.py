"""Which Segment Bridge the CLI talks to: the local stack (an AWS endpoint such as moto's) or a deployed
stack (found by name in CloudFormation, with credentials from the usual AWS chain).

Either way the answer is the environment template.yaml gives the functions, resolved against that
stack's resources, so the CLI reads and writes exactly what the functions do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bridge_dev.template import LOCAL_AWS_PORT, LocalResources, find_resources, load_template
from segment_bridge.settings import Settings
from segment_bridge.store import Store

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

LOCAL_ENDPOINT = f"http://127.0.0.1:{LOCAL_AWS_PORT}"
LOCAL_REGION = "us-east-1"
FAKE_CREDENTIAL = "testing"  # what the embedded AWS (moto) takes as any access key, secret or token
LOCAL_PROBE_CONFIG = Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 1})
"""How the CLI looks for the local stack: a stack that is not running is said at once (a refused
connection fails at once), not after botocore's retries (about 27 s for DynamoDB's ten); a stack busy
starting, slow to accept, is given five seconds (one second was too short on a loaded machine)."""
# Resource types whose physical id is what Ref gives in the functions' environment.
_REF_TYPES = {
    "AWS::DynamoDB::Table": "tables",
    "AWS::SQS::Queue": "queue_urls",
    "AWS::S3::Bucket": "buckets",
}


class TargetError(RuntimeError):
    """The stack cannot be found or read."""


@dataclass(frozen=True)
class Target:
    description: str
    resources: LocalResources
    session: boto3.session.Session = field(repr=False)
    endpoint_url: str | None = None

    @cached_property
    def environment(self) -> dict[str, str]:
        """The functions' environment (template.yaml's Globals), resolved for this stack."""
        return self.resources.environment()

    @cached_property
    def settings(self) -> Settings:
        return Settings.model_validate(self.environment)

    @cached_property
    def store(self) -> Store:
        return Store(settings=self.settings, endpoint_url=self.endpoint_url, session=self.session)

    def aws_environment(self) -> dict[str, str]:
        """What a function's process needs to reach this stack's AWS with this target's credentials."""
        credentials = self.session.get_credentials()
        region = self.session.region_name or LOCAL_REGION
        environment = {"AWS_DEFAULT_REGION": region, "AWS_REGION": region}
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            environment["AWS_ACCESS_KEY_ID"] = str(frozen.access_key)
            environment["AWS_SECRET_ACCESS_KEY"] = str(frozen.secret_key)
            if frozen.token:
                environment["AWS_SESSION_TOKEN"] = frozen.token
        if self.endpoint_url:
            environment["AWS_ENDPOINT_URL"] = self.endpoint_url
        return environment


def local_target(endpoint: str = LOCAL_ENDPOINT) -> Target:
    """The local stack whose embedded AWS listens on `endpoint` (`make dev` starts it)."""
    session = boto3.session.Session(
        aws_access_key_id=FAKE_CREDENTIAL,
        aws_secret_access_key=FAKE_CREDENTIAL,
        region_name=LOCAL_REGION,
    )
    resources = find_resources(session, endpoint_url=endpoint, config=LOCAL_PROBE_CONFIG)
    return Target(f"the local stack at {endpoint}", resources, session, endpoint)


def deployed_target(stack_name: str, region: str | None = None, profile: str | None = None) -> Target:
    """A deployed stack, by name: its resources' physical ids stand in for the template's Refs."""
    session = boto3.session.Session(region_name=region, profile_name=profile)
    if not session.region_name:
        raise TargetError("No AWS region: pass --region or set AWS_REGION.")
    cloudformation: CloudFormationClient = session.client("cloudformation")
    names: dict[str, dict[str, str]] = {kind: {} for kind in _REF_TYPES.values()}
    try:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
            for resource in page["StackResourceSummaries"]:
                kind = _REF_TYPES.get(resource["ResourceType"])
                if kind and resource.get("PhysicalResourceId"):
                    names[kind][resource["LogicalResourceId"]] = resource["PhysicalResourceId"]
    except (ClientError, BotoCoreError) as error:
        raise TargetError(f"Stack {stack_name} cannot be read: {error}") from None
    account = stack["StackId"].split(":")[4]
    resources = LocalResources(
        tables=names["tables"],
        queue_urls=names["queue_urls"],
        queue_arns={},
        buckets=names["buckets"],
        template=load_template(),
        pseudo_parameters={
            "AWS::StackName": stack_name,
            "AWS::Region": session.region_name,
            "AWS::AccountId": account,
            "AWS::Partition": stack["StackId"].split(":")[1],
            "AWS::URLSuffix": "amazonaws.com",
        },
        parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])},
    )
    return Target(f"stack {stack_name} ({session.region_name})", resources, session)
