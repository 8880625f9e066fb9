"""What every repository shares: lazy boto3 clients, item (de)serialisation, DynamoDB's batch and query
calls within AWS's limits, and the one place AWS errors become ours (`aws_errors`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

import boto3
import botocore
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from segment_bridge.concurrency import each_at_once
from segment_bridge.errors import BridgeError, ConditionFailed, NotFound, ServiceUnavailable, Unstorable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

BATCH_THREADS = 8
"""Batch calls of one batch_get or batch_write in flight together (more than a message needs: a full
message's history is about 150 BatchWriteItem calls, its profiles and history keys 40-80 BatchGetItem)."""
USER_AGENT = f"segment-bridge Botocore/{botocore.__version__}"
CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"max_attempts": 3, "mode": "standard"},
    # The processor's entity writers and batch calls share one client from threads: one connection each
    # (botocore's default pool of 10 would make the rest wait, or open and drop connections).
    max_pool_connections=32,
    # botocore rebuilds its default User-Agent (about 30 sanitised components) twice per call, a quarter
    # of its own CPU per call; a User-Agent of our own (Config.user_agent, sent as given) is built once.
    user_agent=USER_AGENT,
)
DYNAMODB_CONFIG = CLIENT_CONFIG.merge(Config(parameter_validation=False))
"""DynamoDB's client skips botocore's check of each request against the API's shapes (a fifth of its
CPU per call; Config.parameter_validation). Nothing it checks depends on data: every attribute value is
made by `item` (TypeSerializer: the types DynamoDB's API declares), keys are text, and the lists it
requires non-empty (a batch's keys or items, a transaction's actions) are built non-empty; DynamoDB
still refuses whatever is invalid (ValidationException: Unstorable). The other services keep the check:
an S3 key, say, becomes part of a URL."""
BATCH_GET_KEYS = 100
"""BatchGetItem's limit per request (and 16 MB per response: 100 profiles at DynamoDB's 400 KB item
limit is 40 MB, so a response may come back partial; UnprocessedKeys are asked for again)."""
BATCH_WRITE_ITEMS = 25
"""BatchWriteItem's limit per request (moto takes 26: the limit is ours to keep)."""
UNPROCESSED_PAUSE_SECONDS = 0.05

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

Sleep = Callable[[float], None]


class Clients:
    """One boto3 client per service, made on first use (never at import) and shared by every repository
    of a Store. `session` and `endpoint_url` aim them at a stack of the caller's choosing (the CLI)."""

    def __init__(self, session: boto3.session.Session | None = None, endpoint_url: str | None = None) -> None:
        self.session = session
        self.endpoint_url = endpoint_url
        self._lock = threading.Lock()
        self._made: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        """The service's client, made once, under a lock: the processor's and the emitter's threads may
        ask for it first together, and boto3's default session is not safe to make clients from at once."""
        with self._lock:
            if service not in self._made:
                factory = self.session.client if self.session is not None else boto3.client
                config = DYNAMODB_CONFIG if service == "dynamodb" else CLIENT_CONFIG
                self._made[service] = factory(  # type: ignore[call-overload]
                    service, config=config, endpoint_url=self.endpoint_url
                )
            return self._made[service]

    @property
    def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self._client("dynamodb")
        return client

    @property
    def sqs(self) -> SQSClient:
        client: SQSClient = self._client("sqs")
        return client

    @property
    def secrets(self) -> SecretsManagerClient:
        client: SecretsManagerClient = self._client("secretsmanager")
        return client

    @property
    def s3(self) -> S3Client:
        client: S3Client = self._client("s3")
        return client

    @property
    def streams(self) -> DynamoDBStreamsClient:
        client: DynamoDBStreamsClient = self._client("dynamodbstreams")
        return client


@contextlib.contextmanager
def aws_errors(failure: str, *, refused: Mapping[str, BridgeError] | None = None) -> Iterator[None]:
    """Turn what AWS raises into our errors, in one place:
    - an error code listed in `refused` -> that error;
    - a condition that did not hold (ConditionalCheckFailed, a cancelled transaction) -> ConditionFailed;
    - an item or key DynamoDB refuses as invalid (ValidationException) -> Unstorable;
    - anything else, ClientError or BotoCoreError (throttling, timeouts, outages) -> ServiceUnavailable.
    `failure` says what could not be done; it never quotes the data."""
    try:
        yield
    except ClientError as error:
        code = error_code(error)
        if refused and code in refused:
            raise refused[code] from None
        if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
            raise ConditionFailed(failure) from None
        if code == "ValidationException":
            raise Unstorable(failure) from None
        raise ServiceUnavailable(failure) from error
    except BotoCoreError as error:
        raise ServiceUnavailable(failure) from error


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def item(values: Mapping[str, Any]) -> dict[str, Any]:
    """Python values as a DynamoDB item (None values left out)."""
    return {name: _attribute(value) for name, value in values.items() if value is not None}


def plain(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as Python values (numbers as Decimal)."""
    return {name: _value(value) for name, value in stored.items()}


def _attribute(value: Any) -> Any:
    """TypeSerializer's answer, with text, dicts and lists (most of every item) made here: a third of
    its CPU. Anything else (numbers, sets, binary, subclasses) is TypeSerializer's own."""
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is dict:
        return {"M": {name: _attribute(member) for name, member in value.items()}}
    if kind is list:
        return {"L": [_attribute(member) for member in value]}
    return _serializer.serialize(value)


def _value(attribute: Any) -> Any:
    """TypeDeserializer's answer, with text, maps and lists made here; anything else is its own."""
    if type(attribute) is dict and len(attribute) == 1:
        if "S" in attribute:
            return attribute["S"]
        if "M" in attribute:
            return {name: _value(member) for name, member in attribute["M"].items()}
        if "L" in attribute:
            return [_value(member) for member in attribute["L"]]
    return _deserializer.deserialize(attribute)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@lru_cache(maxsize=1)
def _batch_pool() -> ThreadPoolExecutor:
    """Threads for batch calls in flight together (made on first use, never at import)."""
    return ThreadPoolExecutor(max_workers=BATCH_THREADS, thread_name_prefix="batch")


def all_at_once(calls: list[Callable[[], list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Every call's items, the calls BATCH_THREADS at a time (concurrency.each_at_once)."""
    return [found for items in each_at_once(calls, _batch_pool) for found in items]


def batch_get(
    client: DynamoDBClient,
    table: str,
    keys: list[dict[str, Any]],
    sleep: Sleep,
    *,
    projection: str | None = None,
    failure: str = "Items cannot be read right now.",
) -> Iterator[dict[str, Any]]:
    """Strongly consistent BatchGetItem of any number of keys (each asked once: DynamoDB refuses a
    request naming a key twice), 100 keys a call, the calls in flight together; unprocessed keys
    retried."""
    keys = list({repr([key.get(name) for name in KEY_ATTRIBUTES]): key for key in keys}.values())

    def get(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        wanted: dict[str, Any] = {"Keys": [item(key) for key in chunk], "ConsistentRead": True}
        if projection:
            wanted["ProjectionExpression"] = projection
        request: dict[str, Any] = {table: wanted}
        out = []
        while request:
            with aws_errors(failure):
                response = client.batch_get_item(RequestItems=request)
            out += [plain(found) for found in response.get("Responses", {}).get(table, [])]
            request = dict(response.get("UnprocessedKeys") or {})
            if request:
                sleep(UNPROCESSED_PAUSE_SECONDS)
        return out

    chunks = [keys[start : start + BATCH_GET_KEYS] for start in range(0, len(keys), BATCH_GET_KEYS)]
    yield from all_at_once([partial(get, chunk) for chunk in chunks])


def batch_write(
    client: DynamoDBClient,
    requests: list[tuple[str, dict[str, Any]]],
    sleep: Sleep,
    *,
    failure: str = "Items cannot be written right now.",
) -> None:
    """BatchWriteItem of any number of (table, PutRequest or DeleteRequest), 25 a call, the calls in
    flight together; unprocessed items retried. DynamoDB refuses a request naming one key twice, so
    requests for the same key are made one first: the last request for a key wins, as it would if they
    were written one after another."""
    requests = distinct_keys(requests)

    def write(chunk: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        request: dict[str, Any] = {}
        for table, entry in chunk:
            request.setdefault(table, []).append(entry)
        while request:
            with aws_errors(failure):
                response = client.batch_write_item(RequestItems=request)
            request = dict(response.get("UnprocessedItems") or {})
            if request:
                sleep(UNPROCESSED_PAUSE_SECONDS)
        return []

    chunks = [
        requests[start : start + BATCH_WRITE_ITEMS] for start in range(0, len(requests), BATCH_WRITE_ITEMS)
    ]
    all_at_once([partial(write, chunk) for chunk in chunks])


KEY_ATTRIBUTES = ("pk", "sk")
"""Every table's key (template.yaml)."""


def distinct_keys(requests: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """One request per (table, key): the last one given for it, in the order of those last requests."""
    latest: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for table, entry in requests:
        values = entry["DeleteRequest"]["Key"] if "DeleteRequest" in entry else entry["PutRequest"]["Item"]
        key = repr([values.get(name) for name in KEY_ATTRIBUTES])
        latest.pop((table, key), None)  # keep the order of the last request for the key
        latest[(table, key)] = (table, entry)
    return list(latest.values())


def query(
    client: DynamoDBClient,
    table: str,
    condition: str,
    values: dict[str, Any],
    *,
    index: str | None = None,
    failure: str = "Items cannot be read right now.",
) -> list[dict[str, Any]]:
    """Every item a key condition selects, all pages."""
    arguments: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": item(values),
    }
    if index:
        arguments["IndexName"] = index
    with aws_errors(failure):
        pages = client.get_paginator("query").paginate(**arguments)
        return [plain(found) for page in pages for found in page.get("Items", [])]


def put_secret(clients: Clients, name: str, value: str, failure: str) -> None:
    """Secrets Manager's secret `name` holds `value` from now on (made if it is not there yet)."""
    try:
        with aws_errors(failure, refused={"ResourceNotFoundException": NotFound(name)}):
            clients.secrets.put_secret_value(SecretId=name, SecretString=value)
    except NotFound:
        with aws_errors(failure):
            clients.secrets.create_secret(Name=name, SecretString=value)


def get_secret(clients: Clients, name: str, failure: str) -> str | None:
    """Secrets Manager's secret `name`; None if there is none."""
    try:
        with aws_errors(failure, refused={"ResourceNotFoundException": NotFound(failure)}):
            return str(clients.secrets.get_secret_value(SecretId=name)["SecretString"])
    except NotFound:
        return None
