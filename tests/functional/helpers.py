"""Helpers the functional tests share (fault hooks, queue readers, the pipeline driver, table
snapshots): kept here, never imported from another test module."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from boto3.dynamodb.conditions import Attr
from botocore.awsrequest import AWSResponse

from bridge_dev.events import DEMO_API_KEY, http_event
from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from bridge_dev.runtime import LambdaContext, lambda_sqs_event
from segment_bridge.envelope import pack
from segment_bridge.ingest.intake import serialise
from segment_bridge.store import Store
from tests.conftest import lambda_function
from tests.functional.conftest import event, sample

T1 = "2026-01-01T10:00:00.000Z"


def links_past_the_receive_count() -> int:
    """One chunk of linked ids more than a delete erases in maxReceiveCount receives (one chunk of
    LINKS_PER_CHUNK a receive when its share of time is spent at once): a delete of a user with that many
    takes more receives than the IngestDLQ allows, so it finishes only if its unfinished receives are
    deferrals, not failures. No larger than that: moto makes each receive cost a second or two."""
    from bridge_dev.template import load_template
    from segment_bridge.privacy.deletion import LINKS_PER_CHUNK

    policy = load_template()["Resources"]["IngestQueue"]["Properties"]["RedrivePolicy"]
    return LINKS_PER_CHUNK * (int(policy["maxReceiveCount"]) + 1)


AUTH = {"authorization": f"Bearer {DEMO_API_KEY}"}
BOOKKEEPING = ("version", "updated_at", "workspace_id", "pending", "by")
"""What records how the state was written, not what it is: write count, time, the write-ahead list, and
which deleted user's erase reached a linked id first (`by` on a tombstone: when two deleted users share
an id and are deleted as of the same time, either may reach it first; either one's purge removes that
id's events). Tombstones (deleted_at, status) and the ids a deleted user took (IDGONE#) are compared."""


def state(workspace_id: str, tables: list[str]) -> list[str]:
    """Every item of the workspace (maps in key order), less what only counts writes (version, updated_at).

    The scan's filter keeps the other examples' workspaces out of moto's answer: serialising them all
    again on every example made the property quadratic in its examples."""
    dynamodb = boto3.resource("dynamodb")
    prefix = f"WS#{workspace_id}#"
    items = []
    for table in tables:
        found: list[dict[str, Any]] = []
        page: dict[str, Any] = {"FilterExpression": Attr("pk").begins_with(prefix)}
        while True:  # a scan answers at most 1 MB of the table: the examples' workspaces add up past it
            answer = dynamodb.Table(table).scan(**page)
            found += answer["Items"]
            if "LastEvaluatedKey" not in answer:
                break
            page["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        for item in found:
            if not str(item["pk"]).startswith(prefix) or str(item["pk"]).endswith(("#PURGE", "#DELETED_IDS")):
                # PURGE items are the archive purge's work list, consumed by it: not state; the deleted
                # ids' index may hold more keys in one order than in another (a key indexed whose
                # tombstone a later deletion refused): an extra key only costs a read
                continue
            kept = {k: v for k, v in item.items() if k not in BOOKKEEPING}
            items.append(json.dumps(kept, sort_keys=True, default=str).replace(prefix, "WS#_#"))
    return sorted(items)


def take(aws: Any) -> list[dict[str, Any]]:
    """Every message visible on the IngestQueue, received (as Lambda's poller receives them)."""
    sqs = boto3.client("sqs")
    messages: list[dict[str, Any]] = []
    while got := sqs.receive_message(
        QueueUrl=aws.queue_urls["IngestQueue"],
        MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["All"],
    ).get("Messages", []):
        messages += got
    return messages


class Pipeline:
    def __init__(self, aws: Any, store: Any) -> None:
        self.aws, self.store = aws, store
        self.processor = lambda_function("ProcessorFunction")
        self.ingest = lambda_function("IngestFunction")
        self.sqs, self.s3 = boto3.client("sqs"), boto3.client("s3")
        self.bucket = aws.buckets["ArchiveBucket"]

    def send(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Ingest one batch; the queue messages it produced (taken off the queue)."""
        answer = self.ingest.invoke(http_event("/v1/batch", json.dumps({"batch": batch}), headers=AUTH))
        assert answer["statusCode"] in (200, 400), answer
        return self.taken()

    def taken(self) -> list[dict[str, Any]]:
        """The messages on the IngestQueue, taken off it."""
        url = self.aws.queue_urls["IngestQueue"]
        messages = []
        while got := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in got:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                messages.append({**message, "MD5OfBody": "x"})
        return messages

    def process(self, messages: list[dict[str, Any]]) -> list[str]:
        """The ids of the messages the processor failed."""
        self.processor.module.mappings.cache_clear()
        try:
            answer = self.processor.invoke(lambda_sqs_event(self.aws.queue_arns["IngestQueue"], messages))
        except BatchProcessingError:  # every record failed
            return [m["MessageId"] for m in messages]
        return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]

    def forget_everything(self) -> None:
        """Empty the tables and the bucket of what earlier examples left (hypothesis reruns a failing
        example on its own, which it can only reproduce if no example sees another's items)."""
        dynamodb = boto3.resource("dynamodb")
        for name in (self.store.settings.profiles_table, self.store.settings.events_table):
            table = dynamodb.Table(name)
            with table.batch_writer() as batch:
                for item in table.scan(ProjectionExpression="pk, sk")["Items"]:
                    batch.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
        for obj in self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", []):
            self.s3.delete_object(Bucket=self.bucket, Key=obj["Key"])
        self.store.profiles.start_deleted_ids(WS)  # as a new workspace has it: deletes go through it

    def unapplied(self) -> list[dict[str, Any]]:
        records = []
        for obj in self.s3.list_objects_v2(Bucket=self.bucket, Prefix="unapplied/").get("Contents", []):
            data = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
            records += [json.loads(line) for line in gzip.decompress(data).splitlines()]
            self.s3.delete_object(Bucket=self.bucket, Key=obj["Key"])
        return records


def aws_error(code: str, status: int = 400) -> tuple[AWSResponse, dict[str, Any]]:
    """What botocore makes of an AWS error answer (a before-call hook's return short-circuits the call)."""
    parsed = {
        "Error": {"Code": code, "Message": f"injected {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", status, {}, None), parsed


@contextmanager
def before_call(
    store: Store, operations: tuple[str, ...], hook: Callable[[str, dict[str, Any]], Any]
) -> Iterator[None]:
    """Run `hook(operation, request)` before each of the store's DynamoDB calls of `operations` (`request`
    is the call's JSON body); what it returns (if anything) is AWS's answer instead of the real one."""
    client = store.clients.dynamodb  # the client the processor's store uses

    def handler(model: Any, params: dict[str, Any], **_: Any) -> Any:
        if model.name in operations:
            return hook(model.name, json.loads(params["body"]))
        return None

    client.meta.events.register("before-call.dynamodb", handler, unique_id="fault")
    try:
        yield
    finally:
        client.meta.events.unregister("before-call.dynamodb", unique_id="fault")


def exactly_once(store: Store, user: str, names: dict[str, int]) -> None:
    """The user's counts are `names` and each counted event has exactly one history item."""
    assert store.read_profile(WS, "U", user).counts == names  # type: ignore[union-attr]
    history = store.read_history(WS, "U", user)
    assert len(history) == sum(names.values())
    assert len({item["sk"] for item in history}) == len(history)


def refusing_history_item(message_id: str) -> Callable[[str, dict[str, Any]], Any]:
    """A before_call hook: DynamoDB refuses (ValidationException) every batch write holding the history
    item of `message_id`."""

    def refuse(operation: str, body: dict[str, Any]) -> Any:
        items = [r for table in body["RequestItems"].values() for r in table]
        if any(
            r.get("PutRequest", {}).get("Item", {}).get("sk", {}).get("S") == f"MSG#{message_id}"
            for r in items
        ):
            return aws_error("ValidationException")
        return None

    return refuse


def receive_all(queue_url: str) -> list[dict]:
    sqs = boto3.client("sqs")
    messages = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        messages.extend(batch)
    return messages


class RunningOut(LambdaContext):
    """An invocation whose time runs out after its first message: plenty left at the first look, then
    less than any message needs."""

    def __init__(self) -> None:
        super().__init__("ProcessorFunction", 1769, 60, "req-running-out")
        self.looks = 0

    def get_remaining_time_in_millis(self) -> int:
        self.looks += 1
        return 60_000 if self.looks == 1 else 100


def archived(aws) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=aws.buckets["ArchiveBucket"], Prefix="raw/")
    return [obj["Key"] for obj in listed.get("Contents", [])]


def messages_of_three_users() -> list[dict[str, str]]:
    """Three queue messages, one user each, as intake packs them."""
    return [
        {
            "MessageId": f"msg-{user}",
            "ReceiptHandle": f"rh-{user}",
            "Body": pack(
                [serialise(event("track", f"{user}-{n}", T1, user=user, event="Viewed")) for n in range(3)],
                workspace_id=WS,
                request_id=f"req-{user}",
                received_at=T1,
                max_bytes=262_144,
            )[0],
            "MD5OfBody": "x",
        }
        for user in ("user-a", "user-b", "user-c")
    ]


def now_delivery(name: str) -> dict[str, Any]:
    """A committed ingest event, received now (tail and stats look at today)."""
    event = sample(name)
    event["requestContext"]["timeEpoch"] = int(time.time() * 1000)
    event["requestContext"]["requestId"] = f"{name}-{time.time_ns()}"
    return event


def process_the_queue(aws) -> None:
    sqs = boto3.client("sqs")
    url = aws.queue_urls["IngestQueue"]
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        lambda_function("ProcessorFunction").invoke(lambda_sqs_event(aws.queue_arns["IngestQueue"], messages))
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)],
        )
