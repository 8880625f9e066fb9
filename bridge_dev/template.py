"""template.yaml as the single source of the local resources: tests and the local stack build from it.

`create_resources` creates the template's DynamoDB tables, SQS queues and S3 bucket on an AWS endpoint
(moto, in process or in server mode), each named after its logical id, and `LocalResources.environment`
resolves the functions' environment (Globals.Function.Environment.Variables) against them. Nothing is
copied from the template by hand, so the tests and the deployment cannot drift apart.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
import yaml
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

TEMPLATE_PATH = (Path(__file__).resolve().parent / "template.yaml").resolve()
"""The repository's template.yaml (bridge_dev/template.yaml links to it), or, once `pip install ".[cli]"` has
installed the package, the copy of it the wheel carries."""
DEFAULT_BUCKET_NAME = "segment-bridge-archive"
LOCAL_AWS_PORT = 5000
"""The local stack's embedded AWS (moto_server) port: `make dev` serves on it; the CLI and env.json use it."""
LOCAL_PARAMETERS = {"SegmentEndpoints": "local"}
"""The local stack's parameter overrides (as `sam deploy --parameter-overrides` gives a deployed one): its
Segment stand-in listens on plain http on 127.0.0.1, which only SegmentEndpoints=local lets the emitter
send to. A deployed stack's own parameters replace these."""

# SQS queue properties that map one to one onto queue attributes of the same name.
_QUEUE_ATTRIBUTES: tuple[QueueAttributeNameType, ...] = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "SqsManagedSseEnabled",
)
_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


class TemplateError(ValueError):
    """The template uses something these helpers cannot create or resolve locally."""


# ---------------------------------------------------------------------------------------------- loading


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation's short-form tags into their long form (`!Ref X` -> {"Ref": X}).

    Dates stay strings (AWSTemplateFormatVersion), as CloudFormation reads them.
    """


def _construct_node(loader: CfnLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node.tag}", node.start_mark)


def _intrinsic(key: str) -> Any:
    def construct(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
        return {key: _construct_node(loader, node)}

    return construct


def _get_att(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
    value = _construct_node(loader, node)
    if isinstance(value, str):
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {"Fn::GetAtt": value}


CfnLoader.add_constructor("!Ref", _intrinsic("Ref"))
CfnLoader.add_constructor("!Condition", _intrinsic("Condition"))
CfnLoader.add_constructor("!GetAtt", _get_att)
for _name in (
    "Sub",
    "FindInMap",
    "If",
    "Equals",
    "Join",
    "Select",
    "Split",
    "Not",
    "And",
    "Or",
    "Base64",
    "ImportValue",
    "GetAZs",
):
    CfnLoader.add_constructor(f"!{_name}", _intrinsic(f"Fn::{_name}"))


def _timestamp_as_string(loader: CfnLoader, node: yaml.Node) -> Any:
    return _construct_node(loader, node)


CfnLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_string)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as plain dicts, with intrinsic functions in their long (JSON) form.

    The file is parsed once per process (again only if it changes); each caller gets its own copy, so
    what one changes no other sees."""
    stat = path.stat()
    return copy.deepcopy(_parse_template(path.resolve(), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _parse_template(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    """The parsed file; `mtime_ns` and `size` are there to key the cache (an edited file parses again)."""
    with path.open(encoding="utf-8") as stream:
        template = yaml.load(stream, Loader=CfnLoader)  # noqa: S506  # nosec B506  # a SafeLoader subclass
    if not isinstance(template, dict):
        raise TemplateError(f"{path} is not a CloudFormation template")
    return template


def _resources_of_type(template: Mapping[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == type_
    }


# ---------------------------------------------------------------------------------------------- resolving


PSEUDO_PARAMETERS = {
    "AWS::StackName": "segment-bridge-local",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
"""What CloudFormation's pseudo parameters are on the local stack (moto's default account and region)."""
NO_VALUE: Any = object()
"""What `Ref: AWS::NoValue` resolves to: the property (here, the variable) is left out."""


@dataclass(frozen=True)
class LocalResources:
    """What `create_resources` made, by logical id, and the functions' environment resolved against it."""

    tables: Mapping[str, str]
    queue_urls: Mapping[str, str]
    queue_arns: Mapping[str, str]
    buckets: Mapping[str, str]
    template: Mapping[str, Any] = field(repr=False, compare=False)
    pseudo_parameters: Mapping[str, str] = field(default_factory=lambda: PSEUDO_PARAMETERS, repr=False)
    parameters: Mapping[str, str] = field(default_factory=lambda: dict(LOCAL_PARAMETERS), repr=False)
    """Parameter values that override the template's defaults (the local stack's, or a deployed stack's)."""

    def environment(self) -> dict[str, str]:
        """Globals.Function.Environment.Variables of the template, resolved for these resources (a variable
        whose value is AWS::NoValue is left out, as CloudFormation leaves it out)."""
        variables = (
            self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        )
        resolved = {name: self.resolve(value) for name, value in variables.items()}
        return {name: _as_string(value) for name, value in resolved.items() if value is not NO_VALUE}

    def resolve(self, value: Any) -> Any:
        """Resolve Ref, Fn::GetAtt, Fn::FindInMap and Fn::Sub over the local resources and the defaults."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {key: self.resolve(item) for key, item in value.items()}
        [(key, argument)] = value.items()
        if key == "Ref":
            return self._ref(argument)
        if key == "Fn::GetAtt":
            resource, attribute = argument
            return self._get_att(resource, attribute)
        if key == "Fn::FindInMap":
            mapping, first, second = (self.resolve(part) for part in argument)
            try:
                return self.template["Mappings"][mapping][first][second]
            except KeyError as error:
                raise TemplateError(f"no mapping {mapping}.{first}.{second} in the template") from error
        if key == "Fn::If":
            condition, if_true, if_false = argument
            return self.resolve(if_true if self.condition(condition) else if_false)
        if key == "Fn::Sub" and isinstance(argument, str):
            return _SUB_VARIABLE.sub(lambda match: _as_string(self._sub_variable(match.group(1))), argument)
        if key.startswith("Fn::") or key == "Condition":
            raise TemplateError(f"{key} is not resolved locally")
        return {key: self.resolve(argument)}

    def condition(self, name: str) -> bool:
        """A condition of the template, evaluated over the parameters' values."""
        try:
            return self._truth(self.template["Conditions"][name])
        except KeyError as error:
            raise TemplateError(f"no condition {name} in the template") from error

    def _truth(self, value: Any) -> bool:
        [(key, argument)] = value.items()
        if key == "Condition":
            return self.condition(argument)
        if key == "Fn::Equals":
            first, second = (self.resolve(part) for part in argument)
            return bool(_as_string(first) == _as_string(second))
        if key == "Fn::Not":
            return not self._truth(argument[0])
        if key == "Fn::And":
            return all(self._truth(part) for part in argument)
        if key == "Fn::Or":
            return any(self._truth(part) for part in argument)
        raise TemplateError(f"{key} is not a condition function")

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo_parameters:
            return self.pseudo_parameters[name]
        for names in (self.tables, self.queue_urls, self.buckets, self.parameters):
            if name in names:
                return names[name]
        parameter = self.template.get("Parameters", {}).get(name)
        if parameter is not None:
            if "Default" not in parameter:
                raise TemplateError(f"parameter {name} has no default")
            return parameter["Default"]
        raise TemplateError(f"Ref {name} is not a local resource or a parameter")

    def _get_att(self, resource: str, attribute: str) -> str:
        if resource in self.queue_arns and attribute == "Arn":
            return self.queue_arns[resource]
        if resource in self.queue_urls and attribute == "QueueName":
            return resource
        if resource in self.queue_urls and attribute == "QueueUrl":
            return self.queue_urls[resource]
        raise TemplateError(f"Fn::GetAtt {resource}.{attribute} is not resolved locally")

    def _sub_variable(self, name: str) -> Any:
        resource, dot, attribute = name.partition(".")
        return self._get_att(resource, attribute) if dot else self._ref(name)


def _as_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"{value!r} does not resolve to a string")


# ---------------------------------------------------------------------------------------------- creating


def create_resources(
    session: boto3.session.Session | None = None,
    template: dict[str, Any] | None = None,
    *,
    endpoint_url: str | None = None,
    bucket_name: str = DEFAULT_BUCKET_NAME,
) -> LocalResources:
    """Create the template's tables, queues and bucket (reusing any that exist) named by logical id.

    The bucket is named `bucket_name` (with `-<logical id>` appended if the template ever has several).
    """
    session = session or boto3.session.Session()
    template = template if template is not None else load_template()
    dynamodb = session.client("dynamodb", endpoint_url=endpoint_url)
    sqs = session.client("sqs", endpoint_url=endpoint_url)
    s3 = session.client("s3", endpoint_url=endpoint_url)

    tables = {
        logical_id: _create_table(dynamodb, logical_id, resource.get("Properties", {}))
        for logical_id, resource in _resources_of_type(template, "AWS::DynamoDB::Table").items()
    }
    bucket_resources = _resources_of_type(template, "AWS::S3::Bucket")
    buckets = {
        logical_id: _create_bucket(
            s3,
            bucket_name if len(bucket_resources) == 1 else f"{bucket_name}-{logical_id.lower()}",
            session.region_name,
        )
        for logical_id in bucket_resources
    }
    resources = LocalResources(
        tables=tables, queue_urls={}, queue_arns={}, buckets=buckets, template=template
    )
    return _create_queues(sqs, resources, _resources_of_type(template, "AWS::SQS::Queue"))


class NoLocalStack(RuntimeError):
    """The endpoint does not hold the template's resources (the local stack is not running there)."""


def find_resources(
    session: boto3.session.Session | None = None,
    template: dict[str, Any] | None = None,
    *,
    endpoint_url: str | None = None,
    bucket_name: str = DEFAULT_BUCKET_NAME,
    config: Config | None = None,
) -> LocalResources:
    """The resources `create_resources` made on an endpoint, found without creating anything.

    `config` is the botocore configuration of the clients that look (timeouts, retries)."""
    session = session or boto3.session.Session()
    template = template if template is not None else load_template()
    sqs = session.client("sqs", endpoint_url=endpoint_url, config=config)
    tables = {name: name for name in _resources_of_type(template, "AWS::DynamoDB::Table")}
    bucket_resources = _resources_of_type(template, "AWS::S3::Bucket")
    buckets = {
        name: bucket_name if len(bucket_resources) == 1 else f"{bucket_name}-{name.lower()}"
        for name in bucket_resources
    }
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    try:
        session.client("dynamodb", endpoint_url=endpoint_url, config=config).describe_table(
            TableName=next(iter(tables))
        )
        for name in _resources_of_type(template, "AWS::SQS::Queue"):
            urls[name] = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            arns[name] = sqs.get_queue_attributes(QueueUrl=urls[name], AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
    except (ClientError, BotoCoreError) as error:
        raise NoLocalStack(f"no local stack at {endpoint_url} ({type(error).__name__})") from None
    return LocalResources(tables=tables, queue_urls=urls, queue_arns=arns, buckets=buckets, template=template)


def _create_table(client: DynamoDBClient, name: str, properties: Mapping[str, Any]) -> str:
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": properties["KeySchema"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    if "ProvisionedThroughput" in properties:
        request["ProvisionedThroughput"] = properties["ProvisionedThroughput"]
    if "GlobalSecondaryIndexes" in properties:
        request["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
    if "LocalSecondaryIndexes" in properties:
        request["LocalSecondaryIndexes"] = properties["LocalSecondaryIndexes"]
    if "StreamSpecification" in properties:
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": properties["StreamSpecification"]["StreamViewType"],
        }
    try:
        client.create_table(**request)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        current = client.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
        if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
    return name


def _create_bucket(client: S3Client, name: str, region: str | None) -> str:
    try:
        client.head_bucket(Bucket=name)
    except ClientError:
        if region in (None, "us-east-1"):
            client.create_bucket(Bucket=name)
        else:
            constraint = cast("BucketLocationConstraintType", region)
            client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": constraint})
    return name


def _create_queues(
    client: SQSClient, resources: LocalResources, queues: Mapping[str, Mapping[str, Any]]
) -> LocalResources:
    """Create queues in dependency order: a dead-letter queue before the queues that redrive to it."""
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    pending = dict(queues)
    while pending:
        current = LocalResources(
            tables=resources.tables,
            queue_urls=urls,
            queue_arns=arns,
            buckets=resources.buckets,
            template=resources.template,
        )
        ready = {
            name: queue
            for name, queue in pending.items()
            if _redrive_target(queue.get("Properties", {})) in (None, *arns)
        }
        if not ready:
            raise TemplateError(f"queues redrive to queues that are not in the template: {sorted(pending)}")
        for name, queue in ready.items():
            attributes = _queue_attributes(current, queue.get("Properties", {}))
            urls[name], arns[name] = _create_queue(client, name, attributes)
            del pending[name]
    return LocalResources(
        tables=resources.tables,
        queue_urls=urls,
        queue_arns=arns,
        buckets=resources.buckets,
        template=resources.template,
    )


def _redrive_target(properties: Mapping[str, Any]) -> str | None:
    target = properties.get("RedrivePolicy", {}).get("deadLetterTargetArn")
    if target is None:
        return None
    if isinstance(target, dict) and "Fn::GetAtt" in target:
        return str(target["Fn::GetAtt"][0])
    raise TemplateError(f"deadLetterTargetArn {target!r} is not a Fn::GetAtt of a queue")


def _queue_attributes(
    resources: LocalResources, properties: Mapping[str, Any]
) -> dict[QueueAttributeNameType, str]:
    attributes: dict[QueueAttributeNameType, str] = {
        name: _as_string(resources.resolve(properties[name]))
        for name in _QUEUE_ATTRIBUTES
        if name in properties
    }
    if "RedrivePolicy" in properties:
        attributes["RedrivePolicy"] = json.dumps(resources.resolve(properties["RedrivePolicy"]))
    return attributes


def _create_queue(
    client: SQSClient, name: str, attributes: dict[QueueAttributeNameType, str]
) -> tuple[str, str]:
    try:
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in (
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
        ):
            raise
        url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    else:
        client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn
