"""Throughput of the local stack under sustained load from a second process, and nothing lost.

A driver process (this script with --drive) POSTs Segment webhook batches of track events to the local
stack's API from several threads, together --rate events/s (0: each thread sends its next batch as soon
as the last is answered), for --seconds; loopback only. The stack runs in this process (API, embedded
AWS, pollers, functions) and stores what it accepts. Counted: events accepted (the `accepted` of each 200
answer) and events stored (history items in the EventsTable once the queue has drained, and the
profiles' exact counts); lost = accepted but not stored, which must be 0. Rates: events/s accepted over
the load; events/s stored from the first request until the queue drained. The baseline, same run: what
each function does per second of its own handler time, one execution environment each (as the local
stack runs them): the most the pipeline could store.

The driver is a small threaded `requests` client rather than locust: the figures are per event (the
`accepted` of each answer and the messageIds to look for in DynamoDB), not per request, and locust
would add 19 packages (gevent, pyzmq, flask-login, ...) to the dev environment for what is 40 lines here.

Run: make bench   (or .venv/bin/python benchmarks/bench_load.py [--seconds 60] [--rate 400] [--workers 4]
                  [--batch 100] [--drain-timeout 240])

Soak (`make soak`: --soak --seconds 300 --rate 150): the embedded AWS runs in a process of its own, so
the stack's process (API, pollers, functions) is measured apart from moto, which keeps every item in
memory and grows with the data by design. Their resident memory is sampled every 5 s; the verdict
compares the stack process's median over the last third of the load with the first third's
(flat: within 10%).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import requests

from bridge_dev.events import DEMO_API_KEY, DEMO_WORKSPACE_ID
from bridge_dev.local import LocalStack, start
from bridge_dev.runtime import LocalFunction

USERS = 5000
DRAIN_TIMEOUT = 240.0
RATE = 400.0
EVENT_NAMES = ("Item Viewed", "Item Added", "Checkout Started", "Order Completed")


# ---------------------------------------------------------------------------------------------- driver


def track(worker: int, request: int, n: int) -> dict[str, Any]:
    """A track event shaped like what Segment relays to a webhook (about 0.8 KB); each user does the
    four steps of a funnel in a row, so a batch of 100 holds 25 users."""
    number = (worker * 7919 + request * 25 + n // len(EVENT_NAMES)) % USERS
    return {
        "type": "track",
        "event": EVENT_NAMES[n % len(EVENT_NAMES)],
        "userId": f"load-{number}",
        "anonymousId": f"anon-{number:08d}",
        "messageId": f"load-{worker}-{request}-{n}",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "properties": {"sku": f"sku-{n}", "price": n % 100 + 0.99, "currency": "EUR", "quantity": 1},
        "context": {
            "library": {"name": "analytics.js", "version": "next-1.74.0"},
            "ip": "198.51.100.7",
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/131.0",
            "page": {"path": f"/items/{n}", "url": f"https://app.example.com/items/{n}", "title": "Item"},
            "locale": "en-US",
            "campaign": {"source": "newsletter", "medium": "email", "name": "launch"},
        },
    }


def drive(url: str, seconds: float, workers: int, batch: int, rate: float) -> dict[str, Any]:
    """POST batches from `workers` threads for `seconds`, together `rate` events/s (0: each thread sends
    its next batch when the last is answered); what was accepted, and every other answer."""
    began = time.monotonic()
    deadline = began + seconds
    interval = workers * batch / rate if rate else 0.0
    lock = threading.Lock()
    statuses: Counter[str] = Counter()
    accepted: dict[str, list[int]] = {}  # worker -> requests whose events were all accepted
    counts = Counter[str]()

    def work(worker: int) -> None:
        mine: list[int] = []
        with requests.Session() as http:
            request = 0
            while True:
                due = began + (request + worker / workers) * interval  # the workers take turns
                if due >= deadline or time.monotonic() >= deadline:
                    break
                if (delay := due - time.monotonic()) > 0:
                    time.sleep(delay)
                body = [track(worker, request, n) for n in range(batch)]
                try:
                    answer = http.post(
                        url, json=body, headers={"Authorization": f"Bearer {DEMO_API_KEY}"}, timeout=30
                    )
                    status = str(answer.status_code)
                    if answer.status_code == 200:
                        taken = int(answer.json()["accepted"])
                        with lock:
                            counts["accepted"] += taken
                        if taken == batch:
                            mine.append(request)
                        else:
                            status = "200 with rejected events"
                except requests.RequestException as error:
                    status = type(error).__name__
                with lock:
                    statuses[status] += 1
                request += 1
        with lock:
            accepted[str(worker)] = mine

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "seconds": time.monotonic() - started,
        "accepted": counts["accepted"],
        "statuses": dict(statuses),
        "accepted_requests": accepted,
        "batch": batch,
    }


# ---------------------------------------------------------------------------------------------- stack side


def run_driver(stack: LocalStack, seconds: float, workers: int, batch: int, rate: float) -> dict[str, Any]:
    """The driver in a process of its own; its report."""
    done = subprocess.run(  # noqa: S603 - this interpreter, this script
        [
            sys.executable,
            __file__,
            "--drive",
            stack.webhook_url,
            "--seconds",
            str(seconds),
            "--workers",
            str(workers),
            "--batch",
            str(batch),
            "--rate",
            str(rate),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def queued(sqs: Any, stack: LocalStack) -> int:
    """Messages on the IngestQueue, visible or in flight."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack.resources.queue_urls["IngestQueue"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def stored_ids(stack: LocalStack) -> set[str]:
    """The messageIds of every history item of the load test (EventsTable)."""
    dynamodb = boto3.client("dynamodb", endpoint_url=stack.aws_endpoint)
    found: set[str] = set()
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=stack.resources.tables["EventsTable"], ProjectionExpression="sk"
    ):
        found.update(item["sk"]["S"].removeprefix("MSG#") for item in page["Items"])
    return {message_id for message_id in found if message_id.startswith("load-")}


def counted(stack: LocalStack) -> int:
    """The events the load test's profiles count (their exact per-name counts, summed)."""
    dynamodb = boto3.client("dynamodb", endpoint_url=stack.aws_endpoint)
    total = 0
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=stack.resources.tables["ProfilesTable"],
        FilterExpression="begins_with(pk, :load) AND sk = :profile",
        ExpressionAttributeValues={
            ":load": {"S": f"WS#{DEMO_WORKSPACE_ID}#U#load-"},
            ":profile": {"S": "PROFILE"},
        },
        ProjectionExpression="#counts",
        ExpressionAttributeNames={"#counts": "counts"},
    ):
        for item in page["Items"]:
            total += sum(int(value["N"]) for value in item.get("counts", {}).get("M", {}).values())
    return total


@dataclass
class Outcome:
    load: dict[str, Any]
    stored: set[str]
    in_profiles: int
    began: float
    loaded: float
    drained: float
    queued_after_load: int
    queued_at_end: int


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load lasts (default 60)")
    parser.add_argument(
        "--rate",
        type=float,
        default=RATE,
        help=f"events/s offered; 0: as fast as answered (default {RATE:g})",
    )
    parser.add_argument("--workers", type=int, default=4, help="driver threads (default 4)")
    parser.add_argument("--batch", type=int, default=100, help="events per request (default 100)")
    parser.add_argument(
        "--drain-timeout", type=float, default=DRAIN_TIMEOUT, help=f"default {DRAIN_TIMEOUT:g} s"
    )
    parser.add_argument(
        "--soak", action="store_true", help="moto in its own process; sample both processes' memory"
    )
    parser.add_argument("--drive", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        print(json.dumps(drive(args.drive, args.seconds, args.workers, args.batch, args.rate)))
        return 0

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    # The functions log a JSON line per invocation, as on Lambda: they still do, but not on this screen.
    moto = start_moto() if args.soak else None
    with contextlib.redirect_stdout(io.StringIO()):
        stack = start(port=0, aws_port=0, segment_port=0, aws_endpoint=moto[1] if moto else None)
        timed = {name: timed_handler(function) for name, function in stack.functions.items()}
    memory = Memory({"stack": os.getpid(), **({"moto": moto[0].pid} if moto else {})}) if moto else None
    try:
        offered = f"{args.rate:g} events/s" if args.rate else "as fast as answered"
        print(
            f"sustained load on the local stack from a second process: {args.workers} threads, batches of "
            f"{args.batch} track events, {offered}, for {args.seconds:g} s"
        )
        sqs = boto3.client("sqs", endpoint_url=stack.aws_endpoint)
        with contextlib.redirect_stdout(io.StringIO()):
            began = time.monotonic()
            load = run_driver(stack, args.seconds, args.workers, args.batch, args.rate)
            loaded = time.monotonic()
            after_load = depth = queued(sqs, stack)
            while depth and time.monotonic() - loaded < args.drain_timeout:
                time.sleep(0.5)
                depth = queued(sqs, stack)
            drained = time.monotonic()
            outcome = Outcome(
                load, stored_ids(stack), counted(stack), began, loaded, drained, after_load, depth
            )
        verdict = report(args, outcome, timed)
        if memory is not None:
            verdict |= memory.report(began, loaded)
        return verdict
    finally:
        if memory is not None:
            memory.stop()
        stack.stop()
        if moto is not None:
            moto[0].terminate()
            try:
                moto[0].wait(timeout=10)
            except subprocess.TimeoutExpired:  # werkzeug's server may not stop on SIGTERM at once
                moto[0].kill()
                moto[0].wait(timeout=10)


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """moto's server in a process of its own on a free loopback port; (process, endpoint)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(  # noqa: S603 - this interpreter's moto
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            requests.get(f"{endpoint}/moto-api/", timeout=1)
            return process, endpoint
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError("moto's server did not start")


class Memory:
    """Resident memory (VmRSS) of some processes, every 5 s, in a thread."""

    def __init__(self, pids: dict[str, int], every: float = 5.0) -> None:
        self.pids = pids
        self.samples: list[tuple[float, dict[str, float]]] = []  # (monotonic time, {name: MiB})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), {name: rss_mib(pid) for name, pid in self.pids.items()}))
            self._stop.wait(every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def report(self, began: float, loaded: float) -> int:
        """Median memory over the first and the last third of the load; 1 if the stack's grew > 10%."""
        third = (loaded - began) / 3
        first = [s for t, s in self.samples if began <= t < began + third]
        last = [s for t, s in self.samples if loaded - third <= t <= loaded]
        if not first or not last:
            print("memory: too few samples (a longer --seconds)")
            return 1
        print()
        print(f"resident memory, MiB (median of {len(first)} and {len(last)} samples, every 5 s)")
        print("  process   first third  last third  growth")
        verdict = 0
        for name in self.pids:
            before = statistics.median(s[name] for s in first)
            after = statistics.median(s[name] for s in last)
            growth = after / before - 1
            print(f"  {name:<8} {before:>12.0f} {after:>11.0f} {growth:>+7.1%}")
            if name == "stack" and growth > 0.10:
                verdict = 1
        stack_growth = (
            statistics.median(s["stack"] for s in last) / statistics.median(s["stack"] for s in first) - 1
        )
        print(
            f"verdict: {'ok' if not verdict else 'FAILED'}: the stack process grew {stack_growth:+.1%} "
            "(target: flat, within 10%; moto holds every item in memory, so it grows with the data)"
        )
        return verdict


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed_handler(function: LocalFunction) -> list[float]:
    """Time each invocation of a function of the running stack; the list its durations go to."""
    seconds: list[float] = []
    handler = function.handler

    def timed(event: dict[str, Any], context: Any) -> Any:
        started = time.monotonic()
        try:
            return handler(event, context)
        finally:
            seconds.append(time.monotonic() - started)

    function.handler = timed
    return seconds


def ceiling(seconds: list[float], events: int) -> str:
    """Events per second of handler time: what one execution environment does at most, back to back."""
    if not seconds:
        return "not invoked"
    return (
        f"{len(seconds)} invocations, {statistics.median(seconds) * 1000:.0f} ms median: "
        f"{events / sum(seconds):.0f} events/s of handler time"
    )


def report(args: argparse.Namespace, outcome: Outcome, timed: dict[str, list[float]]) -> int:
    load = outcome.load
    accepted_ids = {
        f"load-{worker}-{request}-{n}"
        for worker, requests_ in load["accepted_requests"].items()
        for request in requests_
        for n in range(load["batch"])
    }
    stored = outcome.stored
    lost = len(accepted_ids - stored)
    errors = {status: n for status, n in load["statuses"].items() if status != "200"}
    rate_in = load["accepted"] / load["seconds"]
    rate_stored = len(stored) / (outcome.drained - outcome.began)
    print()
    print(f"  requests answered 200     {load['statuses'].get('200', 0):>8}")
    print(f"  HTTP errors               {sum(errors.values()):>8}" + (f"  {errors}" if errors else ""))
    print(f"  events accepted           {load['accepted']:>8}")
    print(
        f"  events stored             {len(stored):>8}  history items "
        f"(the profiles count {outcome.in_profiles})"
    )
    print(f"  lost                      {lost:>8}  accepted, not stored")
    print(f"  stored, not seen accepted {len(stored - accepted_ids):>8}  the answer failed on the way back")
    print(
        f"  queue when the load ended {outcome.queued_after_load:>8}  messages; drained "
        f"{outcome.drained - outcome.loaded:.1f} s later"
    )
    print(f"  events/s in               {rate_in:>8.0f}  over {load['seconds']:.1f} s of load")
    print(
        f"  events/s stored           {rate_stored:>8.0f}  over {outcome.drained - outcome.began:.1f} s, "
        "first request to drained"
    )
    print()
    print("baseline, same run: each function in one execution environment, as the local stack runs it")
    print(f"  IngestFunction     {ceiling(timed['IngestFunction'], load['accepted'])}")
    print(f"  ProcessorFunction  {ceiling(timed['ProcessorFunction'], len(stored))}")
    processor_seconds = sum(timed["ProcessorFunction"])
    busy = processor_seconds / (outcome.drained - outcome.began)
    print(
        f"  events/s stored = {busy:.2f}x the ProcessorFunction's: it was busy {busy:.0%} of the time "
        "from first request to drained"
    )
    print()
    ok = lost == 0 and outcome.queued_at_end == 0 and outcome.in_profiles == len(stored) and not errors
    missing = (
        f"{lost} lost, 0 messages still queued"
        if outcome.queued_at_end == 0
        else f"not drained in {args.drain_timeout:g} s, {outcome.queued_at_end} messages still queued "
        f"({lost} events not stored yet)"
    )
    print(
        f"verdict: {'ok' if ok else 'FAILED'}: {missing}, {sum(errors.values())} HTTP errors; "
        f"{rate_in:.0f} events/s in, {rate_stored:.0f} stored "
        "(target: nothing lost, every event counted once)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
