from __future__ import annotations

import base64
import contextlib
import copy
import gzip
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from bridge_dev.events import (
    DEMO_API_KEY,
    DEMO_WORKSPACE_ID,
    SIGNED_API_KEY,
    SIGNED_SHARED_SECRET,
    SIGNED_WORKSPACE_ID,
)
from bridge_dev.runtime import lambda_sqs_event, lambda_stream_record
from bridge_dev.segment_api import FakeSegment
from segment_bridge.envelope import unpack
from segment_bridge.ingest.spec import validate_event
from tests.conftest import ROOT, lambda_function

EVENTS = ROOT / "events"


def sample(name: str) -> dict[str, Any]:
    """A committed sample event (a fresh copy: tests may change it)."""
    return copy.deepcopy(json.loads(Path(EVENTS / name).read_text(encoding="utf-8")))


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def seed_links(aws: Any, user: str, count: int, at: str) -> None:
    """`count` anonymous ids (anon-0000, ...) linked to `user` at `at`, written straight to the table."""
    table = boto3.resource("dynamodb").Table(aws.tables["ProfilesTable"])
    with table.batch_writer() as batch:
        for n in range(count):
            batch.put_item(
                Item={
                    "pk": f"WS#{DEMO_WORKSPACE_ID}#LINK#anon-{n:04d}",
                    "sk": "LINK",
                    "user_id": user,
                    "stamp": f"{at}#m{n}",
                    "gsi1pk": f"WS#{DEMO_WORKSPACE_ID}#U#{user}",
                    "gsi1sk": f"LINK#anon-{n:04d}",
                }
            )


@pytest.fixture
def workspaces(aws):
    """The two workspaces the sample events authenticate as: one plain, one with a shared secret."""
    from segment_bridge.store import get_store

    store = get_store()
    store.create_workspace("Demo", workspace_id=DEMO_WORKSPACE_ID)
    store.issue_key(DEMO_WORKSPACE_ID, DEMO_API_KEY)
    store.create_workspace("Signed", workspace_id=SIGNED_WORKSPACE_ID)
    store.issue_key(SIGNED_WORKSPACE_ID, SIGNED_API_KEY)
    store.set_shared_secret(SIGNED_WORKSPACE_ID, SIGNED_SHARED_SECRET)
    return store


def body_text(event: dict[str, Any], limit: int = 16 * 1024 * 1024) -> str:
    """An API Gateway event's body as text, base64 and gzip undone (at most `limit` bytes inflated)."""
    body = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return str(body)
    try:
        data = base64.b64decode(body)
    except ValueError:
        return str(body)
    if data[:2] == b"\x1f\x8b":
        with contextlib.suppress(zlib.error):
            data = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(data, limit)
    return data.decode("utf-8", "replace")


@pytest.fixture
def ingest(workspaces, sensitive):
    """Calls the IngestFunction's lambda_handler as Lambda would, and reads its answer. The emails and
    phone numbers in what it sends must stay out of the logs."""
    function = lambda_function("IngestFunction")

    def call(event: dict[str, Any]) -> Answer:
        sensitive.scan(body_text(event))
        response = function.invoke(event)
        return Answer(response["statusCode"], json.loads(response["body"]), response.get("headers", {}))

    return call


@pytest.fixture
def queue(aws):
    """Reads what reached the ingest queue (and deletes it), decoded."""
    from segment_bridge.envelope import unpack

    sqs = boto3.client("sqs")

    class Queue:
        def messages(self) -> list[str]:
            bodies = []
            while True:
                got = sqs.receive_message(
                    QueueUrl=aws.queue_urls["IngestQueue"], MaxNumberOfMessages=10, WaitTimeSeconds=0
                ).get("Messages", [])
                if not got:
                    return bodies
                for message in got:
                    bodies.append(message["Body"])
                    sqs.delete_message(
                        QueueUrl=aws.queue_urls["IngestQueue"], ReceiptHandle=message["ReceiptHandle"]
                    )

        def events(self) -> list[dict[str, Any]]:
            return [event for body in self.messages() for event in unpack(body)[1]]

    return Queue()


# --- one delivery and everything it stored (hostile input, auth attacks) ---------------------------


DOCUMENTED = {200, 400, 401, 413, 415}
"""docs/ingest.md, "Answers" for a healthy AWS: 503 is for AWS faults, 500 for bugs."""
REFUSAL_FIELDS = {"code", "message", "details"}


@dataclass
class Delivery:
    answer: Answer
    queued: list[dict[str, Any]]
    kept: list[dict[str, Any]]
    workspaces: set[str]
    """The workspaces of the queue messages and of the kept records."""

    @property
    def status(self) -> int:
        return self.answer.status

    @property
    def code(self) -> str | None:
        code = self.answer.body.get("code")
        return code if isinstance(code, str) else None


def assert_well_behaved(delivery: Delivery) -> None:
    """A documented status and a JSON body; a 200 stored exactly what it counts, a refusal nothing (the
    events of an `invalid_events` answer, all rejected, are kept)."""
    answer = delivery.answer
    assert answer.status in DOCUMENTED, (answer.status, answer.body)
    assert answer.headers.get("Content-Type") == "application/json"
    if answer.status == 200:
        body = answer.body
        assert set(body) == {"success", "accepted", "rejected", "echoes"}
        assert body["success"] is True
        assert len(delivery.queued) == body["accepted"]
        assert sorted(k["index"] for k in delivery.kept) == [r["index"] for r in body["rejected"]]
        assert all(k["reason"] == r["reason"] for k, r in zip(delivery.kept, body["rejected"], strict=True))
        for event in delivery.queued:
            validate_event(event)
        return
    assert set(answer.body) <= REFUSAL_FIELDS
    assert isinstance(answer.body["code"], str)
    assert isinstance(answer.body["message"], str)
    assert answer.body["message"]
    assert delivery.queued == [], "a refused delivery queued events"
    if answer.body["code"] == "invalid_events":
        assert [k["index"] for k in delivery.kept] == [d["index"] for d in answer.body["details"]]
    else:
        assert delivery.kept == [], "a refused delivery kept events"


@pytest.fixture
def deliver(ingest, queue, aws) -> Callable[[dict[str, Any]], Delivery]:
    """Sends one API Gateway event; returns the answer, what reached the queue and what was kept under
    rejected/ (both then removed, so each hypothesis example starts from empty)."""
    s3 = boto3.client("s3")
    bucket = aws.buckets["ArchiveBucket"]

    def kept() -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for obj in s3.list_objects_v2(Bucket=bucket, Prefix="rejected/").get("Contents", []):
            data = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            records += [json.loads(line) for line in gzip.decompress(data).splitlines()]
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
        return records

    def send(event: dict[str, Any]) -> Delivery:
        answer = ingest(event)
        messages = [unpack(body) for body in queue.messages()]
        records = kept()
        delivery = Delivery(
            answer,
            [event for _, events in messages for event in events],
            records,
            {envelope.workspaceId for envelope, _ in messages} | {r["workspaceId"] for r in records},
        )
        assert_well_behaved(delivery)
        return delivery

    return send


def stream_lambda_event(table_name: str) -> dict[str, Any]:
    """Every record of a table's stream, read from moto, in the shape Lambda's stream event source uses."""
    dynamodb = boto3.client("dynamodb")
    streams = boto3.client("dynamodbstreams")
    stream_arn = dynamodb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    records = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += [
            lambda_stream_record(r, stream_arn)
            for r in streams.get_records(ShardIterator=iterator)["Records"]
        ]
    return {"Records": records}


@pytest.fixture
def processor(aws, workspaces, sensitive):
    """Delivers events to the ProcessorFunction as queue messages packed the way intake packs them."""
    from segment_bridge.envelope import pack
    from segment_bridge.ingest.intake import serialise

    function = lambda_function("ProcessorFunction")

    def deliver(
        events: list[dict[str, Any]], workspace_id: str = DEMO_WORKSPACE_ID, message_id: str = "msg-1"
    ):
        sensitive.scan(json.dumps(events))
        bodies = pack(
            [serialise(event) for event in events],
            workspace_id=workspace_id,
            request_id="req-1",
            received_at="2026-01-01T00:00:00.000Z",
            max_bytes=262_144,
        )
        messages = [
            {"MessageId": f"{message_id}-{n}", "ReceiptHandle": f"rh-{n}", "Body": body, "MD5OfBody": "x"}
            for n, body in enumerate(bodies)
        ]
        return function.invoke(lambda_sqs_event(aws.queue_arns["IngestQueue"], messages))

    return deliver


def event(
    kind: str, message_id: str, timestamp: str, user: str | None = "user-1", **fields: Any
) -> dict[str, Any]:
    """An event as intake queues it (messageId, timestamp and receivedAt set)."""
    out: dict[str, Any] = {
        "type": kind,
        "messageId": message_id,
        "timestamp": timestamp,
        "receivedAt": timestamp,
    }
    if user:
        out["userId"] = user
    return out | fields


# --- the operator CLI on moto -------------------------------------------------------------------------


@dataclass
class Run:
    status: int
    out: str
    err: str

    @property
    def error(self) -> dict[str, Any]:
        body = json.loads(self.err.strip().split("\n")[-1])
        assert set(body) == {"code", "message"}, body
        assert body["message"], body
        return body

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def sb(aws, boto_session, workspaces, monkeypatch, capsys) -> Callable[..., Run]:
    """`sb(*args)`: segment-bridge (bridge_dev.cli.main, what the console script calls) against the moto
    stack with the sample events' workspaces, with --json unless told otherwise."""
    from bridge_dev.cli import app as cli
    from bridge_dev.target import Target

    target = Target("the moto stack", aws, boto_session)
    monkeypatch.setattr(cli, "local_target", lambda endpoint: target)

    def run(*args: str, json_flag: bool = True) -> Run:
        capsys.readouterr()
        status = cli.main([*args, *(["--json"] if json_flag else [])])  # raises if anything escapes
        out, err = capsys.readouterr()
        # (the functions' own JSON log lines, which `invoke` passes on, may quote one inside a string)
        assert not any(line.startswith("Traceback") for line in (out + err).splitlines())
        return Run(status, out, err)

    return run


# --- the emitter and a Segment stand-in --------------------------------------------------------------

WRITE_KEY = "segment-source-write-key-1"
"""The demo workspace's Segment source write key, as the `segment` stand-in takes it."""


@pytest.fixture
def emitter(aws):
    """The EmitterFunction as Lambda loads it (a fresh import: its caches start empty)."""
    return lambda_function("EmitterFunction")


@pytest.fixture
def segment(workspaces):
    """A Segment stand-in on 127.0.0.1, the demo workspace's destination."""
    with FakeSegment({WRITE_KEY}).start() as fake:
        workspaces.set_segment_destination(DEMO_WORKSPACE_ID, WRITE_KEY, fake.url)
        yield fake


@pytest.fixture
def run_jobs(aws):
    """Drains the JobsQueue through the JobsFunction's handler, as its SQS mapping does (BatchSize 1,
    the template's timeout); how many invocations it took."""
    sqs = boto3.client("sqs")
    url, arn = aws.queue_urls["JobsQueue"], aws.queue_arns["JobsQueue"]
    function = lambda_function("JobsFunction")

    def run(limit: int = 2_000) -> int:
        for invocations in range(limit):
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0).get(
                "Messages", []
            )
            if not messages:
                return invocations
            answer = function.invoke(lambda_sqs_event(arn, messages), seconds_left=900)
            assert answer == {"batchItemFailures": []}
            sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
        raise AssertionError("the JobsQueue did not empty")

    return run


@pytest.fixture
def retry_queue(aws, monkeypatch):
    """The OutboundRetryQueue as the emitter leaves it: its messages (each delay kept, and each visible at
    once: moto would hold a delayed one for real seconds), read and taken off."""
    from moto.sqs.models import Message

    monkeypatch.setattr(Message, "delayed", property(lambda self: False))
    sqs = boto3.client("sqs")
    url = aws.queue_urls["OutboundRetryQueue"]

    class RetryQueue:
        def __init__(self) -> None:
            self.taken: list[dict[str, Any]] = []
            self.delay_of: dict[str, int] = {}

        def receive(self) -> list[dict[str, Any]]:
            from moto.sqs.models import sqs_backends

            kept = sqs_backends["123456789012"]["us-east-1"].queues[url.rsplit("/", 1)[-1]]
            self.delay_of |= {
                m.id: int((m.delayed_until - m.sent_timestamp) // 1000) if m.delayed_until else 0
                for m in kept._messages
            }
            got: list[dict[str, Any]] = []
            while batch := sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["All"]
            ).get("Messages", []):
                for message in batch:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                got += batch
            return got

        def messages(self) -> list[dict[str, Any]]:
            self.taken = self.receive()
            return [json.loads(m["Body"]) for m in self.taken]

        def delays(self) -> list[int]:
            """DelaySeconds of the messages last read."""
            return [self.delay_of.get(m["MessageId"], -1) for m in self.taken]

        def lambda_event(self) -> dict[str, Any]:
            """The queue's messages as Lambda hands them once their pause is over (time passed: each
            message's `not_before` is now)."""
            import time

            received = self.receive()
            for message in received:
                body = json.loads(message["Body"])
                body["not_before"] = min(body.get("not_before", 0), time.time())
                message["Body"] = json.dumps(body)
            return lambda_sqs_event(aws.queue_arns["OutboundRetryQueue"], received)

    return RetryQueue()
