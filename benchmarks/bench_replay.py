"""A replay job on the local stack (`make dev`'s engine, real HTTP) with live events for the same workspace
posted meanwhile, against today's in-process replay (main f71d171's code path) in the same run.

The archive: --events typical events (objects of 1,000, as the processor archives a full queue message)
archived for the demo workspace on one day, and the same archive for a second workspace for the
baseline. Then, in one run on one embedded AWS (moto's server, over HTTP):
1. live alone: --live-rate events/s posted to the webhook for the demo workspace, each timed from its
   200 to its history item being readable (bench_latency's inbound): the usual latency;
2. today: f71d171's replay loop (apply_batch over each archived object, one after another, in this
   process) over the baseline workspace's archive;
3. the job: `plan_replay` as `segment-bridge replay` plans it, run by the local stack's JobsQueue pollers
   (JobsFunction) and IngestQueue pollers (ProcessorFunction), while live events are posted as in 1.
The ProcessorFunction runs in --processors environments (Lambda runs up to the mapping's
MaximumConcurrency, 120; the local stack one: the others are added here, as bench_burst adds them), in 1
and 3 alike; the replay keeps at most --window of its messages queued and not yet applied (default: the
local stack's REPLAY_WINDOW_MESSAGES, 1), so with a window below the environments one is always free for
live traffic, as the template's 60 leaves 60 of AWS's 120.
Checked: the job's counts (events read = archived, messages applied = sent) and nothing applied twice
(history items of the replayed users = archived events; their profiles' event counts sum to it), for
both; the most replay messages ever queued and not yet applied (sampled every 0.2 s) against the window.

Run: .venv/bin/python benchmarks/bench_replay.py [--events 100000] [--live-rate 5] [--processors 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import statistics
import threading
import time
from datetime import UTC, datetime
from typing import Any

import bench_latency
import boto3
from bench_archive import EVENTS_PER_OBJECT, typical_event
from bench_latency import Inbound, inbound, percentile

from bridge_dev.events import DEMO_WORKSPACE_ID
from bridge_dev.local import start
from bridge_dev.pollers import Poller, SqsPoller
from bridge_dev.runtime import load_function

DAY = datetime(2026, 1, 1, 12, tzinfo=UTC)
BASELINE = "ws_replay_today"
USERS = 500
bench_latency.DRAIN_SECONDS = 300.0  # a live event queued behind replay messages is waited for, not lost


def seed(store: Any, workspaces: list[str], events: int) -> None:
    rng = random.Random(7)
    for n in range(events // EVENTS_PER_OBJECT):
        batch = [
            typical_event(n * EVENTS_PER_OBJECT + k, f"u-{rng.randrange(USERS)}", rng)
            for k in range(EVENTS_PER_OBJECT)
        ]
        for ws in workspaces:
            store.archive.archive_raw(ws, DAY, f"req-{n:05d}", batch)


def applied_once(endpoint: str, store: Any, workspace: str) -> tuple[int, int]:
    """(history items, sum of profile event counts) of the replayed users (u-*) of a workspace."""
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint)
    history = 0
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=store.settings.events_table,
        FilterExpression="begins_with(pk, :p) AND begins_with(sk, :m)",  # history, not COUNTED# markers
        ExpressionAttributeValues={":p": {"S": f"WS#{workspace}#U#u-"}, ":m": {"S": "MSG#"}},
        Select="COUNT",
    ):
        history += page["Count"]
    counted = 0
    for user in range(USERS):
        profile = store.read_profile(workspace, "U", f"u-{user}")
        counted += sum(profile.counts.values()) if profile else 0
    return history, counted


def latencies(result: Inbound) -> list[float]:
    return [result.seen[n] - result.accepted[n] for n in result.seen]


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    p50, p99 = statistics.median(values), percentile(values, 0.99)
    return f"p50 {p50:.2f} s  p99 {p99:.2f} s  max {max(values):.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="archived events (default 100,000)")
    parser.add_argument("--live-rate", type=float, default=5.0, help="live events/s (default 5)")
    parser.add_argument("--live-batch", type=int, default=5, help="live events per request (default 5)")
    parser.add_argument(
        "--processors", type=int, default=2, help="ProcessorFunction environments (default 2)"
    )
    parser.add_argument("--window", type=int, help="the replay's window (default: the local stack's)")
    args = parser.parse_args()
    events = args.events // EVENTS_PER_OBJECT * EVENTS_PER_OBJECT

    with contextlib.redirect_stdout(io.StringIO()):
        stack = start(port=0, aws_port=0, segment_port=0)
    pollers: list[Poller] = []
    try:
        template = stack.resources.template
        batch_size = int(
            template["Resources"]["ProcessorFunction"]["Properties"]["Events"]["Ingest"]["Properties"].get(
                "BatchSize", 10
            )
        )
        for _ in range(args.processors - 1):  # the stack's own poller is the first environment
            pollers.append(
                SqsPoller(
                    load_function(template, "ProcessorFunction").invoke,
                    stack.resources.queue_urls["IngestQueue"],
                    stack.resources.queue_arns["IngestQueue"],
                    batch_size,
                    stack.aws_endpoint,
                ).start()
            )
        from segment_bridge.errors import ServiceUnavailable
        from segment_bridge.jobs.replay import plan_replay
        from segment_bridge.mapping import Mapping
        from segment_bridge.processor.unit import apply_batch
        from segment_bridge.store import get_store

        store = get_store()
        store.create_workspace("Replay today", workspace_id=BASELINE)
        started = time.perf_counter()
        seed(store, [DEMO_WORKSPACE_ID, BASELINE], events)
        print(f"archive: {events:,} events x 2 workspaces in {time.perf_counter() - started:.0f} s")

        with contextlib.redirect_stdout(io.StringIO()):
            alone = inbound(stack, int(args.live_rate * 20), args.live_rate, args.live_batch)

        started = time.perf_counter()
        for batch in store.archive.archived_batches(BASELINE, DAY.date()):  # f71d171's replay loop
            for attempt in range(5):  # moto's server may time out on a loaded machine: apply it again
                try:
                    apply_batch(BASELINE, batch, Mapping(), store)  # idempotent
                    break
                except ServiceUnavailable:
                    if attempt == 4:
                        raise
        today = time.perf_counter() - started

        job = plan_replay(DEMO_WORKSPACE_ID, DAY.date(), DAY.date(), store, window=args.window)
        window = args.window or store.settings.replay_window_messages
        started = time.perf_counter()
        during: list[Inbound] = []
        stop = threading.Event()

        def live() -> None:
            while not stop.is_set():
                during.append(inbound(stack, int(args.live_rate * 10), args.live_rate, args.live_batch))

        poster = threading.Thread(target=live, name="live")
        with contextlib.redirect_stdout(io.StringIO()):
            poster.start()
            most_queued = 0
            while (record := store.jobs.job(job.job_id)).state not in ("done", "failed"):
                most_queued = max(
                    most_queued, record.counters["messages_sent"] - record.counters["messages_applied"]
                )
                time.sleep(0.2)
            ended = time.perf_counter() - started
            stop.set()
            poster.join()
        record = store.jobs.job(job.job_id)
        c = record.counters

        job_history, job_counted = applied_once(stack.aws_endpoint, store, DEMO_WORKSPACE_ID)
        today_history, today_counted = applied_once(stack.aws_endpoint, store, BASELINE)
        live_during = [x for result in during for x in latencies(result)]
        unseen = sum(len(result.accepted) - len(result.seen) for result in during)

        print(f"\nreplay of {events:,} archived events     today (f71d171, in-process)   job (local stack)")
        print(f"wall time                           {today:>14.0f} s {ended:>22.0f} s")
        print(f"events/s                            {events / today:>16.0f} {events / ended:>24.0f}")
        print(
            f"history items / events archived     {today_history:>10,}/{events:,} "
            f"{job_history:>16,}/{events:,}"
        )
        print(f"profile counts sum                  {today_counted:>16,} {job_counted:>24,}")
        print(
            f"job: {record.state}, events_read {c['events_read']:,}, messages {c['messages_applied']}/"
            f"{c['messages_sent']}, profiles changed {c['profiles_changed']}, "
            f"history {c['history_written']:,}"
        )
        print(
            f"window {window} messages, {args.processors} ProcessorFunction environments; most queued "
            f"and not yet applied: {most_queued}"
        )
        print(f"live events alone  ({len(latencies(alone))} events): {spread(latencies(alone))}")
        print(f"live during replay ({len(live_during)} events): {spread(live_during)}; not seen: {unseen}")
        exact = (
            c["events_read"] == events
            and c["messages_applied"] == c["messages_sent"]
            and job_history == job_counted == events
            and today_history == today_counted == events
            and most_queued <= window
        )
        print("load average (1, 5, 15 min): " + ", ".join(f"{load:.2f}" for load in os.getloadavg()))
        print("counts exact, nothing applied twice" if exact else "COUNTS DIFFER")
        return 0 if exact else 1
    finally:
        for poller in pollers:
            poller.signal_stop()
        for poller in pollers:
            poller.stop()
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
