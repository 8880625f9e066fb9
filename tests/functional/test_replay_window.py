"""A replay job's window (jobs/replay.py, docs/archive-jobs.md): at most the window of its messages queued
on the IngestQueue and not yet applied, page tasks waiting with SQS's delay while it is full, and page
tasks killed at the window's boundaries (just after a reservation, just after its send, just before a
wait's delayed copy is sent) losing nothing and applying nothing twice."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import timedelta
from typing import Any

import boto3
import pytest

from bridge_dev.runtime import lambda_sqs_event
from tests.conftest import lambda_function
from tests.functional.test_archive_jobs import DAY, WS, Killed, archived_event

WINDOW = 2
USERS = 5


def archive(store: Any, days: int, objects_per_day: int, per_object: int) -> Counter[str]:
    """raw/ objects as the processor archives them; each user's number of archived events."""
    users: Counter[str] = Counter()
    n = 0
    for day in range(days):
        for k in range(objects_per_day):
            events = []
            for _ in range(per_object):
                user = f"u-{n % USERS}"
                users[user] += 1
                events.append(archived_event(n, user))
                n += 1
            store.archive.archive_raw(WS, DAY + timedelta(days=day), f"req-{day}-{k:03d}", events)
    return users


class Pipeline:
    """The JobsQueue's tasks (engine.run_task, as the JobsFunction runs them) and the IngestQueue's
    messages (the ProcessorFunction) interleaved at random, one step at a time; the page tasks killed at
    the window's boundaries by hooks on the store's AWS calls. A killed task's message comes back (its
    visibility timeout), and so does a delayed one (the test does not wait its seconds: each delay is
    recorded)."""

    def __init__(self, aws: Any, store: Any, rng: random.Random, monkeypatch: pytest.MonkeyPatch) -> None:
        self.aws, self.store, self.rng = aws, store, rng
        self.sqs = boto3.client("sqs")
        self.jobs_url, self.ingest_url = aws.queue_urls["JobsQueue"], aws.queue_urls["IngestQueue"]
        self.processor = lambda_function("ProcessorFunction")
        self.delays: list[int] = []
        self.on_queue: Counter[str] = Counter()
        """The IngestQueue's messages by name, as sent and taken off (looking would receive them, and
        five receives send a message to the IngestDLQ)."""
        self.kills: Counter[str] = Counter()
        self.in_task = False
        self._armed: str | None = None
        send = type(store.jobs).send

        def send_now(repository: Any, bodies: list[str], delay: int = 0) -> None:
            if delay:
                self.delays.append(delay)
                self._maybe_kill("before the delayed copy")
            send(repository, bodies, 0)

        monkeypatch.setattr(type(store.jobs), "send", send_now)
        store.clients.dynamodb.meta.events.register("before-call", self._before)
        store.clients.sqs.meta.events.register("before-call", self._before)
        store.clients.dynamodb.meta.events.register("after-call", self._after)
        store.clients.sqs.meta.events.register("after-call", self._after)

    def close(self) -> None:
        for client in (self.store.clients.dynamodb, self.store.clients.sqs):
            client.meta.events.unregister("before-call", self._before)
            client.meta.events.unregister("after-call", self._after)

    def _maybe_kill(self, where: str) -> None:
        """The first task to reach each boundary is killed there, later ones at random."""
        if self.in_task and (where not in self.kills or self.rng.random() < 0.3):
            self.kills[where] += 1
            raise Killed

    def _before(self, model: Any, params: Any, **_: Any) -> None:
        body = params.get("body", b"")
        body = body if isinstance(body, bytes) else str(body).encode()
        self._armed = None
        if model.name == "TransactWriteItems" and b"messages_sent <= :most" in body:
            self._armed = "after a reservation"
        elif model.name in ("SendMessageBatch", "SendMessage") and self.ingest_url.encode() in body:
            sent = json.loads(body)
            for entry in sent.get("Entries", [sent]):
                self.on_queue[json.loads(entry["MessageBody"])["requestId"]] += 1
            self._armed = "after the send" if model.name == "SendMessageBatch" else None

    def _after(self, model: Any, **_: Any) -> None:
        armed, self._armed = self._armed, None
        if armed is not None:
            self._maybe_kill(armed)

    def run_task(self) -> bool:
        from segment_bridge.jobs.engine import run_task
        from segment_bridge.jobs.fleet import FINISHERS, KINDS

        got = self.sqs.receive_message(
            QueueUrl=self.jobs_url,
            MaxNumberOfMessages=1,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if not got:
            return False
        # killed at most 3 times in a row: the 5th receive would be the JobsDLQ's (maxReceiveCount)
        self.in_task = int(got[0]["Attributes"]["ApproximateReceiveCount"]) <= 3
        try:
            run_task(got[0]["Body"], self.store.jobs, self.store, lambda: False, KINDS, FINISHERS)
        except Killed:
            self.sqs.change_message_visibility(
                QueueUrl=self.jobs_url, ReceiptHandle=got[0]["ReceiptHandle"], VisibilityTimeout=0
            )
            return True
        finally:
            self.in_task = False
        self.sqs.delete_message(QueueUrl=self.jobs_url, ReceiptHandle=got[0]["ReceiptHandle"])
        return True

    def apply(self, count: int) -> bool:
        got = self.sqs.receive_message(QueueUrl=self.ingest_url, MaxNumberOfMessages=count).get(
            "Messages", []
        )
        if not got:
            return False
        answer = self.processor.invoke(
            lambda_sqs_event(self.aws.queue_arns["IngestQueue"], got), seconds_left=150
        )
        assert answer == {"batchItemFailures": []}
        for message in got:
            self.sqs.delete_message(QueueUrl=self.ingest_url, ReceiptHandle=message["ReceiptHandle"])
            self.on_queue[json.loads(message["Body"])["requestId"]] -= 1
        return True

    def queued_unapplied(self, job_id: str) -> int:
        """The job's messages on the IngestQueue (each name once: a killed task's copies are one
        message) that the processor has not applied."""
        depth = self.sqs.get_queue_attributes(
            QueueUrl=self.ingest_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        assert int(depth) == sum(self.on_queue.values())  # nothing on the queue this does not know of
        applied = {
            item["sk"]["S"].removeprefix("APPLIED#")
            for item in boto3.client("dynamodb").query(
                TableName=self.aws.tables["WorkspacesTable"],
                KeyConditionExpression="pk = :pk AND begins_with(sk, :a)",
                ExpressionAttributeValues={":pk": {"S": f"JOB#{job_id}"}, ":a": {"S": "APPLIED#"}},
            )["Items"]
        }
        return len({name for name, copies in self.on_queue.items() if copies > 0} - applied)


@pytest.fixture
def pipeline(aws, workspaces, monkeypatch):
    made = Pipeline(aws, workspaces, random.Random(0), monkeypatch)
    yield made
    made.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_replay_never_has_more_than_its_window_queued_unapplied_and_ends_exact_with_tasks_killed(
    pipeline, workspaces, monkeypatch, seed
):
    """Given 3 days of 6 archived objects, listed 4 keys a page (6 page tasks, one after another),
    When a replay with a window of 2 runs with its tasks and the processor interleaved at random and page
    tasks killed at the window's boundaries, Then at no step are more than 2 of its messages queued and
    not applied (nor reserved on its record), full windows make page tasks wait with an SQS delay of 1 to
    900 s, and the job ends with every count exact and every event applied once."""
    from segment_bridge.jobs.replay import plan_replay

    monkeypatch.setattr("segment_bridge.store.archive.LIST_PAGE_KEYS", 4)
    users = archive(workspaces, days=3, objects_per_day=6, per_object=5)
    pipeline.rng.seed(seed)
    job = plan_replay(WS, DAY.date(), (DAY + timedelta(days=2)).date(), workspaces, window=WINDOW)

    most = 0
    for _ in range(3_000):
        record = workspaces.jobs.job(job.job_id)
        if record.state == "done":
            break
        if pipeline.rng.random() < 0.5:
            pipeline.run_task() or pipeline.apply(pipeline.rng.randint(1, 3))
        else:
            pipeline.apply(pipeline.rng.randint(1, 3)) or pipeline.run_task()
        queued = pipeline.queued_unapplied(job.job_id)
        reserved = record.counters["messages_sent"] - record.counters["messages_applied"]
        assert queued <= WINDOW
        assert reserved <= WINDOW
        most = max(most, queued)
    else:
        depth = {
            name: pipeline.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            for name, url in (("jobs", pipeline.jobs_url), ("ingest", pipeline.ingest_url))
        }
        raise AssertionError(f"the replay did not end: {record}, {pipeline.kills}, {depth}")
    while pipeline.apply(3):  # copies a killed task sent again: applied, counted nothing
        pass

    done = workspaces.jobs.job(job.job_id)
    assert done.state == "done"
    assert most == WINDOW
    assert set(pipeline.kills) == {"after a reservation", "after the send", "before the delayed copy"}
    assert pipeline.delays
    assert all(1 <= delay <= 900 for delay in pipeline.delays)
    c = done.counters
    assert (c["objects_read"], c["events_read"]) == (18, 90)
    assert c["messages_sent"] == c["messages_applied"] == 18
    assert c["history_written"] == 90
    assert c["tasks_done"] == c["tasks_total"]
    for user, archived in users.items():
        assert workspaces.read_profile(WS, "U", user).counts == {"Viewed": archived}
        assert len(workspaces.read_history(WS, "U", user)) == archived


def test_two_reservations_at_the_window_edge_one_is_refused_and_the_refused_task_stays_where_it_was(
    workspaces,
):
    """Two page tasks of one job reserving the last room of its window at once (each having read the
    job's counters before the other wrote): the first takes it, the second is refused as full (not as
    taken), keeps its step and cursor, and the job's messages_sent stays within the window."""
    from segment_bridge.jobs.engine import task_id_of

    jobs, windows = workspaces.jobs, workspaces.windows
    jobs.create_job("j1", "replay", WS, {"window": 3})
    jobs.add_tasks("j1", [(task_id_of("a"), "replay-page", {}), (task_id_of("b"), "replay-page", {})])
    first, second = jobs.task("j1", task_id_of("a")), jobs.task("j1", task_id_of("b"))
    # both read messages_sent = 0, messages_applied = 0: room for 3; each wants 2
    taken = windows.reserve(first, cursor={"sending": "k2"}, counters={"messages_sent": 2}, most_sent=1)
    refused = windows.reserve(second, cursor={"sending": "k9"}, counters={"messages_sent": 2}, most_sent=1)

    assert taken.task is not None
    assert (refused.task, refused.taken) == (None, False)
    assert jobs.task("j1", task_id_of("b")) == second
    assert jobs.task("j1", task_id_of("a")).cursor == {"sending": "k2"}
    assert jobs.job("j1").counters["messages_sent"] == 2
    again = windows.reserve(first, cursor={"sending": "k3"}, counters={"messages_sent": 1}, most_sent=2)
    assert again.taken  # the task moved on since it was read: another worker's


def test_replay_takes_a_window_of_its_own_and_refuses_one_below_one_message(workspaces, sb):
    """`replay WS --since D --window N` plans the job with its own window (its tasks use it instead of
    the stack's REPLAY_WINDOW_MESSAGES, the template's 60 here); a window of 0 is refused with a usage
    error, nothing planned."""
    from segment_bridge.jobs.replay import plan_replay, window_of

    archive(workspaces, days=1, objects_per_day=1, per_object=1)
    day = DAY.date().isoformat()
    refused = sb("replay", WS, "--since", day, "--until", day, "--window", "0", "--no-wait")
    assert refused.status == 2
    assert "--window" in refused.err
    assert list(workspaces.jobs.jobs(kind="replay")) == []

    answer = sb("replay", WS, "--since", day, "--until", day, "--window", "7", "--no-wait")
    assert answer.status == 0
    (job,) = workspaces.jobs.jobs(kind="replay")
    assert job.job_id == json.loads(answer.out)["job_id"]
    assert window_of(job, workspaces.settings) == 7
    default = plan_replay(WS, DAY.date(), DAY.date(), workspaces)  # no window of its own
    assert window_of(default, workspaces.settings) == workspaces.settings.replay_window_messages == 60
