"""Durable parking: what is not sent (outbound) or not applied (ingest dead letters) is kept whole in the
archive bucket's parked/ as well as signalled on its dead-letter queue, so it outlives SQS's 14 days;
`dlq list` and `dlq redrive` read it from there, and a re-driven item is removed only once it is sent,
parked again, or back on its queue. Also: the CLI's `publish` writes through the one value conversion."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from typing import Any

import boto3
import pytest

from bridge_dev.cli import dead_letters, outbox
from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from bridge_dev.segment_api import FakeSegment
from bridge_dev.target import Target
from tests.conftest import SECONDS_LEFT
from tests.functional.conftest import WRITE_KEY, stream_lambda_event
from tests.functional.helpers import receive_all


@pytest.fixture
def target(aws, boto_session, workspaces) -> Target:
    return Target("moto", aws, boto_session)


def publish(aws, sk: str, **fields: Any) -> None:
    item = {"pk": f"WS#{WS}", "sk": sk, "event": "Flow Completed", "userId": "user-42"} | fields
    boto3.resource("dynamodb").Table(aws.tables["OutboxTable"]).put_item(Item=item)


def purge(queue_url: str) -> None:
    """What SQS does after 14 days (MessageRetentionPeriod): the messages are gone."""
    boto3.client("sqs").purge_queue(QueueUrl=queue_url)
    assert receive_all(queue_url) == []


def parked_objects(aws, queue: str) -> list[dict[str, Any]]:
    s3 = boto3.client("s3")
    bucket = aws.buckets["ArchiveBucket"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"parked/{queue}/").get("Contents", [])
    return [
        json.loads(gzip.decompress(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())) for o in listed
    ]


def test_a_parked_event_outlives_its_queue_and_redrives_from_the_bucket(emitter, aws, target):
    # Given an event parked because its workspace has no destination yet
    publish(aws, "EVT#1")
    assert emitter.invoke(stream_lambda_event(aws.tables["OutboxTable"]), seconds_left=SECONDS_LEFT) == {
        "batchItemFailures": []
    }
    (signal,) = [json.loads(m["Body"]) for m in receive_all(aws.queue_urls["EmitterDLQ"])]
    assert signal["parked"].startswith("parked/emitter/")
    assert "no Segment write key" in signal["reason"]

    # When the queue's retention passes
    purge(aws.queue_urls["EmitterDLQ"])

    # Then the event is still listed, re-drives once a destination is set, and is then removed
    (listed,) = dead_letters.list_dead_letters(target, "emitter", 100)
    assert listed["kind"] == "parked event"
    assert listed["workspace_id"] == WS
    assert listed["messageId"].startswith("sbo-")
    with FakeSegment({WRITE_KEY}).start() as segment:
        kept = dead_letters.redrive(target, "emitter", 100)
        assert kept.redriven == 0
        assert [left["message_id"] for left in kept.left] == [listed["message_id"]]
        assert len(dead_letters.list_dead_letters(target, "emitter", 100)) == 1  # still parked

        target.store.set_segment_destination(WS, WRITE_KEY, segment.url)
        assert dead_letters.redrive(target, "emitter", 100).redriven == 1
        assert segment.deliveries == {listed["messageId"]: 1}
    assert dead_letters.list_dead_letters(target, "emitter", 100) == []
    assert parked_objects(aws, "emitter") == []


def test_a_redriven_event_refused_again_is_parked_again_with_the_new_answer_then_removed(
    emitter, aws, target
):
    publish(aws, "EVT#1")
    emitter.invoke(stream_lambda_event(aws.tables["OutboxTable"]), seconds_left=SECONDS_LEFT)
    with FakeSegment({"another-write-key"}).start() as segment:  # our write key is now refused (401)
        target.store.set_segment_destination(WS, WRITE_KEY, segment.url)

        result = dead_letters.redrive(target, "emitter", 100)

    assert result.redriven == 1  # dealt with: parked again, with the new reason
    (document,) = parked_objects(aws, "emitter")
    assert "401" in document["reason"]
    assert document["record"]["messageId"].startswith("sbo-")


def test_an_item_of_400_kb_is_parked_whole_in_the_bucket_and_signalled_within_sqs_limits(emitter, aws):
    blob = "x" * 390_000
    publish(aws, "EVT#big", properties={"blob": blob, "n": Decimal("1.5")})

    response = emitter.invoke(stream_lambda_event(aws.tables["OutboxTable"]), seconds_left=SECONDS_LEFT)

    assert response == {"batchItemFailures": []}
    (document,) = parked_objects(aws, "emitter")
    assert document["record"]["properties"] == {"blob": blob, "n": 1.5}  # whole
    assert "32768" in document["reason"]
    (message,) = receive_all(aws.queue_urls["EmitterDLQ"])
    assert len(message["Body"].encode()) < 64 * 1024  # a pointer and a summary, not the payload
    signal = json.loads(message["Body"])
    assert signal["parked"].startswith("parked/emitter/")
    assert "record" not in signal


def test_an_overflowing_timestamp_is_parked_and_the_rest_of_the_batch_is_sent(emitter, aws, workspaces):
    with FakeSegment({WRITE_KEY}).start() as segment:
        workspaces.set_segment_destination(WS, WRITE_KEY, segment.url)
        publish(aws, "EVT#early", timestamp="0001-01-01T00:00:00+01:00")
        publish(aws, "EVT#late", timestamp="9999-12-31T23:59:59-01:00")
        publish(aws, "EVT#ok", timestamp="2026-01-01T10:00:00Z")

        response = emitter.invoke(stream_lambda_event(aws.tables["OutboxTable"]), seconds_left=SECONDS_LEFT)

        assert response == {"batchItemFailures": []}
        assert len(segment.events) == 1
    documents = parked_objects(aws, "emitter")
    assert sorted(d["record"]["sk"] for d in documents) == ["EVT#early", "EVT#late"]
    assert all("out of range" in d["reason"] for d in documents)


def test_an_ingest_dead_letter_is_kept_in_the_bucket_outlives_its_queue_and_redrives(aws, target):
    from segment_bridge.envelope import pack
    from segment_bridge.ingest.intake import serialise

    # Given a queue message the processor gave up on (Lambda's redrive put it on the IngestDLQ)
    event = {"type": "identify", "userId": "u1", "messageId": "m1", "traits": {"plan": "x"}}
    (body,) = pack(
        [serialise(event)],
        workspace_id=WS,
        request_id="req-1",
        received_at="2026-01-01T00:00:00.000Z",
        max_bytes=262_144,
    )
    boto3.client("sqs").send_message(QueueUrl=aws.queue_urls["IngestDLQ"], MessageBody=body)

    # When an operator lists it (it is copied to parked/ingest/), then the queue's retention passes
    (listed,) = dead_letters.list_dead_letters(target, "ingest", 100)
    assert listed["workspace_id"] == WS
    purge(aws.queue_urls["IngestDLQ"])

    # Then it is still listed, and re-driving puts it back on the IngestQueue and removes it
    assert [d["message_id"] for d in dead_letters.list_dead_letters(target, "ingest", 100)] == [
        listed["message_id"]
    ]
    assert dead_letters.redrive(target, "ingest", 100).redriven == 1
    assert [m["Body"] for m in receive_all(aws.queue_urls["IngestQueue"])] == [body]
    assert dead_letters.list_dead_letters(target, "ingest", 100) == []


def test_a_redrive_takes_dead_letters_off_their_queue_once_kept(aws, target):
    boto3.client("sqs").send_message(QueueUrl=aws.queue_urls["IngestDLQ"], MessageBody="not an envelope")

    result = dead_letters.redrive(target, "ingest", 100)

    assert result.redriven == 1  # back on the IngestQueue: the processor decides again
    assert receive_all(aws.queue_urls["IngestDLQ"]) == []
    assert parked_objects(aws, "ingest") == []


def test_publish_writes_through_the_one_value_conversion(aws, target, emitter):
    # floats, empty map keys and non-finite numbers, as the processor writes them
    with FakeSegment({WRITE_KEY}).start() as segment:
        target.store.set_segment_destination(WS, WRITE_KEY, segment.url)
        published = outbox.publish(
            target,
            WS,
            event="Scored",
            user_id="user-42",
            anonymous_id=None,
            properties={"score": 0.1, "": "dropped", "nested": {"": 1, "ratio": 2.5}, "nan": float("nan")},
        )
        stored = (
            boto3.resource("dynamodb")
            .Table(aws.tables["OutboxTable"])
            .get_item(Key={"pk": published["pk"], "sk": published["sk"]})["Item"]
        )
        assert stored["properties"] == {
            "score": Decimal("0.1"),
            "nested": {"ratio": Decimal("2.5")},
            "nan": None,
        }

        emitter.invoke(stream_lambda_event(aws.tables["OutboxTable"]), seconds_left=SECONDS_LEFT)
        assert segment.events[published["messageId"]]["properties"] == {
            "score": 0.1,
            "nested": {"ratio": 2.5},
            "nan": None,
        }


def queue_message(user: str, message_id: str) -> str:
    from segment_bridge.envelope import pack
    from segment_bridge.ingest.intake import serialise

    event = {
        "type": "identify",
        "userId": user,
        "messageId": message_id,
        "traits": {"plan": "pro"},
        "timestamp": "2026-01-01T00:00:00.000Z",
        "receivedAt": "2026-01-01T00:00:00.000Z",
    }
    (body,) = pack(
        [serialise(event)],
        workspace_id=WS,
        request_id=f"req-{message_id}",
        received_at="2026-01-01T00:00:00.000Z",
        max_bytes=262_144,
    )
    return body


def sweep(task: str = "sweep") -> dict[str, int]:
    from tests.conftest import lambda_function

    return lambda_function("PurgeFunction").invoke({"task": task})  # the template's timeout


def test_the_hourly_sweep_parks_ingest_dead_letters_which_are_listed_redriven_and_applied(
    aws, target, workspaces
):
    from bridge_dev.runtime import lambda_sqs_event
    from tests.conftest import lambda_function

    # Given a queue message the processor gave up on, that nobody looks at
    body = queue_message("user-swept", "m-swept")
    boto3.client("sqs").send_message(QueueUrl=aws.queue_urls["IngestDLQ"], MessageBody=body)

    # When the scheduled sweep runs (twice: a second run finds nothing more to do)
    assert sweep()["ingest_dead_letters_kept"] == 1
    assert sweep()["ingest_dead_letters_kept"] == 0

    # Then it is in the bucket, off the queue (SQS's 14 days no longer matter), listed and re-drivable
    assert receive_all(aws.queue_urls["IngestDLQ"]) == []
    (document,) = parked_objects(aws, "ingest")
    assert document["body"] == body
    (listed,) = dead_letters.list_dead_letters(target, "ingest", 100)
    assert (listed["workspace_id"], listed["events"]) == (WS, 1)
    assert dead_letters.redrive(target, "ingest", 100).redriven == 1
    messages = receive_all(aws.queue_urls["IngestQueue"])
    assert [m["Body"] for m in messages] == [body]
    answer = lambda_function("ProcessorFunction").invoke(
        lambda_sqs_event(aws.queue_arns["IngestQueue"], messages)
    )
    assert answer == {"batchItemFailures": []}
    assert workspaces.read_profile(WS, "U", "user-swept").traits == {"plan": "pro"}
    assert parked_objects(aws, "ingest") == []


def test_the_sweep_parks_stream_batches_lambda_gave_up_on_and_takes_signals_off(emitter, aws, target):
    # Given a parked event's signal and Lambda's on-failure record of a stream batch on the EmitterDLQ
    publish(aws, "EVT#1")  # no destination: parked, and signalled
    emitter.invoke(stream_lambda_event(aws.tables["OutboxTable"]), seconds_left=SECONDS_LEFT)
    failure = {
        "requestContext": {"condition": "RetryAttemptsExhausted"},
        "DDBStreamBatchInfo": {
            "shardId": "shard-1",
            "streamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/Outbox/stream/x",
            "startSequenceNumber": "1",
            "endSequenceNumber": "2",
            "batchSize": 2,
        },
    }
    boto3.client("sqs").send_message(QueueUrl=aws.queue_urls["EmitterDLQ"], MessageBody=json.dumps(failure))

    figures = sweep()

    # Then the queue is empty: the stream batch is parked, the signal's event was parked already
    assert (figures["emitter_dead_letters_kept"], figures["emitter_dead_letters_signals"]) == (1, 1)
    assert receive_all(aws.queue_urls["EmitterDLQ"]) == []
    kinds = sorted(d["kind"] for d in dead_letters.list_dead_letters(target, "emitter", 100))
    assert kinds == ["parked event", "stream batch"]


def test_a_sweep_that_fails_midway_loses_nothing_and_a_rerun_parks_each_letter_once(aws, target):
    from segment_bridge.dead_letters import sweep_dead_letters

    store, url = target.store, aws.queue_urls["IngestDLQ"]
    for n in range(5):
        boto3.client("sqs").send_message(QueueUrl=url, MessageBody=queue_message(f"user-{n}", f"m-{n}"))

    class FailingOnThirdWrite:
        def __init__(self) -> None:
            self.writes = 0

        def keep_dead_letter(self, queue: Any, letter: Any) -> str:
            self.writes += 1
            if self.writes == 3:
                raise RuntimeError("S3 is down")
            return store.parked.keep_dead_letter(queue, letter)

    # When the bucket fails in the middle of a sweep
    with pytest.raises(RuntimeError):
        sweep_dead_letters("ingest", url, store.queues, FailingOnThirdWrite())

    # Then what was written is off the queue, the rest is still on it (none lost), and a re-run (or a
    # sweep repeated over letters already written) parks every letter exactly once
    assert len(parked_objects(aws, "ingest")) == 2
    visible = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"]
    assert visible == "3"  # visible again at once
    swept = sweep_dead_letters("ingest", url, store.queues, store.parked)
    assert (swept.kept, swept.finished) == (3, True)
    bodies = sorted(d["body"] for d in parked_objects(aws, "ingest"))
    assert bodies == sorted(queue_message(f"user-{n}", f"m-{n}") for n in range(5))


def test_a_sweep_does_bounded_work_and_stops_when_its_time_is_spent(aws, target):
    from segment_bridge.dead_letters import sweep_dead_letters

    store, url = target.store, aws.queue_urls["IngestDLQ"]
    for n in range(25):
        boto3.client("sqs").send_message(QueueUrl=url, MessageBody=queue_message(f"user-{n}", f"m-{n}"))

    bounded = sweep_dead_letters("ingest", url, store.queues, store.parked, limit=10)
    checks = iter([False, True])
    timed = sweep_dead_letters("ingest", url, store.queues, store.parked, out_of_time=lambda: next(checks))

    assert (bounded.kept, bounded.finished) == (10, False)
    assert (timed.kept, timed.finished) == (10, False)  # one receive of 10, then out of time
    assert sweep_dead_letters("ingest", url, store.queues, store.parked).kept == 5
    assert len(parked_objects(aws, "ingest")) == 25


def test_the_daily_purge_removes_a_deleted_users_parked_events_and_keeps_everyone_elses(
    processor, workspaces, aws, target, run_jobs
):
    """Privacy deletes reach parked/: outbound events are removed, ingest dead letters rewritten."""
    from segment_bridge.envelope import pack, unpack
    from segment_bridge.ingest.intake import serialise
    from tests.functional.conftest import event

    t1, t2 = "2026-01-01T10:00:00.000Z", "2026-01-02T10:00:00.000Z"
    processor([event("identify", "i", t1, anonymousId="anon-1")])
    sqs = boto3.client("sqs")
    dead = [
        [
            event("track", "lost", t1, event="Lost"),
            event("track", "anon", t1, user=None, anonymousId="anon-1", event="Lost"),
            event("track", "kept", t1, user="user-2", event="Kept"),
        ],
        [event("track", "lost-2", t1, event="Lost")],
    ]
    for n, events in enumerate(dead):
        (body,) = pack(
            [serialise(e) for e in events],
            workspace_id=WS,
            request_id=f"req-{n}",
            received_at=t1,
            max_bytes=262_144,
        )
        sqs.send_message(QueueUrl=aws.queue_urls["IngestDLQ"], MessageBody=body)
    for workspace_id, user in ((WS, "user-1"), (WS, "user-2"), ("ws_signed", "user-1")):
        track = {"type": "track", "userId": user, "event": "Out", "timestamp": t1, "messageId": f"sbo-{user}"}
        workspaces.park_outbound("Segment answered 400", track, workspace_id=workspace_id)
    processor([event("delete", "d", t2)], message_id="del")

    answer = sweep("purge")  # the daily run: the sweep, then the purge job planned
    run_jobs()  # the JobsFunction's workers

    assert answer["ingest_dead_letters_kept"] == 2
    (job,) = workspaces.jobs.jobs(kind="purge")
    assert job.counters["events_changed"] == 6  # raw/: i, d; parked/: lost, anon, lost-2, user-1's outbound
    outbound = sorted((d["workspace_id"], d["record"]["userId"]) for d in parked_objects(aws, "emitter"))
    assert outbound == [(WS, "user-2"), ("ws_signed", "user-1")]  # another workspace's user-1 is not ours
    (letter,) = parked_objects(aws, "ingest")
    envelope, events = unpack(letter["body"])
    assert (envelope.workspaceId, [e["messageId"] for e in events]) == (WS, ["kept"])

    # and the rewritten dead letter still re-drives and applies
    assert dead_letters.redrive(target, "ingest", 100).redriven == 1
    from bridge_dev.runtime import lambda_sqs_event
    from tests.conftest import lambda_function

    messages = receive_all(aws.queue_urls["IngestQueue"])
    lambda_function("ProcessorFunction").invoke(lambda_sqs_event(aws.queue_arns["IngestQueue"], messages))
    assert workspaces.read_profile(WS, "U", "user-2").counts == {"Kept": 1}
    assert workspaces.read_profile(WS, "U", "user-1") is None


def test_two_emitter_redrives_at_once_send_each_parked_event_once(emitter, aws, target, monkeypatch):
    # Given three events parked because their workspace had no destination yet, then a destination
    for n in range(3):
        publish(aws, f"EVT#{n}")
    emitter.invoke(stream_lambda_event(aws.tables["OutboxTable"]), seconds_left=SECONDS_LEFT)
    assert len(parked_objects(aws, "emitter")) == 3
    with FakeSegment({WRITE_KEY}).start() as segment:
        target.store.set_segment_destination(WS, WRITE_KEY, segment.url)

        # When a second re-drive starts while the first is sending (a hook at the step boundary)
        from segment_bridge.errors import Conflict

        second: list[BaseException | dead_letters.Redrive] = []
        sending = dead_letters._redrive_emitter

        def first_chunk(*args: Any, **kwargs: Any) -> Any:
            try:
                second.append(dead_letters.redrive(target, "emitter", 100))
            except Conflict as error:
                second.append(error)
            return sending(*args, **kwargs)

        monkeypatch.setattr(dead_letters, "_redrive_emitter", first_chunk)
        result = dead_letters.redrive(target, "emitter", 100)

        # Then the second is refused (the lease is held) and each parked event is sent once
        (refused,) = second
        assert isinstance(refused, Conflict)
        assert "lease" in str(refused)
        assert result.redriven == 3
        assert sorted(segment.deliveries.values()) == [1, 1, 1]
    assert parked_objects(aws, "emitter") == []
    monkeypatch.setattr(dead_letters, "_redrive_emitter", sending)
    assert dead_letters.redrive(target, "emitter", 100).redriven == 0  # released: the next one may run


def test_a_redrive_lease_left_by_a_redrive_that_died_is_taken_over_once_expired(aws, target):
    import time

    from segment_bridge.errors import Conflict

    parked = target.store.parked
    held = parked.take_lease("redrive-emitter", "died", time.time() - 1000, 300)  # expired long ago
    taken = parked.take_lease("redrive-emitter", "alive", time.time(), 300)
    assert taken.holder == "alive"
    with pytest.raises(Conflict):
        parked.take_lease("redrive-emitter", "third", time.time(), 300)
    with pytest.raises(Conflict):
        parked.renew_lease(held, time.time(), 300)  # the dead one cannot come back and renew it


def test_a_retry_message_the_function_kept_failing_on_is_listed_and_redriven_from_the_bucket(aws, target):
    from segment_bridge.outbound.retries import retry_messages
    from segment_bridge.outbound.track import track_call

    # Given a retry message that reached the EmitterDLQ (the retry queue's redrive policy: AWS failing)
    item = {"pk": f"WS#{WS}", "sk": "EVT#1", "event": "Flow Completed", "userId": "user-42"}
    event = track_call(
        item, table="OutboxTable", keys={"pk": item["pk"], "sk": "EVT#1"}, record_id="1", created_at=0
    )
    (body,) = retry_messages(
        [event],
        attempt=3,
        not_before=0,
        reason="Segment kept answering 503",
        response=None,
        max_bytes=262_144,
    )
    boto3.client("sqs").send_message(QueueUrl=aws.queue_urls["EmitterDLQ"], MessageBody=body)

    # Then it is listed as what it is, and a re-drive sends its events once and removes it
    (listed,) = dead_letters.list_dead_letters(target, "emitter", 100)
    assert (listed["kind"], listed["workspace_id"], listed["events"]) == ("retry message", WS, 1)
    with FakeSegment({WRITE_KEY}).start() as segment:
        target.store.set_segment_destination(WS, WRITE_KEY, segment.url)
        assert dead_letters.redrive(target, "emitter", 100).redriven == 1
        assert segment.deliveries == {event.payload["messageId"]: 1}
    assert parked_objects(aws, "emitter") == []
