"""Archive jobs against today's loops, in one run: the purge and the replay over a simulated archive.

The archive: OBJECTS raw/ objects of EVENTS_PER_OBJECT typical events each (a full queue message as the
processor archives it: ~1,000 events with a Segment context), over a few days, one deleted user's events
in one object in 20. Every AWS call waits --latency-ms first (common.InjectedLatency, a botocore hook: in
region S3 first-byte latency is of that order; moto answers at once).

- purge, today (privacy.purge.purge, unchanged from main f71d171: one object after another, in one
  invocation that never looks at its time and keeps no cursor) against the job (jobs/purge.py: page
  tasks, READ_THREADS reads at once, objects scanned for the deleted ids before any parsing), one worker
  of each; end to end at the template's JobsConcurrency is the per-worker rate times it (S3 serves
  5,500 GETs/s per prefix and every day is a prefix: the workers do not share a bottleneck);
- the largest archive each finishes within 24 h: today one invocation a day, of which the sweep leaves
  2/3 of 900 s, for all workspaces together; the job JobsConcurrency workers all day;
- dollars per purge pass per million archived events: S3 GETs, LISTs and PUTs, SQS requests, DynamoDB
  writes (transactions count double) and Lambda GB-seconds (arm64) from the calls counted and the wall
  time measured;
- replay: today's loop (f71d171's processor/replay.replay: apply_batch over each archived object, one
  after another, in the operator's process) against the job's per-invocation figures (the page task
  queues, the ProcessorFunction's handler applies), events/s.

Run: make bench   (or .venv/bin/python benchmarks/bench_archive.py [--objects 120] [--latency-ms 20])
"""

from __future__ import annotations

import argparse
import json
import math
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from common import InjectedLatency, use_fake_aws

EVENTS_PER_OBJECT = 1000
WS = "ws_bench"
DAY = datetime(2026, 1, 1, 12, tzinfo=UTC)
DELETED = "deleted-user"
# Prices (us-east-1, on-demand, arm64), dollars.
S3_GET, S3_LIST_PUT = 0.0004 / 1000, 0.005 / 1000
SQS_REQUEST = 0.40 / 1_000_000
DDB_WRITE = 1.25 / 1_000_000
LAMBDA_GB_SECOND = 0.0000133334
OLD_PURGE_SECONDS_A_DAY = 900 * 2 / 3
"""Today's daily run: one 900 s invocation, of which the sweep leaves the purge 2/3."""


def typical_event(n: int, user: str, rng: random.Random) -> dict[str, Any]:
    return {
        "type": "track",
        "event": rng.choice(["Page Viewed", "Signed Up", "Item Added", "Checkout Started"]),
        "userId": user,
        "anonymousId": f"anon-{rng.randrange(10**9):09d}",
        "messageId": f"msg-{n:09d}-{rng.randrange(10**6):06d}",
        "timestamp": "2026-01-01T12:00:00.000Z",
        "receivedAt": "2026-01-01T12:00:01.000Z",
        "properties": {"plan": rng.choice(["free", "pro"]), "value": rng.randrange(1000), "path": "/a/b"},
        "context": {
            "library": {"name": "analytics.js", "version": "2.11.1"},
            "ip": f"10.0.{rng.randrange(255)}.{rng.randrange(255)}",
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/120.0",
            "page": {"path": "/pricing", "url": "https://example.com/pricing", "title": "Pricing"},
        },
    }


class CallCounter:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, model: Any, **_: Any) -> None:
        with self.lock:
            self.calls[model.name] += 1
            if model.name == "TransactWriteItems":
                self.calls["transact_items"] += 2  # every transaction of ours: the task and the job

    def dollars(self) -> float:
        c = self.calls
        return (
            c["GetObject"] * S3_GET
            + (c["ListObjectsV2"] + c["PutObject"] + c["DeleteObject"]) * S3_LIST_PUT
            + (c["SendMessage"] + c["SendMessageBatch"] + c["ReceiveMessage"] + c["DeleteMessage"])
            * SQS_REQUEST
            + (c["PutItem"] + c["UpdateItem"] + 2 * c["transact_items"]) * DDB_WRITE
        )


def row(label: str, today: str, job: str) -> None:
    print(f"{label:<36}{today:>15} {job:>21}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--replay-objects", type=int, default=6)
    args = parser.parse_args()
    use_fake_aws()

    import boto3
    from moto import mock_aws

    from bridge_dev.runtime import lambda_environment
    from bridge_dev.template import create_resources, load_template

    latency = InjectedLatency(args.latency_ms / 1000)
    with mock_aws():
        resources = create_resources()
        with lambda_environment(resources.environment()):
            latency.install()
            counter = CallCounter()
            boto3.DEFAULT_SESSION.events.register("before-call", counter)  # type: ignore[union-attr]
            return run(args, latency, counter, load_template())


def run(args: argparse.Namespace, latency: InjectedLatency, counter: CallCounter, template: Any) -> int:
    from segment_bridge.jobs.engine import run_task
    from segment_bridge.jobs.fleet import FINISHERS, KINDS
    from segment_bridge.jobs.purge import plan_purge
    from segment_bridge.privacy.purge import purge
    from segment_bridge.store import get_store

    store = get_store()
    store.create_workspace("Bench", workspace_id=WS)
    rng = random.Random(7)
    latency.enabled = False
    raw_bytes = 0
    for n in range(args.objects):
        events = [
            typical_event(
                n * EVENTS_PER_OBJECT + k,
                DELETED if n % 20 == 0 and k % 50 == 0 else f"u-{rng.randrange(5000)}",
                rng,
            )
            for k in range(EVENTS_PER_OBJECT)
        ]
        raw_bytes += sum(len(json.dumps(e)) for e in events)
        store.archive.archive_raw(WS, DAY + timedelta(days=n % args.days), f"req-{n:05d}", events)
    concurrency = int(template["Parameters"]["JobsConcurrency"]["Default"])
    memory_gb = template["Resources"]["JobsFunction"]["Properties"]["MemorySize"] / 1024
    print(
        f"archive: {args.objects} objects x {EVENTS_PER_OBJECT} events "
        f"({raw_bytes / args.objects / 1024:.0f} KB "
        f"of JSON each), {args.latency_ms:.0f} ms per AWS call; JobsConcurrency {concurrency}, "
        f"JobsFunction {memory_gb * 1024:.0f} MB"
    )

    def list_deleted() -> None:
        store.profiles.mark_for_purge(WS, [f"U#{DELETED}"], "2026-06-01T00:00:00.000Z", f"U#{DELETED}")

    # --- today's purge: one object after another --------------------------------------------------
    list_deleted()
    latency.enabled = True
    counter.calls.clear()
    started, cpu = time.perf_counter(), time.process_time()
    old = purge(WS, store.archive, store.profiles)
    old_wall, old_cpu = time.perf_counter() - started, time.process_time() - cpu
    old_dollars = counter.dollars() + old_wall * 0.5 * LAMBDA_GB_SECOND  # PurgeFunction: 512 MB
    old_rate = old.objects_read / old_wall
    latency.enabled = False
    # the same deleted events again, so the job has as much to remove
    for n in range(0, args.objects, 20):
        events = [
            typical_event(
                n * EVENTS_PER_OBJECT + k, DELETED if k % 50 == 0 else f"u-{rng.randrange(5000)}", rng
            )
            for k in range(EVENTS_PER_OBJECT)
        ]
        store.archive.archive_raw(WS, DAY + timedelta(days=n % args.days), f"req-{n:05d}", events)

    # --- the job: one worker running every task -----------------------------------------------------
    list_deleted()
    sqs = store.clients.sqs
    url = store.settings.jobs_queue_url
    job = plan_purge(WS, store)
    assert job is not None
    latency.enabled = True
    counter.calls.clear()
    started, cpu = time.perf_counter(), time.process_time()
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", []):
        run_task(got[0]["Body"], store.jobs, store, lambda: False, KINDS, FINISHERS)
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    new_wall, new_cpu = time.perf_counter() - started, time.process_time() - cpu
    latency.enabled = False
    record = store.jobs.job(job.job_id)
    assert record.state == "done", record.state
    new_dollars = counter.dollars() + new_wall * memory_gb * LAMBDA_GB_SECOND
    new_rate = record.counters["objects_read"] / new_wall
    cpu_rate = record.counters["objects_read"] / new_cpu
    worker_rate = min(new_rate, cpu_rate)  # at one vCPU, this process's CPU per object bounds a worker
    per_million = 1_000_000 / (args.objects * EVENTS_PER_OBJECT)

    print("\npurge                               today (f71d171)     job (this branch)")
    row("events removed", f"{old.events_removed:,}", f"{record.counters['events_changed']:,}")
    print(f"objects/s, one worker               {old_rate:>15.1f} {new_rate:>21.1f}")
    row("CPU ms per object", f"{old_cpu / args.objects * 1000:.1f}", f"{new_cpu / args.objects * 1000:.1f}")
    print(f"objects/s end to end (defaults)     {old_rate:>15.1f} {worker_rate * concurrency:>21.1f}")
    old_day = old_rate * OLD_PURGE_SECONDS_A_DAY * EVENTS_PER_OBJECT
    new_day = worker_rate * concurrency * 86_400 * EVENTS_PER_OBJECT
    print(f"largest archive purged in 24 h      {old_day / 1e6:>13.1f} M {new_day / 1e9:>19.1f} B")
    row(
        "$ per pass per million events",
        f"{old_dollars * per_million:.5f}",
        f"{new_dollars * per_million:.5f}",
    )
    print(
        f"(job: {record.counters['tasks_total']} tasks; AWS calls {dict(counter.calls)}; "
        "one worker's rate is "
        f"min(wall {new_rate:.0f}/s, CPU {cpu_rate:.0f}/s) x JobsConcurrency {concurrency})"
    )

    # --- replay ---------------------------------------------------------------------------------------
    replay_section(store, args, latency)
    return 0


def replay_section(store: Any, args: argparse.Namespace, latency: InjectedLatency) -> None:
    from segment_bridge.jobs.engine import run_task
    from segment_bridge.jobs.fleet import FINISHERS, KINDS
    from segment_bridge.jobs.replay import plan_replay
    from segment_bridge.mapping import Mapping
    from segment_bridge.processor.message import receive_message
    from segment_bridge.processor.unit import apply_batch

    ws = "ws_replay"
    store.create_workspace("Replay", workspace_id=ws)
    rng = random.Random(11)
    latency.enabled = False
    for n in range(args.replay_objects):
        events = [
            typical_event(n * EVENTS_PER_OBJECT + k, f"u-{rng.randrange(500)}", rng)
            for k in range(EVENTS_PER_OBJECT)
        ]
        store.archive.archive_raw(ws, DAY, f"req-{n:05d}", events)
    events_total = args.replay_objects * EVENTS_PER_OBJECT
    latency.enabled = True
    started = time.perf_counter()
    for events in store.archive.archived_batches(ws, DAY.date()):  # f71d171's replay loop
        apply_batch(ws, events, Mapping(), store)
    old_wall = time.perf_counter() - started

    job = plan_replay(ws, DAY.date(), DAY.date(), store)
    jobs_url, ingest_url = store.settings.jobs_queue_url, store.settings.ingest_queue_url
    sqs = store.clients.sqs
    started = time.perf_counter()
    while got := sqs.receive_message(QueueUrl=jobs_url, MaxNumberOfMessages=1).get("Messages", []):
        run_task(got[0]["Body"], store.jobs, store, lambda: False, KINDS, FINISHERS)
        sqs.delete_message(QueueUrl=jobs_url, ReceiptHandle=got[0]["ReceiptHandle"])
    queued = time.perf_counter() - started

    class Mappings:
        def get(self, workspace_id: str) -> Mapping:
            return Mapping()

        def refresh(self, workspace_id: str) -> Mapping:
            return Mapping()

    applying = time.perf_counter()
    while got := sqs.receive_message(QueueUrl=ingest_url, MaxNumberOfMessages=1).get("Messages", []):
        receive_message(got[0]["Body"], store, Mappings(), math.inf)
        sqs.delete_message(QueueUrl=ingest_url, ReceiptHandle=got[0]["ReceiptHandle"])
    applied = time.perf_counter() - applying
    latency.enabled = False
    record = store.jobs.job(job.job_id)
    print(f"\nreplay of {events_total:,} archived events   today (f71d171)     job (this branch)")
    row(
        "events/s, one process/worker",
        f"{events_total / old_wall:.0f}",
        f"{events_total / (queued + applied):.0f}",
    )
    print(f"queueing (JobsFunction) events/s    {'-':>15} {events_total / queued:>21.0f}")
    print(f"applying, per processor invocation  {'-':>15} {events_total / applied:>21.0f}")
    print(
        f"(job {record.state}: {record.counters['messages_applied']}/{record.counters['messages_sent']} "
        f"messages, {record.counters['profiles_changed']} profiles changed; on AWS the applying runs on up "
        "to the ProcessorFunction's MaximumConcurrency invocations at once, in the replay's own group)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
