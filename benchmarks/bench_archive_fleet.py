"""A purge job end to end with several workers at once: how objects/s scales with the workers, measured.

bench_archive.py measures one worker and multiplies by JobsConcurrency; this one runs N JobsFunction
workers at once (N processes, each polling the JobsQueue as Lambda's SQS mapping does with BatchSize 1,
running `engine.run_task` with every AWS call delayed --latency-ms, as bench_archive.py) against moto in
server mode in another process, over HTTP, for each N of --workers, on the same archive (restored byte for
byte between runs): --days day prefixes of --per-day objects of 1,000 typical events (a page task per
day: the job's parallelism is its page tasks), one deleted user in one object in 20.

For each N: wall time from the workers' start to the job `done`, objects/s, per worker; the CPU seconds of
the workers and of the moto server per object (on this machine both share its cores: where their sum
reaches the cores, adding workers stops helping, and that is this machine's limit, not the design's); the
job record's saves per second (every save is one transaction on the job record, pk=JOBS sk=JOB#id).

Run: .venv/bin/python benchmarks/bench_archive_fleet.py [--workers 1,2,4,6] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import random
import socket
import subprocess  # nosec B404 - moto's server, fixed arguments
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from common import InjectedLatency

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WS = "ws_fleet"
DELETED = "deleted-user"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU seconds (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(idle, total) CPU ticks of the whole machine since boot (/proc/stat): other users' work included."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def worker(latency_ms: float, start: Any, results: Any) -> None:
    """One JobsFunction worker: BatchSize 1, a message at a time, until the queue is empty and the job
    done (the parent's environment: the endpoint, the template's variables)."""
    import boto3

    sys.path.insert(0, str(HERE))
    from segment_bridge.jobs.engine import run_task
    from segment_bridge.jobs.fleet import FINISHERS, KINDS
    from segment_bridge.store import get_store

    latency = InjectedLatency(latency_ms / 1000)
    latency.install()
    saves = 0

    def count(model: Any, **_: Any) -> None:
        nonlocal saves
        saves += model.name == "TransactWriteItems"

    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call", count)
    store = get_store()
    sqs, url = store.clients.sqs, store.settings.jobs_queue_url
    job_id = start.get()
    cpu = time.process_time()
    tasks = 0
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=600).get(
            "Messages", []
        )
        if not got:
            latency.enabled = False
            over = store.jobs.job(job_id).state == "done"
            latency.enabled = True
            if over:
                break
            time.sleep(0.05)
            continue
        run_task(got[0]["Body"], store.jobs, store, lambda: False, KINDS, FINISHERS)
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
        tasks += 1
    results.put({"cpu": time.process_time() - cpu, "tasks": tasks, "saves": saves})


def seed(store: Any, days: int, per_day: int) -> dict[str, bytes]:
    from bench_archive import DAY, EVENTS_PER_OBJECT, typical_event

    store.create_workspace("Fleet", workspace_id=WS)
    rng = random.Random(7)
    for n in range(days * per_day):
        events = [
            typical_event(
                n * EVENTS_PER_OBJECT + k,
                DELETED if n % 20 == 0 and k % 50 == 0 else f"u-{rng.randrange(5000)}",
                rng,
            )
            for k in range(EVENTS_PER_OBJECT)
        ]
        store.archive.archive_raw(WS, DAY + timedelta(days=n % days), f"req-{n:05d}", events)
    return snapshot(store)


def snapshot(store: Any) -> dict[str, bytes]:
    s3, bucket = store.clients.s3, store.archive.bucket
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="raw/"):
        for summary in page.get("Contents", []):
            found[summary["Key"]] = s3.get_object(Bucket=bucket, Key=summary["Key"])["Body"].read()
    return found


def restore(store: Any, objects: dict[str, bytes], deleted_objects: list[str]) -> None:
    s3, bucket = store.clients.s3, store.archive.bucket
    for key in deleted_objects:  # only those the last purge rewrote
        s3.put_object(Bucket=bucket, Key=key, Body=objects[key], ContentEncoding="gzip")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1,2,3,4,6")
    parser.add_argument("--days", type=int, default=24)
    parser.add_argument("--per-day", type=int, default=25)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()

    port = free_port()
    server = subprocess.Popen(  # noqa: S603  # nosec B603 - our venv's moto, fixed arguments
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return measure(args, server, f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=10)


def measure(args: argparse.Namespace, server: subprocess.Popen[bytes], endpoint: str) -> int:
    from bridge_dev.local import aws_environment
    from bridge_dev.runtime import lambda_environment
    from bridge_dev.template import create_resources, load_template
    from segment_bridge.jobs.purge import plan_purge
    from segment_bridge.store import get_store

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", int(endpoint.rsplit(":", 1)[1])), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    template = load_template()
    concurrency = int(template["Parameters"]["JobsConcurrency"]["Default"])
    with lambda_environment({}, aws=aws_environment(endpoint)):
        resources = create_resources(endpoint_url=endpoint)
        with lambda_environment(resources.environment() | {"POWERTOOLS_METRICS_DISABLED": "true"}):
            store = get_store()
            seeded = seed(store, args.days, args.per_day)
            objects = len(seeded)
            size = sum(len(body) for body in seeded.values()) / objects
            sample = gzip.decompress(next(iter(seeded.values()))).count(b"\n")
            print(
                f"archive: {objects} objects ({args.days} days x {args.per_day}) of {sample} events, "
                f"{size / 1024:.0f} KB gzip each; moto server in its own process; "
                f"{args.latency_ms:.0f} ms per AWS call in every worker; {os.cpu_count()} cores; "
                f"load average {os.getloadavg()[0]:.2f}"
            )
            print(
                f"\n{'workers':>7} {'wall s':>7} {'objects/s':>10} {'per worker':>11} {'x of 1':>7} "
                f"{'worker CPU ms/obj':>18} {'moto CPU ms/obj':>16} {'cores busy':>11} {'job saves/s':>12} "
                f"{'machine idle':>13} {'load':>5}"
            )
            context = multiprocessing.get_context("spawn")
            first = 0.0
            rewritten: list[str] = []
            for n in [int(part) for part in args.workers.split(",")]:
                restore(store, seeded, rewritten)
                store.profiles.mark_for_purge(
                    WS, [f"U#{DELETED}"], "2026-06-01T00:00:00.000Z", f"U#{DELETED}"
                )
                start, results = context.Queue(), context.Queue()
                processes = [
                    context.Process(target=worker, args=(args.latency_ms, start, results)) for _ in range(n)
                ]
                for process in processes:
                    process.start()
                time.sleep(3.0)  # the workers' imports, outside the figure
                job = plan_purge(WS, store)
                assert job is not None
                moto_cpu = cpu_seconds(server.pid)
                idle, total = machine_ticks()
                began = time.perf_counter()
                for _ in processes:
                    start.put(job.job_id)
                while store.jobs.job(job.job_id).state != "done":
                    time.sleep(0.02)
                wall = time.perf_counter() - began
                moto_cpu = cpu_seconds(server.pid) - moto_cpu
                idle_after, total_after = machine_ticks()
                idle_share = (idle_after - idle) / max(1, total_after - total)
                done = [results.get(timeout=60) for _ in processes]
                for process in processes:
                    process.join(timeout=30)
                record = store.jobs.job(job.job_id)
                read = record.counters["objects_read"]
                assert record.counters["events_changed"] == len(range(0, objects, 20)) * 20, record.counters
                rate = read / wall
                first = first or rate
                worker_cpu = sum(d["cpu"] for d in done)
                print(
                    f"{n:>7} {wall:>7.1f} {rate:>10.1f} {rate / n:>11.1f} {rate / first:>7.2f} "
                    f"{worker_cpu / read * 1000:>18.1f} {moto_cpu / read * 1000:>16.1f} "
                    f"{(worker_cpu + moto_cpu) / wall:>11.2f} {sum(d['saves'] for d in done) / wall:>12.1f} "
                    f"{idle_share:>12.0%} {os.getloadavg()[0]:>5.1f}"
                )
                rewritten = [key for key in seeded if int(key.rsplit("req-", 1)[1][:5]) % 20 == 0]
            print(
                f"\n(JobsConcurrency default {concurrency}; objects counted by the job record: "
                f"{json.dumps(record.counters)})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
