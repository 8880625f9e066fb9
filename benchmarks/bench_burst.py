"""A burst on the local stack with AWS's latency: nothing lost or doubled, and what a noisy workspace
does to the quiet ones' latency.

--events (default 100,000) track events from --workspaces (20) workspaces, one of them (the noisy one)
sending half; a second process (this script with --drive) POSTs each workspace's Segment webhook batches
(--batch, 1,000 events, Segment's default) back to back from a thread per workspace, all workspaces at
once, over loopback. The stack runs in this process: the API, the embedded AWS (moto), and the SQS event
source mapping, here --concurrency pollers (default: the template's MaximumConcurrency), each invoking a
ProcessorFunction of its own (an execution environment each, as Lambda scales the mapping out).

Latency: every AWS call made in this process through boto3's default session waits --latency-ms (5)
first (`common.InjectedLatency`, a botocore before-sign hook registered on the default session before
the stack starts, so the store's clients, created lazily from that session, and the pollers' clients
carry it; the stack's setup uses a session of its own). The calls of Lambda's poller are delayed too, as
they are on AWS.

Measured, without touching layers/ or functions/:
- each ProcessorFunction invocation's duration, by wrapping each environment's handler (as
  bench_load.timed_handler does), against the template's Timeout;
- when each event's history item landed in DynamoDB: a botocore after-call hook on BatchWriteItem notes
  the time of each EventsTable item it wrote (first write only); latency = that - when the driver sent
  the POST that carried the event (time.time() on both sides: one machine);
- lost: accepted messageIds without a history item; duplicated: events counted in the profiles beyond
  their distinct history items; the IngestDLQ's depth once the IngestQueue has drained.

Opt-in (minutes): make burst   (or .venv/bin/python benchmarks/bench_burst.py [--events N]
                 [--latency-ms 5] [--concurrency C] [--batch 1000] [--drain-timeout 1800])
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import boto3
import requests
from bench_latency import percentile
from bench_load import queued

from bridge_dev.runtime import LocalFunction

from common import InjectedLatency, atomic_moto_writes

WORKSPACES = 20
EVENTS = 100_000
BATCH = 1000
LATENCY_MS = 5.0
DRAIN_TIMEOUT = 1800.0
USERS_PER_WORKSPACE = 2000
EVENT_NAMES = ("Item Viewed", "Item Added", "Checkout Started", "Order Completed")


def workspace_id(n: int) -> str:
    return f"ws_burst_{n:02d}"


def api_key(n: int) -> str:
    return f"sbk_burst_key_{n:02d}_000000000000000000000000"


def shares(events: int, workspaces: int) -> list[int]:
    """Events per workspace: the first (noisy) sends half, the others share the rest."""
    noisy = events // 2
    quiet = events - noisy
    return [noisy] + [
        quiet // (workspaces - 1) + (n < quiet % (workspaces - 1)) for n in range(workspaces - 1)
    ]


def message_id(ws: int, n: int) -> str:
    return f"burst-{ws:02d}-{n}"


def track(ws: int, n: int) -> dict[str, Any]:
    """A track event as Segment relays it (about 0.6 KB); each user does a four-step funnel in a row."""
    user = n // len(EVENT_NAMES) % USERS_PER_WORKSPACE
    return {
        "type": "track",
        "event": EVENT_NAMES[n % len(EVENT_NAMES)],
        "userId": f"u-{user}",
        "anonymousId": f"anon-{ws:02d}-{user:06d}",
        "messageId": message_id(ws, n),
        "timestamp": "2026-01-01T00:00:00.000Z",
        "properties": {"sku": f"sku-{n % 500}", "price": n % 100 + 0.99, "currency": "EUR"},
        "context": {
            "library": {"name": "analytics.js", "version": "next-1.74.0"},
            "ip": "198.51.100.7",
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/131.0",
            "page": {"path": f"/items/{n % 500}", "url": f"https://app.example.com/items/{n % 500}"},
        },
    }


# ---------------------------------------------------------------------------------------------- driver


def drive(url: str, counts: Sequence[int], batch: int) -> list[dict[str, Any]]:
    """Every workspace's batches, back to back, a thread per workspace; one record per request."""
    lock = threading.Lock()
    done: list[dict[str, Any]] = []

    def work(ws: int) -> None:
        with requests.Session() as http:
            for first in range(0, counts[ws], batch):
                size = min(batch, counts[ws] - first)
                body = [track(ws, n) for n in range(first, first + size)]
                sent = time.time()
                status, accepted = "", 0
                try:
                    answer = http.post(
                        url, json=body, headers={"Authorization": f"Bearer {api_key(ws)}"}, timeout=120
                    )
                    status = str(answer.status_code)
                    if answer.status_code == 200:
                        accepted = int(answer.json()["accepted"])
                except requests.RequestException as error:
                    status = type(error).__name__
                record = {
                    "ws": ws,
                    "first": first,
                    "size": size,
                    "sent": sent,
                    "answered": time.time(),
                    "status": status,
                    "accepted": accepted,
                }
                with lock:
                    done.append(record)

    threads = [threading.Thread(target=work, args=(ws,)) for ws in range(len(counts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done


def run_driver(url: str, counts: Sequence[int], batch: int) -> list[dict[str, Any]]:
    done = subprocess.run(  # noqa: S603 - this interpreter, this script
        [
            sys.executable,
            __file__,
            "--drive",
            url,
            "--counts",
            ",".join(map(str, counts)),
            "--batch",
            str(batch),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    records: list[dict[str, Any]] = json.loads(done.stdout)
    return records


# ---------------------------------------------------------------------------------------------- stack side


class Landed:
    """When each EventsTable item was first written (time.time()), from BatchWriteItem calls made through
    boto3's default session: messageId -> time."""

    def __init__(self, table: str = "EventsTable") -> None:
        self.table = table
        self.at: dict[str, float] = {}
        self.deferred = 0
        self._lock = threading.Lock()

    def install(self) -> None:
        session = boto3.DEFAULT_SESSION
        assert session is not None
        session.events.register("before-parameter-build.dynamodb.BatchWriteItem", self._before)
        session.events.register("after-call.dynamodb.BatchWriteItem", self._after)
        # Intake sends with SendMessageBatch; a SendMessage to the IngestQueue is the processor deferring
        # a message (back on the queue, not failed).
        session.events.register("after-call.sqs.SendMessage", self._deferred)

    def _deferred(self, parsed: dict[str, Any], **_: Any) -> None:
        if "Error" not in parsed:
            with self._lock:
                self.deferred += 1

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["burst_requests"] = params.get("RequestItems", {})

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if "Error" in parsed:
            return
        now = time.time()
        left = parsed.get("UnprocessedItems", {}).get(self.table, [])
        with self._lock:
            for request in context.get("burst_requests", {}).get(self.table, []):
                if "PutRequest" not in request or request in left:
                    continue
                self.at.setdefault(request["PutRequest"]["Item"]["sk"]["S"].removeprefix("MSG#"), now)


@dataclass
class Outcome:
    records: list[dict[str, Any]]
    stored: dict[int, set[str]]
    counted: dict[int, int]
    landed: dict[str, float]
    durations: list[float]
    invocation_events: list[int]
    dlq: int
    deferred: int
    queued: int
    began: float
    loaded: float
    drained: float
    concurrency: int
    timeout: int
    batch_size: int


def stored_ids(endpoint: str, table: str, workspaces: int) -> dict[int, set[str]]:
    """The burst's history items, by workspace."""
    dynamodb = boto3.session.Session().client("dynamodb", endpoint_url=endpoint)
    found: dict[int, set[str]] = {n: set() for n in range(workspaces)}
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ProjectionExpression="sk"):
        for item in page["Items"]:
            mid = item["sk"]["S"].removeprefix("MSG#")
            if mid.startswith("burst-"):
                found[int(mid.split("-")[1])].add(mid)
    return found


def counted(endpoint: str, table: str, workspaces: int) -> dict[int, int]:
    """Events the burst's profiles count (their exact per-name counts, summed), by workspace."""
    dynamodb = boto3.session.Session().client("dynamodb", endpoint_url=endpoint)
    totals: Counter[int] = Counter()
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="begins_with(pk, :ws) AND sk = :profile",
        ExpressionAttributeValues={":ws": {"S": "WS#ws_burst_"}, ":profile": {"S": "PROFILE"}},
        ProjectionExpression="pk, #counts",
        ExpressionAttributeNames={"#counts": "counts"},
    ):
        for item in page["Items"]:
            ws = int(item["pk"]["S"].split("#")[1].removeprefix("ws_burst_"))
            totals[ws] += sum(int(v["N"]) for v in item.get("counts", {}).get("M", {}).values())
    return {n: totals[n] for n in range(workspaces)}


def burst(args: argparse.Namespace) -> Outcome:
    from bridge_dev.local import start
    from bridge_dev.pollers import SqsPoller
    from bridge_dev.runtime import load_function
    from segment_bridge.store import get_store

    atomic_moto_writes()
    latency = InjectedLatency(args.latency_ms / 1000)
    latency.install()
    landed = Landed()
    landed.install()
    counts = shares(args.events, args.workspaces)
    with contextlib.redirect_stdout(io.StringIO()):
        stack = start(port=0, aws_port=0, segment_port=0)
    pollers: list[SqsPoller] = []
    try:
        template = stack.resources.template
        mapping = template["Resources"]["ProcessorFunction"]["Properties"]["Events"]["Ingest"]["Properties"]
        concurrency = args.concurrency or int(mapping.get("ScalingConfig", {}).get("MaximumConcurrency", 1))
        batch_size = int(mapping.get("BatchSize", 10))
        store = get_store()
        for n in range(args.workspaces):
            store.create_workspace(f"burst {n}", workspace_id=workspace_id(n))
            store.issue_key(workspace_id(n), api_key(n))
        durations: list[float] = []
        sizes: list[int] = []
        timed(stack.functions["ProcessorFunction"], durations, sizes)
        timeout = stack.functions["ProcessorFunction"].timeout_seconds
        with contextlib.redirect_stdout(io.StringIO()):
            for _ in range(concurrency - 1):  # the stack's own poller is the first environment
                function = load_function(template, "ProcessorFunction")
                timed(function, durations, sizes)
                poller = SqsPoller(
                    function.invoke,
                    stack.resources.queue_urls["IngestQueue"],
                    stack.resources.queue_arns["IngestQueue"],
                    batch_size,
                    stack.aws_endpoint,
                )
                pollers.append(poller)
                poller.start()
        sqs = boto3.session.Session().client("sqs", endpoint_url=stack.aws_endpoint)
        with contextlib.redirect_stdout(io.StringIO()):
            began = time.time()
            records = run_driver(stack.webhook_url, counts, args.batch)
            loaded = time.time()
            depth = queued(sqs, stack)
            while depth and time.time() - loaded < args.drain_timeout:
                time.sleep(1.0)
                depth = queued(sqs, stack)
            drained = time.time()
        latency.seconds = 0.0
        return Outcome(
            records=records,
            stored=stored_ids(stack.aws_endpoint, stack.resources.tables["EventsTable"], args.workspaces),
            counted=counted(stack.aws_endpoint, stack.resources.tables["ProfilesTable"], args.workspaces),
            landed=dict(landed.at),
            durations=list(durations),
            invocation_events=list(sizes),
            dlq=stack.queue_depth("IngestDLQ"),
            deferred=landed.deferred,
            queued=depth,
            began=began,
            loaded=loaded,
            drained=drained,
            concurrency=concurrency,
            timeout=timeout,
            batch_size=batch_size,
        )
    finally:
        # Ask every poller first: one stopping alone waits its turn for the queue's shared lock behind
        # the others' long polls (120 pollers x 10 s join timeouts was the run's stall after draining).
        for poller in pollers:
            poller.signal_stop()
        for poller in pollers:
            poller.stop()
        stack.stop()


def timed(function: LocalFunction, durations: list[float], sizes: list[int]) -> None:
    """Time each invocation of the function (its handler wrapped) into `durations`, and count the events
    of its messages into `sizes`."""
    handler = function.handler

    def timed_handler(event: dict[str, Any], context: Any) -> Any:
        started = time.monotonic()
        try:
            return handler(event, context)
        finally:
            size = 0
            with contextlib.suppress(ValueError, KeyError, AttributeError):  # not an envelope: 0
                size = sum(json.loads(r["body"]).get("count", 0) for r in event.get("Records", ()))
            durations.append(time.monotonic() - started)
            sizes.append(size)

    function.handler = timed_handler


# ---------------------------------------------------------------------------------------------- report


def report(args: argparse.Namespace, outcome: Outcome) -> int:
    counts = shares(args.events, args.workspaces)
    accepted: dict[int, set[str]] = {n: set() for n in range(args.workspaces)}
    sent_at: dict[tuple[int, int], float] = {}
    statuses: Counter[str] = Counter()
    for record in outcome.records:
        statuses[record["status"]] += 1
        if record["status"] == "200" and record["accepted"] == record["size"]:
            for n in range(record["first"], record["first"] + record["size"]):
                accepted[record["ws"]].add(message_id(record["ws"], n))
                sent_at[record["ws"], n] = record["sent"]
    lost = sum(len(accepted[n] - outcome.stored[n]) for n in accepted)
    stored = sum(len(ids) for ids in outcome.stored.values())
    in_profiles = sum(outcome.counted.values())
    duplicated = sum(max(0, outcome.counted[n] - len(outcome.stored[n])) for n in accepted)
    errors = {status: n for status, n in statuses.items() if status != "200"}

    latencies: dict[str, list[float]] = {"noisy": [], "quiet": []}
    for (ws, n), sent in sent_at.items():
        at = outcome.landed.get(message_id(ws, n))
        if at is not None:
            latencies["noisy" if ws == 0 else "quiet"].append(at - sent)

    longest = max(outcome.durations, default=0.0)
    biggest = max(outcome.invocation_events, default=0)
    print(
        f"burst on the local stack: {args.events} track events from {args.workspaces} workspaces (one "
        f"sends {counts[0]}, the others {min(counts[1:])}-{max(counts[1:])} each), webhook batches of "
        f"{args.batch}, a driver thread per workspace; {args.latency_ms:g} ms per AWS call; "
        f"{outcome.concurrency} ProcessorFunction environments (BatchSize {outcome.batch_size})"
    )
    print()
    print(f"  requests answered 200   {statuses.get('200', 0):>8}")
    print(f"  HTTP errors             {sum(errors.values()):>8}" + (f"  {errors}" if errors else ""))
    print(f"  events accepted         {sum(len(a) for a in accepted.values()):>8}")
    print(f"  events stored           {stored:>8}  history items (the profiles count {in_profiles})")
    print(f"  lost                    {lost:>8}  accepted, no history item")
    print(f"  duplicated              {duplicated:>8}  counted in the profiles beyond their history items")
    print(f"  in the IngestDLQ        {outcome.dlq:>8}  messages")
    print(f"  deferred                {outcome.deferred:>8}  messages sent to the queue again, unfinished")
    load, drain = outcome.loaded - outcome.began, outcome.drained - outcome.loaded
    print(
        f"  load                    {load:>8.1f} s; drained {drain:.1f} s later ({outcome.queued} messages "
        f"left); {stored / (load + drain):.0f} events/s stored"
    )
    print(
        f"  ProcessorFunction       {len(outcome.durations):>8} invocations, median "
        f"{statistics.median(outcome.durations) if outcome.durations else 0:.1f} s, longest {longest:.1f} s "
        f"(Timeout {outcome.timeout} s); {sum(d > outcome.timeout for d in outcome.durations)} over; "
        f"up to {biggest} events an invocation"
    )
    print(
        f"  (the {outcome.concurrency} environments share this machine's cores and one interpreter with "
        "moto: an invocation's time here includes waiting for CPU that Lambda gives each environment)"
    )
    print()
    print("POST sent -> history item written to DynamoDB, seconds")
    print(f"  {'workspaces':<28} {'events':>7} {'p50':>7} {'p99':>7} {'max':>7}")
    for name, label in (("quiet", f"quiet ({args.workspaces - 1})"), ("noisy", "noisy (1)")):
        values = latencies[name]
        if values:
            print(
                f"  {label:<28} {len(values):>7} {percentile(values, 0.5):>7.1f} "
                f"{percentile(values, 0.99):>7.1f} {max(values):>7.1f}"
            )
    print()
    drained = outcome.queued == 0
    over = sum(d > outcome.timeout for d in outcome.durations)
    checks = [
        (lost == 0 and drained, f"0 lost ({lost}; queue {'drained' if drained else 'NOT drained'})"),
        (
            duplicated == 0 and in_profiles == stored,
            f"0 duplicated ({duplicated}; counted {in_profiles}, stored {stored})",
        ),
        (outcome.dlq == 0, f"nothing in the DLQ ({outcome.dlq})"),
        (
            over == 0,
            f"no invocation over its Timeout ({over} of {len(outcome.durations)}; longest {longest:.1f} s "
            f"of {outcome.timeout} s)",
        ),
        (not errors, f"no HTTP errors ({sum(errors.values())})"),
    ]
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'} {text}")
    return 0 if all(ok for ok, _ in checks) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=EVENTS, help=f"events in all (default {EVENTS})")
    parser.add_argument("--workspaces", type=int, default=WORKSPACES, help=f"default {WORKSPACES}")
    parser.add_argument(
        "--batch", type=int, default=BATCH, help=f"events per webhook request (default {BATCH})"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=LATENCY_MS, help=f"per AWS call (default {LATENCY_MS:g})"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="ProcessorFunction environments (default: MaximumConcurrency)",
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=DRAIN_TIMEOUT, help=f"default {DRAIN_TIMEOUT:g} s"
    )
    parser.add_argument("--drive", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--counts", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        print(json.dumps(drive(args.drive, [int(c) for c in args.counts.split(",")], args.batch)))
        return 0
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    return report(args, burst(args))


if __name__ == "__main__":
    raise SystemExit(main())
