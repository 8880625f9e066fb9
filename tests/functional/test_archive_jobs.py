"""Archive jobs on the fleet (docs/archive-jobs.md): purge, replay and offboarding as tasks the
JobsFunction runs from their cursors, with workers out of time and killed at any AWS call."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from bridge_dev.events import DEMO_WORKSPACE_ID, SIGNED_WORKSPACE_ID
from bridge_dev.runtime import lambda_sqs_event
from tests.conftest import SECONDS_LEFT, lambda_function

WS, OTHER = DEMO_WORKSPACE_ID, SIGNED_WORKSPACE_ID
DAY = datetime(2026, 1, 5, 12, tzinfo=UTC)
DELETED_AT = "2026-02-01T00:00:00.000Z"


def archived_event(n: int, user: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Viewed",
        "userId": user,
        "messageId": f"m-{n:06d}",
        "timestamp": "2026-01-05T12:00:00.000Z",
        "receivedAt": "2026-01-05T12:00:01.000Z",
        "properties": {"n": n},
    }


def build_archive(
    store: Any, workspace: str, objects: int, per_object: int, deleted: set[str], days: int = 3
) -> int:
    """`objects` raw/ objects over `days` days, as the processor archives them; one object in three holds
    events of the `deleted` users. How many events of theirs were archived."""
    users = sorted(deleted)
    theirs = 0
    for n in range(objects):
        events = []
        for k in range(per_object):
            user = (
                users[(n + k) % len(users)]
                if users and n % 3 == 0 and k % 4 == 0
                else f"keep-{(n * 7 + k) % 50}"
            )
            theirs += user in deleted
            events.append(archived_event(n * per_object + k, user))
        store.archive.archive_raw(workspace, DAY + timedelta(days=n % days), f"req-{n:05d}", events)
    return theirs


def bucket_objects(aws: Any) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    bucket = aws.buckets["ArchiveBucket"]
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for summary in page.get("Contents", []):
            found[summary["Key"]] = s3.get_object(Bucket=bucket, Key=summary["Key"])["Body"].read()
    return found


def lines_of(body: bytes) -> list[bytes]:
    return gzip.decompress(body).splitlines()


def list_for_purge(store: Any, workspace: str, users: set[str]) -> None:
    store.profiles.mark_for_purge(workspace, [f"U#{user}" for user in sorted(users)], DELETED_AT, "U#x")


class Killed(BaseException):
    """The worker's process ends here (Lambda's timeout, a crash): nothing after it reaches AWS."""


class Fleet:
    """The JobsQueue's messages run by workers as the JobsFunction runs them (engine.run_task), each
    given `objects_per_invocation` objects' worth of time; `kill_rate` of them killed at a random AWS
    call. Killed messages come back (SQS's visibility timeout), as on AWS."""

    def __init__(
        self, aws: Any, rng: random.Random, kill_rate: float = 0.0, objects_per_invocation: int = 10**9
    ):
        from segment_bridge.store import get_store

        self.store = get_store()
        self.sqs = boto3.client("sqs")
        self.url = aws.queue_urls["JobsQueue"]
        self.rng, self.kill_rate, self.budget = rng, kill_rate, objects_per_invocation
        self.kills = self.invocations = self.continued = 0
        self._calls_left: int | None = None
        self._reads = 0
        for client in (self.store.clients.s3, self.store.clients.dynamodb, self.store.clients.sqs):
            client.meta.events.register("before-call", self._before_call)

    def _before_call(self, model: Any, **_: Any) -> None:
        if model.name == "GetObject":
            self._reads += 1
        if self._calls_left is None:
            return
        if self._calls_left <= 0:
            raise Killed
        self._calls_left -= 1

    def run(self, limit: int = 10_000) -> None:
        from segment_bridge.jobs.engine import run_task
        from segment_bridge.jobs.fleet import FINISHERS, KINDS

        for _ in range(limit):
            got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=1, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                return
            message = messages[0]
            self.invocations += 1
            self._reads = 0
            kill = self.rng.random() < self.kill_rate
            self._calls_left = self.rng.randint(0, 40) if kill else None
            try:
                outcome = run_task(
                    message["Body"],
                    self.store.jobs,
                    self.store,
                    lambda: self._reads >= self.budget,
                    KINDS,
                    FINISHERS,
                )
            except Killed:
                self.kills += 1
                self._calls_left = None
                self.sqs.change_message_visibility(
                    QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
                continue
            self._calls_left = None
            self.continued += outcome.status == "continues"
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        raise AssertionError("the jobs did not end")


@pytest.fixture
def fleet(aws, workspaces) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def make(**options: Any) -> Fleet:
        made.append(Fleet(aws, random.Random(options.pop("seed", 0)), **options))
        return made[-1]

    yield make
    for fleet in made:
        for client in (fleet.store.clients.s3, fleet.store.clients.dynamodb, fleet.store.clients.sqs):
            client.meta.events.unregister("before-call", fleet._before_call)


# --- purge -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_purge_five_times_larger_than_an_invocation_completes_with_workers_killed_at_random(
    aws, workspaces, fleet, seed, monkeypatch
):
    """Given an archive 5x what one invocation reads, in pages of 80 keys, When the purge job runs on
    workers of which a third are killed at a random AWS call, Then it ends, its counts are exact, every
    deleted user's event is gone and every other event's line is byte-identical, in its object, in order;
    objects that held none are untouched."""
    from segment_bridge.jobs.purge import plan_purge

    monkeypatch.setattr("segment_bridge.store.archive.LIST_PAGE_KEYS", 80)
    monkeypatch.setattr("segment_bridge.jobs.purge.CHUNK_OBJECTS", 8)
    deleted = {"gone-1", "gone-2"}
    theirs = build_archive(workspaces, WS, objects=300, per_object=12, deleted=deleted)
    build_archive(
        workspaces, OTHER, objects=20, per_object=12, deleted=deleted
    )  # same ids, not deleted there
    list_for_purge(workspaces, WS, deleted)
    before = bucket_objects(aws)

    job = plan_purge(WS, workspaces)
    assert job is not None
    workers = fleet(seed=seed, kill_rate=0.33, objects_per_invocation=60)  # 300 objects: 5 invocations' worth
    workers.run()

    record = workspaces.jobs.job(job.job_id)
    assert record.state == "done"
    assert workers.kills > 0
    assert workers.continued > 0
    assert record.counters["events_changed"] == theirs
    assert record.counters["objects_read"] == 300
    assert record.counters["events_read"] == 300 * 12
    assert record.counters["tasks_done"] == record.counters["tasks_total"]
    after = bucket_objects(aws)
    assert set(after) == set(before)  # none emptied: each held others' events too
    for key, body in before.items():
        kept = [
            line
            for line in lines_of(body)
            if json.loads(line)["userId"] not in deleted or f"workspace={OTHER}" in key
        ]
        assert lines_of(after[key]) == kept, key
        if len(kept) == len(lines_of(body)):
            assert after[key] == body, key  # never rewritten
    assert workspaces.profiles.pending_purges(WS) == []  # off the list once purged


def test_the_daily_purge_only_plans_and_the_workers_remove_what_the_delete_covers(aws, workspaces, run_jobs):
    """The PurgeFunction's daily run plans a job per workspace with deletions listed and reads nothing
    of the archive itself; the JobsFunction's runs remove the deleted users' events."""
    list_for_purge(workspaces, WS, {"gone-1"})
    theirs = build_archive(workspaces, WS, objects=9, per_object=4, deleted={"gone-1"})
    answer = lambda_function("PurgeFunction").invoke({}, seconds_left=SECONDS_LEFT)
    assert answer["purge_jobs"] == 1
    assert "events_removed" not in answer
    jobs = list(workspaces.jobs.jobs(kind="purge"))
    assert [job.state for job in jobs] == ["running"]
    assert jobs[0].counters["objects_read"] == 0

    run_jobs()

    done = workspaces.jobs.job(jobs[0].job_id)
    assert (done.state, done.counters["events_changed"]) == ("done", theirs)
    assert all(b"gone-1" not in gzip.decompress(body) for body in bucket_objects(aws).values())


# --- replay ----------------------------------------------------------------------------------------


def apply_ingest_queue(aws: Any) -> list[str]:
    """Everything on the IngestQueue through the ProcessorFunction, as its mapping does; the
    MessageGroupIds it carried."""
    sqs = boto3.client("sqs")
    url, arn = aws.queue_urls["IngestQueue"], aws.queue_arns["IngestQueue"]
    function = lambda_function("ProcessorFunction")
    groups = []
    while got := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=3, WaitTimeSeconds=0, MessageSystemAttributeNames=["All"]
    ).get("Messages", []):
        groups += [m["Attributes"].get("MessageGroupId", "") for m in got]
        answer = function.invoke(lambda_sqs_event(arn, got), seconds_left=150)
        assert answer == {"batchItemFailures": []}
        for message in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return groups


def test_replay_applies_the_archive_under_the_new_mapping_once_and_a_second_replay_reports_no_change(
    processor, aws, workspaces, run_jobs
):
    """A replay job's messages go through the ProcessorFunction in the workspace's replay group; the
    first adds what the new mapping finds, a second (and its dry run) changes and reports nothing, and
    the archive is not written again."""
    from segment_bridge.jobs.replay import plan_replay
    from segment_bridge.mapping import Mapping
    from segment_bridge.processor.replay import dry_run
    from tests.functional.conftest import event

    t1 = "2026-01-01T10:00:00.000Z"
    workspaces.set_mapping(WS, Mapping(channels={"email": "email"}, exclude_events={"Invited"}))
    processor(
        [
            event("identify", "i", t1, traits={"email": "a@x.io", "phone": "+15555550100"}),
            event("track", "t1", t1, event="Signed Up"),
            event("track", "t2", t1, event="Invited"),
            event("identify", "j", t1, user="user-2", traits={"email": "b@x.io"}),
        ]
    )
    archive_before = bucket_objects(aws)
    current = workspaces.set_mapping(WS, Mapping())  # the defaults: phone -> sms, nothing excluded
    day = datetime(2026, 1, 1).date()
    assert dry_run(WS, day, day, current, workspaces).changed == 1  # user-1 only: user-2 gains nothing

    first = plan_replay(WS, day, day, workspaces)
    run_jobs()
    groups = apply_ingest_queue(aws)
    assert set(groups) == {f"{WS}/replay"}
    run_jobs()
    done = workspaces.jobs.job(first.job_id)
    assert done.state == "done"
    assert (done.counters["messages_applied"], done.counters["events_read"]) == (1, 4)
    assert (done.counters["profiles_changed"], done.counters["history_written"]) == (1, 1)
    after = workspaces.read_profile(WS, "U", "user-1")
    assert after.channels == {"email": {"a@x.io": t1}, "sms": {"+15555550100": t1}}
    assert after.counts == {"Signed Up": 1, "Invited": 1}
    assert bucket_objects(aws) == archive_before  # replayed, not archived again

    assert dry_run(WS, day, day, current, workspaces).changed == 0
    second = plan_replay(WS, day, day, workspaces)
    run_jobs()
    apply_ingest_queue(aws)
    again = workspaces.jobs.job(second.job_id)
    assert again.state == "done"
    assert (again.counters["profiles_changed"], again.counters["history_written"]) == (0, 0)
    assert workspaces.read_profile(WS, "U", "user-1") == after


def test_a_replay_message_delivered_twice_is_applied_and_counted_once(processor, aws, workspaces, run_jobs):
    from segment_bridge.jobs.replay import plan_replay
    from tests.functional.conftest import event

    t1 = "2026-01-01T10:00:00.000Z"
    processor([event("track", f"t{n}", t1, event="Signed Up") for n in range(3)])
    workspaces.profiles.record  # noqa: B018  # (the store is made)
    day = datetime(2026, 1, 1).date()
    job = plan_replay(WS, day, day, workspaces)
    run_jobs()
    sqs = boto3.client("sqs")
    url = aws.queue_urls["IngestQueue"]
    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    sqs.send_message(QueueUrl=url, MessageBody=message["Body"], MessageGroupId=f"{WS}/replay")  # a duplicate
    apply_ingest_queue(aws)
    record = workspaces.jobs.job(job.job_id)
    assert record.counters["messages_applied"] == 1
    assert record.state == "done"
    assert workspaces.read_profile(WS, "U", "user-1").counts == {"Signed Up": 3}


# --- offboarding -----------------------------------------------------------------------------------


def table_items(aws: Any) -> dict[str, list[str]]:
    """Every item of every table of template.yaml, as DynamoDB's JSON (each item's exact bytes; binary
    values gzip-inflated, so what they hold shows), sorted."""
    dynamodb = boto3.client("dynamodb")
    found = {}
    for logical, name in aws.tables.items():
        items = [
            json.dumps(stored, sort_keys=True, default=lambda value: readable(bytes(value)).decode("latin-1"))
            for page in dynamodb.get_paginator("scan").paginate(TableName=name)
            for stored in page.get("Items", [])
        ]
        found[logical] = sorted(items)
    return found


def readable(body: bytes) -> bytes:
    try:
        return gzip.decompress(body)
    except OSError:
        return body


def test_offboarding_leaves_nothing_of_the_workspace_and_every_other_workspace_byte_identical(
    aws, workspaces, ingest, sb, run_jobs, monkeypatch
):
    """Given two workspaces holding profiles, history, links, groups, counts, a mapping, a destination
    and its secret, a Public API token's secret, privacy receipts, outbox items, raw/ rejected/
    unapplied/ objects, parked events and dead letters and a purge job, When `workspaces delete WS
    --yes` runs on the fleet, Then a scan of every table and the bucket (keys and contents) and Secrets
    Manager hold nothing naming the workspace, the other workspace's every item and object is
    byte-identical, its old key gets 401 from a container that has not cached it, and a message queued
    meanwhile (by a warm container, or in flight) writes nothing."""
    from segment_bridge.envelope import pack
    from segment_bridge.jobs.purge import plan_purge
    from segment_bridge.mapping import Mapping
    from segment_bridge.receipts import Requested
    from segment_bridge.store.queues import DeadLetter
    from tests.functional.conftest import sample

    monkeypatch.setattr("bridge_dev.cli.workspaces.quiet_seconds", lambda _: 0)
    assert ingest(sample("ingest_webhook_batch.json")).status == 200  # this container caches the key
    assert ingest(sample("ingest_mixed_batch.json")).status == 200  # rejected/ too
    assert ingest(sample("ingest_webhook_signed_batch.json")).status == 200
    apply_ingest_queue(aws)
    for ws in (WS, OTHER):
        workspaces.set_mapping(ws, Mapping(channels={"email": "email"}))
        workspaces.set_segment_destination(ws, f"write-key-of-{ws}", "us")
        workspaces.publish({"pk": f"WS#{ws}", "sk": "EVT#1", "event": "Plan Changed", "userId": "user-42"})
        build_archive(workspaces, ws, objects=3, per_object=4, deleted={"gone-1"})
        workspaces.archive.keep_unapplied(ws, DAY, "req-u", [{"event": {"userId": "u"}, "reason": "x"}])
        workspaces.parked.park_outbound("refused", {"userId": "user-42", "event": "E"}, None, ws)
        (body,) = pack(
            [b'{"userId":"user-42"}'],
            workspace_id=ws,
            request_id="r",
            received_at=DAY.isoformat(),
            max_bytes=262_144,
        )
        workspaces.parked.keep_dead_letter("ingest", DeadLetter(f"dl-{ws}", body, 5, DAY.isoformat(), "rh"))
        workspaces.regulations.set_regulations_token(ws, f"public-api-token-of-{ws}", "us")
        request = Requested("U#user-42", DAY.isoformat(), DAY.isoformat(), "operator", f"req-{ws}")
        workspaces.receipts.received(ws, [request])
    list_for_purge(workspaces, WS, {"gone-1"})
    purge = plan_purge(WS, workspaces)  # a job of the workspace, not yet run: its tasks are the workspace's
    assert purge is not None
    (in_flight,) = pack(
        [b'{"type":"track","event":"Late","userId":"late-1","messageId":"late-m"}'],
        workspace_id=WS,
        request_id="late",
        received_at=DAY.isoformat(),
        max_bytes=262_144,
    )
    boto3.client("sqs").send_message(
        QueueUrl=aws.queue_urls["IngestQueue"], MessageBody=in_flight, MessageGroupId=WS
    )
    items_before, objects_before = table_items(aws), bucket_objects(aws)
    assert any(WS in item for items in items_before.values() for item in items)
    assert any(WS in item for item in items_before["DeletionsTable"])  # its privacy receipts

    deleted = sb("workspaces", "delete", WS, "--yes", "--no-wait")
    assert deleted.status == 0
    job_id = json.loads(deleted.out)["job_id"]
    assert lambda_function("IngestFunction").invoke(sample("ingest_webhook_batch.json"))["statusCode"] == 401
    # a warm container that cached the key accepts for up to AuthCacheSeconds (docs/archive-jobs.md) ...
    assert ingest(sample("ingest_webhook_batch.json")).status == 200
    refused_before = apply_ingest_queue(aws)  # ... and the processor drops what it queued, and the in-flight
    assert len(refused_before) == 2
    run_jobs()
    boto3.client("sqs").send_message(
        QueueUrl=aws.queue_urls["IngestQueue"], MessageBody=in_flight, MessageGroupId=WS
    )  # redelivered after the sweep
    apply_ingest_queue(aws)

    items_after, objects_after = table_items(aws), bucket_objects(aws)
    receipt_item = [i for i in items_after["WorkspacesTable"] if f"JOB#{job_id}" in i]
    assert len(receipt_item) == 1

    def theirs(item: str) -> bool:
        return WS in item or f"JOB#{purge.job_id}" in item

    for logical, items in items_after.items():
        assert [item for item in items if theirs(item)] == [], logical
        kept = [item for item in items if item not in receipt_item]
        assert kept == [item for item in items_before[logical] if not theirs(item)], logical
    assert not any(WS in key or WS.encode() in readable(body) for key, body in objects_after.items())
    assert objects_after == {
        k: b for k, b in objects_before.items() if WS not in k and WS.encode() not in readable(b)
    }
    secrets = boto3.client("secretsmanager").list_secrets()["SecretList"]
    assert [s["Name"] for s in secrets if WS in s["Name"]] == []
    assert any(OTHER in s["Name"] for s in secrets)

    shown = json.loads(sb("jobs", "show", job_id).out)
    assert shown["state"] == "done"
    assert WS not in json.dumps(shown)
    assert shown["receipt"]["items_deleted"] > 10
    assert (
        shown["receipt"]["objects_deleted"] >= 7
    )  # 3 raw + rejected + unapplied + 2 parked (+ ingested raw)
    assert shown["receipt"]["workspace_sha256"] == hashlib.sha256(WS.encode()).hexdigest()


def test_workspaces_delete_asks_first_and_a_no_changes_nothing(aws, workspaces, sb):
    before = table_items(aws)
    answer = sb("workspaces", "delete", WS, json_flag=False)  # no terminal: the question is answered no
    assert answer.status != 0
    assert table_items(aws) == before
    assert workspaces.workspace_open(WS)


@pytest.mark.parametrize("seed", [4, 5])
def test_the_purge_of_parked_items_pages_from_its_cursor_with_workers_killed_at_random(
    aws, workspaces, fleet, seed, monkeypatch
):
    """parked/ is read a page of keys at a time from the task's cursor (not one listing of all of it):
    with pages of 2 keys, invocations that read 3 objects and a third of the workers killed at a random
    AWS call, every parked event of the deleted user is removed, counted once, and every other parked
    item is byte-identical."""
    from segment_bridge.jobs.purge import plan_purge

    monkeypatch.setattr("segment_bridge.jobs.purge.CHUNK_OBJECTS", 2)
    for n in range(9):
        user = "gone-1" if n % 3 == 0 else f"keep-{n}"
        workspaces.parked.park_outbound("refused", {"userId": user, "event": f"E{n}"}, None, WS)
    workspaces.parked.park_outbound("refused", {"userId": "gone-1", "event": "Theirs"}, None, OTHER)
    list_for_purge(workspaces, WS, {"gone-1"})
    before = {k: v for k, v in bucket_objects(aws).items() if k.startswith("parked/")}

    job = plan_purge(WS, workspaces)
    assert job is not None
    workers = fleet(seed=seed, kill_rate=0.33, objects_per_invocation=3)
    workers.run()

    record = workspaces.jobs.job(job.job_id)
    assert record.state == "done"
    assert workers.continued > 0
    assert (record.counters["objects_changed"], record.counters["events_changed"]) == (3, 3)
    after = {k: v for k, v in bucket_objects(aws).items() if k.startswith("parked/")}
    removed = {k for k, v in before.items() if b'"gone-1"' in readable(v) and WS.encode() in readable(v)}
    assert len(removed) == 3
    assert after == {k: v for k, v in before.items() if k not in removed}


@pytest.mark.parametrize("seed", [6, 7])
def test_offboarding_reads_only_the_workspace_s_receipts_through_the_index_resuming_when_killed(
    aws, workspaces, fleet, sb, seed, monkeypatch
):
    """The DeletionsTable is never scanned: the workspace's privacy receipts are found through the
    by-workspace index (gsi1pk=WS#<ws>), a page at a time from the task's cursor. With pages of 3 items,
    invocations cut short and a third of the workers killed at a random AWS call, every receipt of the
    workspace is gone, every other workspace's receipt is byte-identical, and no item of the other
    workspace is read from the table."""
    from segment_bridge.receipts import Requested

    monkeypatch.setattr("bridge_dev.cli.workspaces.quiet_seconds", lambda _: 0)
    monkeypatch.setattr("segment_bridge.store.sweep.SCAN_PAGE_ITEMS", 3)
    for ws, count in ((WS, 11), (OTHER, 40)):
        requests = [
            Requested(f"U#user-{n}", f"2026-01-0{1 + n % 9}T00:00:00Z", DAY.isoformat(), "operator", f"r{n}")
            for n in range(count)
        ]
        workspaces.receipts.received(ws, requests)
    others_before = [item for item in table_items(aws)["DeletionsTable"] if WS not in item]
    assert len(others_before) == 40

    assert sb("workspaces", "delete", WS, "--yes", "--no-wait").status == 0
    workers = fleet(seed=seed, kill_rate=0.33)
    calls: list[dict[str, Any]] = []
    read: list[dict[str, Any]] = []
    table = aws.tables["DeletionsTable"]

    def seen(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") == table and model.name in ("Scan", "Query"):
            calls.append({"op": model.name, **params})
            context["deletions_read"] = True

    def answered(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if context.get("deletions_read"):
            read.extend(parsed.get("Items", []))

    dynamodb = workers.store.clients.dynamodb
    dynamodb.meta.events.register("provide-client-params.dynamodb.*", seen)
    dynamodb.meta.events.register("after-call.dynamodb.*", answered)
    try:
        workers.run()
    finally:
        dynamodb.meta.events.unregister("provide-client-params.dynamodb.*", seen)
        dynamodb.meta.events.unregister("after-call.dynamodb.*", answered)

    assert [c for c in calls if c["op"] == "Scan"] == []
    assert {(c["IndexName"], json.dumps(c["ExpressionAttributeValues"])) for c in calls} == {
        ("gsi1", json.dumps({":pk": {"S": f"WS#{WS}"}}))
    }
    assert len(read) >= 11  # a killed page is read again
    assert all(stored["pk"]["S"].startswith(f"WS#{WS}#") for stored in read)
    after = table_items(aws)["DeletionsTable"]
    assert [item for item in after if WS in item] == []
    assert after == others_before
