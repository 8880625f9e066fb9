"""Archive jobs against today's loops, in one run: the purge and the replay over a simulated archive.

The archive: OBJECTS raw/ objects of EVENTS_PER_OBJECT typical events each (a full queue message as the
processor archives it: ~1,000 events with a Segment context), over a few days, one deleted user's events
in one object in --deleted-every (20). Every AWS call waits --latency-ms first (common.InjectedLatency, a
botocore hook: in region S3 first-byte latency is of that order; moto answers at once).

#22's index of ids, its candidate designs prototyped here (not shipped: docs/archive-jobs.md) and run on the
same archive, every result compared byte for byte with the job's: the day index (design 3: built once by
reading every object, then a purge pass reads its header and one bucket per deleted id by ranged GETs and
only the objects it names or does not cover) as the purge table's third row; a sidecar per object (design
1); Bloom filters in the 2 KB of user metadata and in the key (design 2), their false positives measured.

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
import gzip
import hashlib
import json
import math
import random
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar, cast

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
S3_GB_MONTH = 0.023
RETENTION_MONTHS = 400 / 30.4
"""An archived byte is stored for ArchiveRetentionDays (400)."""
T = TypeVar("T")
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

    def got(self, parsed: Any = None, **_: Any) -> None:
        with self.lock:
            self.calls["bytes_got"] += int((parsed or {}).get("ContentLength", 0))

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


def row3(label: str, today: float, job: float, indexed: float, shape: str = "{:,.1f}") -> None:
    print(f"{label:<36}{shape.format(today):>15} {shape.format(job):>12} {shape.format(indexed):>16}")


def snapshot(store: Any) -> dict[str, bytes]:
    """Every raw/ object's bytes, by key (no latency: not part of any figure)."""
    s3, bucket = store.clients.s3, store.archive.bucket
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="raw/"):
        for summary in page.get("Contents", []):
            found[summary["Key"]] = s3.get_object(Bucket=bucket, Key=summary["Key"])["Body"].read()
    return found


def restore(store: Any, objects: dict[str, bytes]) -> None:
    """raw/ back to `objects`, byte for byte (the index prototypes' objects removed)."""
    s3, bucket = store.clients.s3, store.archive.bucket
    for prefix in ("raw/", INDEX_PREFIX):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [found["Key"] for found in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys]})
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def day_of(key: str) -> str:
    return key.rsplit("/", 1)[0] + "/"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--replay-objects", type=int, default=6)
    parser.add_argument("--deleted-every", type=int, default=20, help="the deleted user in 1 object in N")
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
            boto3.DEFAULT_SESSION.events.register("after-call.s3.GetObject", counter.got)  # type: ignore[union-attr]
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
                DELETED if n % args.deleted_every == 0 and k % 50 == 0 else f"u-{rng.randrange(5000)}",
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
    for n in range(0, args.objects, args.deleted_every):
        events = [
            typical_event(
                n * EVENTS_PER_OBJECT + k, DELETED if k % 50 == 0 else f"u-{rng.randrange(5000)}", rng
            )
            for k in range(EVENTS_PER_OBJECT)
        ]
        store.archive.archive_raw(WS, DAY + timedelta(days=n % args.days), f"req-{n:05d}", events)

    # the archive as the job and the designs each start from: the same bytes (every raw object kept)
    seeded = snapshot(store)

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
    job_calls = Counter(counter.calls)
    record = store.jobs.job(job.job_id)
    assert record.state == "done", record.state
    purged_by_job = snapshot(store)
    new_dollars = counter.dollars() + new_wall * memory_gb * LAMBDA_GB_SECOND
    new_rate = record.counters["objects_read"] / new_wall
    cpu_rate = record.counters["objects_read"] / new_cpu
    worker_rate = min(new_rate, cpu_rate)  # at one vCPU, this process's CPU per object bounds a worker
    per_million = 1_000_000 / (args.objects * EVENTS_PER_OBJECT)

    # --- design 3: the per-workspace-day index, built once (a job reading every object once) ----------
    from segment_bridge.jobs.purge import Deletions

    deletions = Deletions.of(job.params)
    days = sorted({day_of(key) for key in seeded})
    proto = Prototypes(store)
    # objects that arrive after their day's index was built (a late queue message, a re-drive): one in
    # 50, the deleted user's among them; the index does not cover them, so the pass must read them
    late = {key: body for key, body in seeded.items() if int(key.rsplit("req-", 1)[1][:5]) % 50 in (0, 7)}
    restore(store, {key: body for key, body in seeded.items() if key not in late})
    latency.enabled = True
    counter.calls.clear()
    started = time.perf_counter()
    index_bytes = sum(proto.build_day_index(day) for day in days)
    build_wall = time.perf_counter() - started
    build_dollars = counter.dollars() + build_wall * memory_gb * LAMBDA_GB_SECOND
    build_calls = Counter(counter.calls)
    latency.enabled = False
    for key, body in late.items():
        store.clients.s3.put_object(Bucket=store.archive.bucket, Key=key, Body=body)
    latency.enabled = True
    counter.calls.clear()
    started, cpu = time.perf_counter(), time.process_time()
    indexed = proto.purge_indexed(days, deletions)
    indexed_wall, indexed_cpu = time.perf_counter() - started, time.process_time() - cpu
    latency.enabled = False
    indexed_calls = Counter(counter.calls)
    indexed_dollars = counter.dollars() + indexed_wall * memory_gb * LAMBDA_GB_SECOND
    purged_by_index = {key: body for key, body in snapshot(store).items()}
    identical = purged_by_index == purged_by_job

    # --- design 3b: the same, its buckets objects of their own ---------------------------------------
    restore(store, {key: body for key, body in seeded.items() if key not in late})
    latency.enabled = True
    counter.calls.clear()
    started = time.perf_counter()
    built = [proto.build_split_index(day) for day in days]
    split_build_wall = time.perf_counter() - started
    split_build_dollars = counter.dollars() + split_build_wall * memory_gb * LAMBDA_GB_SECOND
    split_bytes, split_objects = sum(b for b, _ in built), sum(n for _, n in built)
    latency.enabled = False
    for key, body in late.items():
        store.clients.s3.put_object(Bucket=store.archive.bucket, Key=key, Body=body)
    latency.enabled = True
    counter.calls.clear()
    started = time.perf_counter()
    by_split = proto.purge_split(days, deletions)
    split_wall = time.perf_counter() - started
    latency.enabled = False
    split_calls = Counter(counter.calls)
    split_dollars = counter.dollars() + split_wall * memory_gb * LAMBDA_GB_SECOND
    split_identical = snapshot(store) == purged_by_job

    # --- design 1: a sidecar per object (one more PUT when it is written), read instead of it ---------
    restore(store, seeded)
    latency.enabled = True
    counter.calls.clear()
    sidecar_bytes = proto.write_sidecars(days)
    sidecar_write_calls = Counter(counter.calls)
    counter.calls.clear()
    started = time.perf_counter()
    by_sidecar = proto.purge_indexed(days, deletions, with_sidecars=True)
    sidecar_wall = time.perf_counter() - started
    latency.enabled = False
    sidecar_calls = Counter(counter.calls)
    sidecar_dollars = counter.dollars() + sidecar_wall * memory_gb * LAMBDA_GB_SECOND
    sidecar_identical = snapshot(store) == purged_by_job

    objects_bytes = sum(len(body) for body in seeded.values())
    print("\npurge pass                          today (f71d171)   job (main)  job + day index")
    row3("events removed", old.events_removed, record.counters["events_changed"], indexed["events_changed"])
    row3(
        "GETs (ranged ones included)",
        args.objects,
        job_calls["GetObject"],
        indexed_calls["GetObject"],
    )
    row3(
        "MB read from S3", objects_bytes / 1e6, job_calls["bytes_got"] / 1e6, indexed_calls["bytes_got"] / 1e6
    )
    row3("wall s, one worker", old_wall, new_wall, indexed_wall)
    row3("archive objects covered per s", old_rate, new_rate, args.objects / indexed_wall)
    row3(
        "CPU ms per archive object",
        old_cpu / args.objects * 1000,
        new_cpu / args.objects * 1000,
        indexed_cpu / args.objects * 1000,
    )
    row3(
        "$ per pass per million events",
        old_dollars * per_million,
        new_dollars * per_million,
        indexed_dollars * per_million,
        "{:.6f}",
    )
    print(f"objects/s end to end (defaults)     {old_rate:>15.1f} {worker_rate * concurrency:>12.1f}")
    old_day = old_rate * OLD_PURGE_SECONDS_A_DAY * EVENTS_PER_OBJECT
    new_day = worker_rate * concurrency * 86_400 * EVENTS_PER_OBJECT
    print(
        f"largest archive purged in 24 h      {old_day / 1e6:>13.1f} M {new_day / 1e9:>10.1f} B"
        "   (a projection: bench_archive_fleet.py measures workers at once)"
    )
    print(
        f"(job: {record.counters['tasks_total']} tasks; AWS calls {dict(job_calls)}; one worker's rate is "
        f"min(wall {new_rate:.0f}/s, CPU {cpu_rate:.0f}/s) x JobsConcurrency {concurrency})"
    )
    index_per_m = index_bytes * per_million
    storage = index_per_m / 1e9 * S3_GB_MONTH * RETENTION_MONTHS
    print(
        f"\ndesign 3, day index: reads {args.objects / max(1, indexed_calls['GetObject']):.1f}x fewer GETs, "
        f"{job_calls['bytes_got'] / max(1, indexed_calls['bytes_got']):.1f}x fewer bytes than the job "
        f"({len(late)} objects written after the index, read as it does not cover them); every other "
        f"event byte-identical to the job's purge: {identical}"
    )
    print(
        f"  built once per day: {len(days)} index objects, {index_bytes / 1e3:.0f} KB "
        f"({index_bytes / objects_bytes * 100:.0f}% of the objects' bytes); build {build_wall:.1f} s, calls "
        f"{dict(build_calls)}"
    )
    print(
        f"  extra $ per million events: build {build_dollars * per_million:.6f} (a GET per object, "
        f"Lambda), storage {storage:.6f} ({index_per_m / 1e6:.1f} MB x {RETENTION_MONTHS:.1f} months), "
        f"total {build_dollars * per_million + storage:.6f}; per pass {indexed_dollars * per_million:.6f} "
        f"against {new_dollars * per_million:.6f}"
    )
    print(f"  the pass's calls: {dict(indexed_calls)}")
    split_storage = split_bytes * per_million / 1e9 * S3_GB_MONTH * RETENTION_MONTHS
    print(
        f"design 3b, its buckets objects of their own: {split_calls['GetObject']} GETs "
        f"({args.objects / max(1, split_calls['GetObject']):.1f}x fewer), "
        f"{split_calls['bytes_got'] / 1e6:.2f} MB "
        f"({job_calls['bytes_got'] / max(1, split_calls['bytes_got']):.1f}x fewer), {split_wall:.1f} s; "
        f"{by_split['events_changed']:,} events removed, byte-identical {split_identical}; built as "
        f"{split_objects} objects in {split_build_wall:.1f} s; extra $ per million events "
        f"{split_build_dollars * per_million + split_storage:.6f} "
        f"(build {split_build_dollars * per_million:.6f}, storage {split_storage:.6f}); "
        f"per pass {split_dollars * per_million:.6f}; calls {dict(split_calls)}"
    )
    sidecar_per_m = sidecar_bytes * per_million
    sidecar_put = sidecar_write_calls["PutObject"] * S3_LIST_PUT * per_million
    sidecar_extra = sidecar_put + sidecar_per_m / 1e9 * S3_GB_MONTH * RETENTION_MONTHS
    print(
        f"design 1, sidecar per object: {sidecar_calls['GetObject']} GETs "
        f"({args.objects / max(1, sidecar_calls['GetObject']):.1f}x fewer), "
        f"{sidecar_calls['bytes_got'] / 1e6:.2f} MB "
        f"({job_calls['bytes_got'] / max(1, sidecar_calls['bytes_got']):.1f}x "
        f"fewer), {sidecar_wall:.1f} s; {by_sidecar['events_changed']:,} events removed, byte-identical "
        f"{sidecar_identical}; extra $ per million events {sidecar_extra:.6f} (PUTs {sidecar_put:.6f}, "
        f"{sidecar_per_m / 1e6:.1f} MB stored), per pass {sidecar_dollars * per_million:.6f}"
    )
    ids_per_object = [len(entity_ids(gzip.decompress(body))) for body in list(seeded.values())[:20]]
    distinct = sorted(ids_per_object)[len(ids_per_object) // 2]
    sample = entity_ids(gzip.decompress(next(iter(seeded.values()))))
    metadata_bits = (METADATA_BYTES - len("ids")) * 3 // 4 * 8  # base64 in a header value
    key_bits = (KEY_BYTES - len(next(iter(seeded)))) * 3 // 4 * 8
    for label, bits in (("2 KB user metadata", metadata_bits), ("the key's free bytes", key_bits)):
        k, theory, measured = bloom_false_positives(sample, bits, 20_000, random.Random(3))
        print(
            f"design 2, Bloom filter in {label}: {bits:,} bits over {len(sample):,} ids (median per object "
            f"{distinct:,}), k={k}: false positives {theory:.3f} (theory), {measured:.3f} (20,000 probes)"
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


# --- #22's per-object index of ids: the candidate designs, prototyped here (not shipped) -----------------
INDEX_PREFIX = "index/"
"""Where the prototypes keep what they write (apart from raw/, which replay and the purge list)."""
METADATA_BYTES = 2048
"""S3's user-defined metadata per object: the UTF-8 bytes of every key and value together."""
KEY_BYTES = 1024
"""S3's object key limit (UTF-8 bytes)."""


def id_hash(value: str) -> int:
    """An id's 64-bit digest: what the prototypes index (the purge matches str(value), privacy.purge)."""
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")


def entity_ids(data: bytes, kind: str = "raw") -> set[int]:
    """The digests of every id the purge matches in an object (userId, anonymousId, previousId: a superset
    of what privacy.purge.deleted looks at; a false positive costs one read, never a missed event)."""
    found = set()
    for line in data.splitlines():
        record = json.loads(line)
        event = record if kind == "raw" else record.get("event")
        if not isinstance(event, dict):
            continue
        for name in ("userId", "anonymousId", "previousId"):
            value = event.get(name)
            if isinstance(value, (str, int, float)):
                found.add(id_hash(str(value)))
    return found


SPLIT_PAIRS_PER_BUCKET = 10922
"""Design 3b's bucket objects: ~64 KB of 6-byte pairs each."""
PAIRS_PER_BUCKET = 2730
"""(digest, ordinal) pairs of 6 bytes (the digest's low 32 bits, its top bits are the bucket's; the key's
ordinal, 16 bits, 32 past 65,535 keys): ~16 KB, what one ranged GET of a day index reads per deleted id."""


@dataclass
class DayIndex:
    """Design 3: one object per workspace-day, built once the day is closed: a gzip header (the keys it
    covers, each with the ETag it had when read, and where each bucket of pairs begins) and then the
    (id digest, key ordinal) pairs, sorted by digest, in 2**n buckets by the digest's top bits: a purge
    reads the header and, per deleted id, one bucket (ranged GETs), never the whole index."""

    covered: list[tuple[str, str]]
    pairs: list[tuple[int, int]]

    @classmethod
    def of(cls, objects: list[tuple[str, str, set[int]]]) -> DayIndex:
        objects = sorted(objects)
        pairs = sorted((h, n) for n, (_, _, ids) in enumerate(objects) for h in ids)
        return cls([(key, etag) for key, etag, _ in objects], pairs)

    @staticmethod
    def bits_for(pairs: int) -> int:
        return max(0, math.ceil(math.log2(max(1, pairs / PAIRS_PER_BUCKET))))

    def encode(self) -> bytes:
        bits = self.bits_for(len(self.pairs))
        wide = len(self.covered) > 0xFFFF
        grouped: list[list[tuple[int, int]]] = [[] for _ in range(2**bits)]
        for h, n in self.pairs:
            grouped[h >> (64 - bits) if bits else 0].append((h, n))
        buckets = [
            array("I", [h & 0xFFFFFFFF for h, _ in chosen]).tobytes()
            + array("I" if wide else "H", [n for _, n in chosen]).tobytes()
            for chosen in grouped
        ]
        offsets, at = [], 0
        for body in buckets:
            offsets.append(at)
            at += len(body)
        header = gzip.compress(
            json.dumps(
                {"covered": self.covered, "bits": bits, "wide": wide, "offsets": [*offsets, at]}
            ).encode(),
            mtime=0,
        )
        return len(header).to_bytes(4, "big") + header + b"".join(buckets)


class IndexReader:
    """A day index read with ranged GETs: its header, then the buckets of the digests looked up."""

    def __init__(self, ranged: Callable[[int, int], bytes]) -> None:
        self.ranged = ranged
        first = ranged(0, 65536)
        size = int.from_bytes(first[:4], "big")
        data = first[4 : 4 + size]
        if len(data) < size:
            data += ranged(len(first), 4 + size - 1)
        header = json.loads(gzip.decompress(data))
        self.start = 4 + size
        self.covered: list[tuple[str, str]] = [(key, etag) for key, etag in header["covered"]]
        self.bits, self.offsets = int(header["bits"]), list(header["offsets"])
        self.width = 4 if header["wide"] else 2
        self._memo: tuple[set[int], list[tuple[int, int]]] | None = None

    def bucket_of(self, digest: int) -> int:
        return digest >> (64 - self.bits) if self.bits else 0

    def decode(self, bucket: int, body: bytes) -> list[tuple[int, int]]:
        """A bucket's pairs, each digest whole again (its top bits are the bucket's)."""
        count = len(body) // (4 + self.width)
        low, ordinals = array("I"), array("I" if self.width == 4 else "H")
        low.frombytes(body[: count * 4])
        ordinals.frombytes(body[count * 4 :])
        top = bucket << (64 - self.bits) if self.bits else 0
        return [(top | h, n) for h, n in zip(low, ordinals, strict=True)]

    def pairs(self, digests: set[int]) -> list[tuple[int, int]]:
        if self._memo is not None and self._memo[0] == digests:
            return self._memo[1]
        found = []
        for bucket in sorted({self.bucket_of(d) for d in digests}):
            low, high = self.offsets[bucket], self.offsets[bucket + 1]
            if high == low:
                continue
            wanted = {d & 0xFFFFFFFF for d in digests if self.bucket_of(d) == bucket}
            pairs = self.decode(bucket, self.ranged(self.start + low, self.start + high - 1))
            found += [(h, n) for h, n in pairs if h & 0xFFFFFFFF in wanted]
        self._memo = (set(digests), found)
        return found

    def holders(self, digests: set[int]) -> set[str]:
        return {self.covered[n][0] for _, n in self.pairs(digests)}

    def without(self, digests: set[int], etags: dict[str, str | None], full: bytes) -> DayIndex:
        """The whole index purged of `digests` (read once, in `full`, to be written again); keys
        rewritten get their new ETag, keys deleted go."""
        gone = {(self.bucket_of(d), d & 0xFFFFFFFF) for d in digests}
        pairs = []
        for bucket in range(len(self.offsets) - 1):
            body = full[self.start + self.offsets[bucket] : self.start + self.offsets[bucket + 1]]
            pairs += [(h, n) for h, n in self.decode(bucket, body) if (bucket, h & 0xFFFFFFFF) not in gone]
        objects: dict[str, tuple[str, set[int]]] = {}
        for key, etag in self.covered:
            new = etags.get(key, etag)
            if new is not None:
                objects[key] = (new, set())
        for h, n in pairs:
            key = self.covered[n][0]
            if key in objects:
                objects[key][1].add(h)
        return DayIndex.of([(key, etag, ids) for key, (etag, ids) in objects.items()])


class Prototypes:
    """The designs' writes and purge passes, on the store's S3 client, READ_THREADS calls at once."""

    def __init__(self, store: Any) -> None:
        from segment_bridge.concurrency import pool_of
        from segment_bridge.jobs.purge import READ_THREADS

        self.store = store
        self.s3 = store.clients.s3
        self.bucket = store.archive.bucket
        self.pool = pool_of("bench-prototype", READ_THREADS)
        self.bytes_read = 0
        self.lock = threading.Lock()

    def at_once(self, work: list[Callable[[], T]]) -> list[T]:
        from segment_bridge.concurrency import each_at_once

        return each_at_once(work, self.pool)

    def listing(self, prefix: str) -> dict[str, str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {found["Key"]: found["ETag"] for page in pages for found in page.get("Contents", [])}

    def get(self, key: str) -> bytes | None:
        try:
            body = bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None
        with self.lock:
            self.bytes_read += len(body)
        return body

    def read_lines(self, key: str) -> bytes | None:
        body = self.get(key)
        return None if body is None else gzip.decompress(body)

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    # design 1: a sidecar per object (written with it), read instead of the object
    def write_sidecars(self, days: list[str]) -> int:
        keys = [key for day in days for key in self.listing(day)]
        ids = self.at_once([partial(self._ids_of, key) for key in keys])
        sidecars = [
            (f"{INDEX_PREFIX}sidecar/{key}.ids", array("Q", sorted(found)).tobytes())
            for key, found in zip(keys, ids, strict=True)
        ]
        self.at_once([partial(self.put, key, body) for key, body in sidecars])
        return sum(len(body) for _, body in sidecars)

    def _ids_of(self, key: str) -> set[int]:
        data = self.read_lines(key)
        return set() if data is None else entity_ids(data)

    def holders_by_sidecar(self, day: str, digests: set[int]) -> set[str]:
        keys = list(self.listing(day))
        bodies = self.at_once([partial(self.get, f"{INDEX_PREFIX}sidecar/{key}.ids") for key in keys])
        found = set()
        for key, body in zip(keys, bodies, strict=True):
            sidecar = array("Q")
            sidecar.frombytes(body or b"")
            if body is None or digests & set(sidecar):  # no sidecar (written before them): read it
                found.add(key)
        return found

    # design 3: a per-workspace-day index, built by a job once the day is closed
    def build_day_index(self, day: str) -> int:
        listed = self.listing(day)
        ids = self.at_once([partial(self._ids_of, key) for key in listed])
        index = DayIndex.of(
            [(key, etag, found) for (key, etag), found in zip(listed.items(), ids, strict=True)]
        )
        body = index.encode()
        self.put(self.index_key(day), body)
        return len(body)

    def index_key(self, day: str) -> str:
        return f"{INDEX_PREFIX}day/{day.rstrip('/')}.idx.gz"

    def ranged(self, key: str, first: int, last: int) -> bytes:
        body = bytes(
            self.s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={first}-{last}")["Body"].read()
        )
        with self.lock:
            self.bytes_read += len(body)
        return body

    def holders_by_day_index(self, day: str, digests: set[int]) -> tuple[set[str], IndexReader | None]:
        """The keys to read: those the index says hold a digest, and every key it does not cover (written
        after it was built, or changed since: another ETag)."""
        listed = self.listing(day)
        try:
            index = IndexReader(partial(self.ranged, self.index_key(day)))
        except self.s3.exceptions.NoSuchKey:
            return set(listed), None
        covered = dict(index.covered)
        unknown = {key for key, etag in listed.items() if covered.get(key) != etag}
        return (index.holders(digests) & set(listed)) | unknown, index

    def purge_indexed(self, days: list[str], deletions: Any, with_sidecars: bool = False) -> dict[str, int]:
        """A purge pass through an index: only the objects it names are read (and rewritten as the job
        does: jobs.purge.examine); the day index is then purged of the deleted ids itself."""
        from segment_bridge.jobs.purge import examine

        digests = {id_hash(entity_id) for entity_id in {*deletions.users, *deletions.anonymous}}
        needles = deletions.needles()
        figures = Counter[str]()
        for day in days:
            if with_sidecars:
                keys, index = self.holders_by_sidecar(day, digests), None
            else:
                keys, index = self.holders_by_day_index(day, digests)
            seen = self.at_once(
                [partial(examine, key, "raw", deletions, needles, cast(Any, self)) for key in sorted(keys)]
            )
            to_rewrite = [found for found in seen if found.kept is not None]
            self.at_once([partial(self.store.archive.rewrite, f.key, f.kept or []) for f in to_rewrite])
            figures["objects_read"] += sum(1 for f in seen if not f.gone)
            figures["objects_changed"] += len(to_rewrite)
            figures["events_changed"] += sum(f.removed for f in to_rewrite)
            if index is not None and (to_rewrite or index.pairs(digests)):
                # the index holds the deleted ids too: written again without them (read whole once)
                after = self.listing(day)
                etags = {f.key: after.get(f.key) for f in to_rewrite}
                full = self.get(self.index_key(day)) or b""
                self.put(self.index_key(day), index.without(digests, etags, full).encode())
        return dict(figures)

    # design 3b: the day index's buckets as objects of their own, so a purge reads and writes only the
    # buckets of the deleted ids
    def build_split_index(self, day: str) -> tuple[int, int]:
        """(bytes, objects written)."""
        listed = self.listing(day)
        ids = self.at_once([partial(self._ids_of, key) for key in listed])
        index = DayIndex.of(
            [(key, etag, found) for (key, etag), found in zip(listed.items(), ids, strict=True)]
        )
        bits = max(0, math.ceil(math.log2(max(1, len(index.pairs) / SPLIT_PAIRS_PER_BUCKET))))
        wide = len(index.covered) > 0xFFFF
        grouped: dict[int, list[tuple[int, int]]] = {}
        for h, n in index.pairs:
            grouped.setdefault(h >> (64 - bits) if bits else 0, []).append((h, n))
        header = gzip.compress(
            json.dumps({"covered": index.covered, "bits": bits, "wide": wide}).encode(), mtime=0
        )
        bodies = {self.split_key(day, "header"): header} | {
            self.split_key(day, f"b{bucket:06d}"): self.bucket_body(chosen, wide)
            for bucket, chosen in grouped.items()
        }
        self.at_once([partial(self.put, key, body) for key, body in bodies.items()])
        return sum(len(body) for body in bodies.values()), len(bodies)

    @staticmethod
    def bucket_body(pairs: list[tuple[int, int]], wide: bool) -> bytes:
        return (
            array("I", [h & 0xFFFFFFFF for h, _ in pairs]).tobytes()
            + array("I" if wide else "H", [n for _, n in pairs]).tobytes()
        )

    def split_key(self, day: str, part: str) -> str:
        return f"{INDEX_PREFIX}split/{day}{part}"

    def purge_split(self, days: list[str], deletions: Any) -> dict[str, int]:
        from segment_bridge.jobs.purge import examine

        digests = {id_hash(entity_id) for entity_id in {*deletions.users, *deletions.anonymous}}
        needles = deletions.needles()
        figures = Counter[str]()
        for day in days:
            listed = self.listing(day)
            body = self.get(self.split_key(day, "header"))
            header = json.loads(gzip.decompress(body)) if body else None
            touched: dict[str, list[tuple[int, int]]] = {}
            keys = set(listed)
            if header is not None:
                covered = [(key, etag) for key, etag in header["covered"]]
                bits, wide = int(header["bits"]), bool(header["wide"])
                width = 4 if wide else 2
                buckets = {(d >> (64 - bits)) if bits else 0 for d in digests}
                names = [self.split_key(day, f"b{bucket:06d}") for bucket in sorted(buckets)]
                holders: set[str] = set()
                for name, got in zip(names, self.at_once([partial(self.get, n) for n in names]), strict=True):
                    if not got:
                        continue
                    count = len(got) // (4 + width)
                    low, ordinals = array("I"), array("I" if wide else "H")
                    low.frombytes(got[: count * 4])
                    ordinals.frombytes(got[count * 4 :])
                    pairs = list(zip(low, ordinals, strict=True))
                    wanted = {d & 0xFFFFFFFF for d in digests}
                    if any(h in wanted for h, _ in pairs):
                        touched[name] = [(h, n) for h, n in pairs if h not in wanted]
                        holders |= {covered[n][0] for h, n in pairs if h in wanted}
                etags = dict(covered)
                keys = (holders & set(listed)) | {
                    key for key, etag in listed.items() if etags.get(key) != etag
                }
            seen = self.at_once(
                [partial(examine, key, "raw", deletions, needles, cast(Any, self)) for key in sorted(keys)]
            )
            to_rewrite = [found for found in seen if found.kept is not None]
            self.at_once([partial(self.store.archive.rewrite, f.key, f.kept or []) for f in to_rewrite])
            figures["objects_read"] += sum(1 for f in seen if not f.gone)
            figures["objects_changed"] += len(to_rewrite)
            figures["events_changed"] += sum(f.removed for f in to_rewrite)
            if header is not None and (touched or to_rewrite):
                writes = {name: self.bucket_body(pairs, wide) for name, pairs in touched.items()}
                if to_rewrite:  # the rewritten objects' new ETags, so the next pass trusts them
                    after = self.listing(day)
                    header["covered"] = [
                        (key, after.get(key, etag) if key in {f.key for f in to_rewrite} else etag)
                        for key, etag in covered
                    ]
                    writes[self.split_key(day, "header")] = gzip.compress(
                        json.dumps(header).encode(), mtime=0
                    )
                self.at_once([partial(self.put, name, data) for name, data in writes.items()])
        return dict(figures)

    @property
    def archive(self) -> Prototypes:  # jobs.purge.examine reads through `stores.archive.read_lines`
        return self


def bloom_false_positives(
    ids: set[int], bits: int, probes: int, rng: random.Random
) -> tuple[int, float, float]:
    """Design 2: a Bloom filter of `bits` over the ids (k hashes, optimal for their count): k, the
    false-positive rate in theory and as measured on `probes` ids that are not in it."""
    k = max(1, round(bits / max(1, len(ids)) * math.log(2)))
    filled = bytearray(bits // 8 + 1)

    def positions(digest: int) -> list[int]:
        low, high = digest & 0xFFFFFFFF, digest >> 32
        return [(low + i * high) % bits for i in range(k)]  # Kirsch-Mitzenmacher double hashing

    for digest in ids:
        for at in positions(digest):
            filled[at // 8] |= 1 << (at % 8)
    hits = 0
    for _ in range(probes):
        probe = id_hash(f"not-there-{rng.randrange(10**12)}")
        hits += all(filled[at // 8] >> (at % 8) & 1 for at in positions(probe))
    theory = (1 - math.exp(-k * len(ids) / bits)) ** k
    return k, theory, hits / probes


if __name__ == "__main__":
    raise SystemExit(main())
