"""Many workers of one job save to the same job record (pk=JOBS sk=JOB#id): DynamoDB cancels a
transaction that meets another one in flight on an item (TransactionCanceledException, reason
TransactionConflict), which moto never does. These tests cancel the jobs' transactions as DynamoDB would
and check that a cancelled save or plan is tried again, not taken for another worker's or for a task
planned already (docs/archive-jobs.md, "Many workers, one job record")."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from tests.functional.test_archive_jobs import (
    OTHER,
    WS,
    Fleet,
    bucket_objects,
    build_archive,
    lines_of,
    list_for_purge,
)


class Conflicts:
    """Cancels `rate` of the TransactWriteItems calls before they reach the table, as DynamoDB cancels
    one that conflicts with another transaction in flight: nothing of it is written."""

    def __init__(self, client: Any, rng: random.Random, rate: float) -> None:
        self.client, self.rng, self.rate = client, rng, rate
        self.cancelled = 0
        client.meta.events.register("before-call.dynamodb.TransactWriteItems", self)

    def __call__(self, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if self.rng.random() >= self.rate:
            return None
        self.cancelled += 1
        # ours are two items each: the task (or a task planned) and the job record, which conflicts
        reasons = [{"Code": "None"}, {"Code": "TransactionConflict", "Message": "Transaction is ongoing"}]
        response = AWSResponse("https://dynamodb.invalid", 400, {}, None)
        return response, {
            "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
            "CancellationReasons": reasons,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    def stop(self) -> None:
        self.client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", self)


@pytest.fixture
def fleet(aws, workspaces) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def make(**options: Any) -> Fleet:
        made.append(Fleet(aws, random.Random(options.pop("seed", 0)), **options))
        return made[-1]

    yield make
    for workers in made:
        for client in (workers.store.clients.s3, workers.store.clients.dynamodb, workers.store.clients.sqs):
            client.meta.events.unregister("before-call", workers._before_call)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_purge_whose_job_record_saves_conflict_still_purges_every_page_with_exact_counts(
    aws, workspaces, fleet, seed, monkeypatch
):
    """Given a purge job of several pages, When a quarter of its transactions (task saves with the job's
    counters, tasks planned) are cancelled as conflicting and a fifth of its workers are killed at a
    random AWS call, Then the job ends done, its counts are exact, every deleted user's event is gone and
    every other event's line is byte-identical, in its object, in order."""
    from segment_bridge.jobs.purge import plan_purge

    monkeypatch.setattr("segment_bridge.store.archive.LIST_PAGE_KEYS", 10)
    monkeypatch.setattr("segment_bridge.jobs.purge.CHUNK_OBJECTS", 4)
    monkeypatch.setattr("segment_bridge.jobs.engine.SAVE_BACKOFF_SECONDS", 0.0)
    deleted = {"gone-1"}
    theirs = build_archive(workspaces, WS, objects=60, per_object=6, deleted=deleted)
    build_archive(workspaces, OTHER, objects=6, per_object=6, deleted=deleted)
    list_for_purge(workspaces, WS, deleted)
    before = bucket_objects(aws)
    job = plan_purge(WS, workspaces)
    assert job is not None

    workers = fleet(seed=seed, kill_rate=0.2)
    conflicts = Conflicts(workers.store.clients.dynamodb, random.Random(seed), rate=0.25)
    try:
        workers.run()
    finally:
        conflicts.stop()

    assert conflicts.cancelled > 0
    record = workspaces.jobs.job(job.job_id)
    assert record.state == "done"
    assert record.counters["tasks_done"] == record.counters["tasks_total"]
    assert (record.counters["objects_read"], record.counters["events_read"]) == (60, 360)
    assert record.counters["events_changed"] == theirs
    after = bucket_objects(aws)
    for key, body in before.items():
        kept = [
            line
            for line in lines_of(body)
            if json.loads(line)["userId"] not in deleted or f"workspace={OTHER}" in key
        ]
        assert lines_of(after[key]) == kept, key


def test_a_save_cancelled_by_a_conflict_is_tried_again_and_one_moved_by_another_worker_is_theirs(
    aws, workspaces, monkeypatch
):
    """A task save cancelled as conflicting leaves the task at its step and is tried again (the cursor
    moves once, the job's counters are added once); a save whose task another worker moved on stops
    this worker (TaskTaken) without counting."""
    from segment_bridge.jobs.engine import TaskRun, TaskTaken

    monkeypatch.setattr("segment_bridge.jobs.engine.SAVE_BACKOFF_SECONDS", 0.0)
    jobs = workspaces.jobs
    job = jobs.create_job("J1", "purge", WS, {"users": {}, "anonymous": {}, "listed": []})
    jobs.add_tasks("J1", [("T1", "purge-page", {"prefix": "raw/", "start_after": None})])
    run = TaskRun(jobs, job, jobs.task("J1", "T1"), lambda: False)
    conflicts = Conflicts(workspaces.clients.dynamodb, random.Random(0), rate=1.0)
    calls = 0

    def once(**_: Any) -> Any:
        nonlocal calls
        calls += 1
        return conflicts() if calls == 1 else None

    conflicts.stop()
    workspaces.clients.dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", once)
    try:
        run.save({"done": "a"}, {"objects_read": 3})
    finally:
        workspaces.clients.dynamodb.meta.events.unregister("before-call.dynamodb.TransactWriteItems", once)
    assert calls == 2
    assert jobs.task("J1", "T1").cursor == {"done": "a"}
    assert jobs.job("J1").counters["objects_read"] == 3

    other = TaskRun(jobs, job, jobs.task("J1", "T1"), lambda: False)
    other.save({"done": "b"}, {"objects_read": 5})
    with pytest.raises(TaskTaken):
        run.save({"done": "c"}, {"objects_read": 7})  # read at the step `other` moved on from
    assert jobs.task("J1", "T1").cursor == {"done": "b"}
    assert jobs.job("J1").counters["objects_read"] == 8
