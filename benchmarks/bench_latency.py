"""End-to-end latency on the local stack, each direction against its floor measured in the same run.

(a) in:  a POST accepted (the API's 200 received) -> the event's history item readable in the EventsTable
         (the processor writes it after the profile, so the profile is readable by then too).
(b) out: an outbox item written (PutItem returned) -> the Segment stand-in took the track call.

Events go at a steady modest rate in small batches (as Segment's webhook batching sends them), so this
measures latency, not backlog. The floor of each direction is what its event source mapping waits by
design (the local pollers' waits, and the template's MaximumBatchingWindowInSeconds) plus the function's
own time per invocation, timed in-process during the same run. Target: p99 < 2 s each way.

Run: make bench   (or .venv/bin/python benchmarks/bench_latency.py [--events N] [--rate R] [--batch B])
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import requests
from botocore.endpoint import Endpoint

from bridge_dev.events import DEMO_API_KEY, DEMO_WORKSPACE_ID
from bridge_dev.local import LocalStack, start
from bridge_dev.pollers import SqsPoller, StreamPoller
from bridge_dev.runtime import LocalFunction
from segment_bridge.envelope import unpack

TARGET_P99_SECONDS = 2.0
USERS = 50
WATCH_INTERVAL = 0.05
"""How often the watcher reads the EventsTable for the events not yet seen: the resolution of (a)."""
DRAIN_SECONDS = 30.0


class AwsRequests:
    """Time spent in AWS requests (botocore's Endpoint.make_request, moto answering), per thread."""

    def __init__(self) -> None:
        self._local = threading.local()
        make_request = Endpoint.make_request

        def timed(endpoint: Endpoint, *args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return make_request(endpoint, *args, **kwargs)
            finally:
                self._local.count = self.count() + 1
                self._local.seconds = self.seconds() + time.monotonic() - started

        Endpoint.make_request = timed  # type: ignore[method-assign,assignment]

    def count(self) -> int:
        return int(getattr(self._local, "count", 0))

    def seconds(self) -> float:
        return float(getattr(self._local, "seconds", 0.0))


@dataclass(frozen=True, slots=True)
class Invocation:
    start: float
    end: float
    event: dict[str, Any]
    aws_requests: int
    aws_seconds: float


@dataclass
class Timed:
    """A function of the running stack whose handler is timed at every invocation (time.monotonic)."""

    function: LocalFunction
    aws: AwsRequests
    invocations: list[Invocation] = field(default_factory=list)

    def __post_init__(self) -> None:
        handler, aws = self.function.handler, self.aws

        def timed(event: dict[str, Any], context: Any) -> Any:
            requests, in_aws, started = aws.count(), aws.seconds(), time.monotonic()
            try:
                return handler(event, context)
            finally:
                self.invocations.append(
                    Invocation(
                        started, time.monotonic(), event, aws.count() - requests, aws.seconds() - in_aws
                    )
                )

        self.function.handler = timed

    def seconds(self, messages: int | None = None) -> list[float]:
        """Each invocation's time; with `messages`, only of invocations with that many records."""
        return [i.end - i.start for i in self.of(messages)]

    def of(self, messages: int | None = None) -> list[Invocation]:
        return [i for i in self.invocations if messages in (None, len(i.event.get("Records", ())))]


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (share in 0..1) of values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def paced(count: int, rate: float, batch: int) -> Iterator[range]:
    """range(count) in batches of `batch`, one batch every batch/rate seconds on a fixed schedule."""
    began = time.monotonic()
    for n, first in enumerate(range(0, count, batch)):
        delay = began + n * batch / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield range(first, min(first + batch, count))


def probe(run: str, n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Latency Probe",
        "userId": f"lat-{n % USERS}",
        "messageId": f"lat-{run}-{n}",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "properties": {"run": run, "n": n},
        "context": {"library": {"name": "bench_latency"}},
    }


# ---------------------------------------------------------------------------------------------- (a) in


@dataclass
class Inbound:
    accepted: dict[int, float] = field(default_factory=dict)
    seen: dict[int, float] = field(default_factory=dict)
    watch_rounds: list[float] = field(default_factory=list)


def inbound(stack: LocalStack, count: int, rate: float, batch: int) -> Inbound:
    """POST `count` track events in batches at `rate` events/s; note when each was accepted and when its
    history item became readable."""
    run = uuid.uuid4().hex[:8]
    table = stack.resources.tables["EventsTable"]
    dynamodb = boto3.client("dynamodb", endpoint_url=stack.aws_endpoint)
    result = Inbound()
    lock = threading.Lock()
    sending = threading.Event()
    sending.set()

    def key(n: int) -> dict[str, Any]:
        return {"pk": {"S": f"WS#{DEMO_WORKSPACE_ID}#U#lat-{n % USERS}"}, "sk": {"S": f"MSG#lat-{run}-{n}"}}

    def watch() -> None:
        deadline = float("inf")
        while time.monotonic() < deadline:
            if not sending.is_set() and deadline == float("inf"):
                deadline = time.monotonic() + DRAIN_SECONDS
            with lock:
                waiting = [n for n in result.accepted if n not in result.seen]
            if not waiting and not sending.is_set():
                return
            began = time.monotonic()
            for first in range(0, len(waiting), 100):
                chunk = waiting[first : first + 100]
                found = dynamodb.batch_get_item(
                    RequestItems={table: {"Keys": [key(n) for n in chunk], "ProjectionExpression": "sk"}}
                )["Responses"][table]
                now = time.monotonic()
                with lock:
                    for item in found:
                        result.seen[int(item["sk"]["S"].rpartition("-")[2])] = now
            if waiting:
                result.watch_rounds.append(time.monotonic() - began)
            time.sleep(WATCH_INTERVAL)

    watcher = threading.Thread(target=watch, name="watcher")
    watcher.start()
    try:
        with requests.Session() as http:
            for numbers in paced(count, rate, batch):
                answer = http.post(
                    stack.webhook_url,
                    json=[probe(run, n) for n in numbers],
                    headers={"Authorization": f"Bearer {DEMO_API_KEY}"},
                    timeout=30,
                )
                accepted = time.monotonic()
                if answer.status_code != 200 or answer.json()["accepted"] != len(numbers):
                    raise SystemExit(f"the API refused a batch: {answer.status_code} {answer.text}")
                with lock:
                    result.accepted.update(dict.fromkeys(numbers, accepted))
    finally:
        sending.clear()
        watcher.join()
    return result


# ---------------------------------------------------------------------------------------------- (b) out


def outbound(stack: LocalStack, count: int, rate: float, batch: int) -> dict[int, tuple[float, float]]:
    """Write `count` outbox items at `rate` items/s; n -> (written, taken by the Segment stand-in)."""
    assert stack.segment is not None
    run = uuid.uuid4().hex[:8]
    outbox = boto3.resource("dynamodb", endpoint_url=stack.aws_endpoint).Table(
        stack.resources.tables["OutboxTable"]
    )
    written: dict[int, float] = {}
    for numbers in paced(count, rate, batch):
        for n in numbers:
            outbox.put_item(
                Item={
                    "pk": f"WS#{DEMO_WORKSPACE_ID}",
                    "sk": f"EVT#lat-{run}-{n}",
                    "event": "Latency Probe",
                    "userId": f"lat-{n % USERS}",
                    "properties": {"run": run, "n": n},
                }
            )
            written[n] = time.monotonic()

    def taken() -> dict[int, float]:
        segment = stack.segment
        assert segment is not None
        return {
            int(event["properties"]["n"]): segment.received_at[message_id]
            for message_id, event in list(segment.events.items())
            if event.get("properties", {}).get("run") == run
        }

    deadline = time.monotonic() + DRAIN_SECONDS
    while len(received := taken()) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return {n: (written[n], received[n]) for n in written if n in received}


# ---------------------------------------------------------------------------------------------- report


def template_window(stack: LocalStack, function: str, source: str) -> float:
    properties = stack.resources.template["Resources"][function]["Properties"]["Events"][source]["Properties"]
    return float(properties.get("MaximumBatchingWindowInSeconds", 0))


def spread(values: Sequence[float]) -> str:
    if not values:
        return f"{'-':>7} {'-':>7} {'-':>7}"
    return f"{statistics.median(values):>7.3f} {percentile(values, 0.99):>7.3f} {max(values):>7.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1000, help="events each way (default 1,000)")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second (default 20)")
    parser.add_argument("--batch", type=int, default=10, help="events per request (default 10)")
    args = parser.parse_args()

    aws = AwsRequests()
    # The functions log a JSON line per invocation, as on Lambda: they still do, but not on this screen.
    with contextlib.redirect_stdout(io.StringIO()):
        stack = start(port=0, aws_port=0, segment_port=0)
        timed = {name: Timed(function, aws) for name, function in stack.functions.items()}
    try:
        print(
            f"end-to-end latency on the local stack, {args.events} events each way at {args.rate:g} events/s "
            f"in batches of {args.batch} (seconds)"
        )
        with contextlib.redirect_stdout(io.StringIO()):
            ins = inbound(stack, args.events, args.rate, args.batch)
            outs = outbound(stack, args.events, args.rate, args.batch)
        return report(stack, args.events, ins, outs, timed)
    finally:
        stack.stop()


def report(
    stack: LocalStack,
    count: int,
    ins: Inbound,
    outs: dict[int, tuple[float, float]],
    timed: dict[str, Timed],
) -> int:
    processor, emitter = timed["ProcessorFunction"], timed["EmitterFunction"]
    # The floor: the wait by design plus the function's own time. SQS: the long poll returns when a
    # message arrives and the template sets no batching window, so no wait; the processor's time is
    # that of its invocations with one message (a delivery alone). Stream: records wait for the
    # batching window (half of it at the median, all of it and one poll interval at worst).
    sqs_wait = template_window(stack, "ProcessorFunction", "Ingest") + SqsPoller.IDLE_SECONDS
    stream_window = template_window(stack, "EmitterFunction", "Outbox")
    one_message = processor.seconds(messages=1) or processor.seconds()
    floors = {
        "in": (sqs_wait / 2 + statistics.median(one_message), sqs_wait + percentile(one_message, 0.99)),
        "out": (
            stream_window / 2 + statistics.median(emitter.seconds()),
            stream_window + StreamPoller.IDLE_SECONDS + percentile(emitter.seconds(), 0.99),
        ),
    }
    latency = {
        "in": [ins.seen[n] - ins.accepted[n] for n in ins.seen],
        "out": [taken - written for written, taken in outs.values()],
    }
    labels = {"in": "(a) POST accepted -> in DynamoDB", "out": "(b) outbox write -> at Segment"}
    sent = {"in": len(ins.accepted), "out": count}

    print()
    print(
        f"{'':<33} {'events':>6} {'p50':>7} {'p99':>7} {'max':>7}  "
        f"{'floor p50':>9} {'floor p99':>9} {'p99/floor':>9}"
    )
    for way in ("in", "out"):
        floor_p50, floor_p99 = floors[way]
        p99 = percentile(latency[way], 0.99) if latency[way] else float("inf")
        print(
            f"{labels[way]:<33} {len(latency[way]):>6} {spread(latency[way])}  "
            f"{floor_p50:>9.3f} {floor_p99:>9.3f} {p99 / floor_p99:>8.2f}x"
        )

    # Where each event's time went: waiting for its invocation, the invocation, after it.
    applied_by: dict[int, Invocation] = {}
    for invocation in processor.invocations:
        for record in invocation.event["Records"]:
            for event in unpack(record["body"])[1]:
                applied_by[int(str(event["messageId"]).rpartition("-")[2])] = invocation
    sent_by: dict[int, Invocation] = {}
    for invocation in emitter.invocations:
        for record in invocation.event["Records"]:
            sent_by.setdefault(int(record["dynamodb"]["Keys"]["sk"]["S"].rpartition("-")[2]), invocation)
    applied = [n for n in ins.seen if n in applied_by]
    emitted = [n for n in outs if n in sent_by]
    print()
    print(f"where the time went{'':<26} {'p50':>7} {'p99':>7} {'max':>7}")
    for label, values in (
        (
            "(a) accepted -> ProcessorFunction invoked",
            [applied_by[n].start - ins.accepted[n] for n in applied],
        ),
        ("    the invocation that applied it", [applied_by[n].end - applied_by[n].start for n in applied]),
        ("    of it, in AWS requests", [applied_by[n].aws_seconds for n in applied]),
        ("    applied -> seen by the watcher", [ins.seen[n] - applied_by[n].end for n in applied]),
        ("(b) written -> EmitterFunction invoked", [sent_by[n].start - outs[n][0] for n in emitted]),
        ("    invoked -> at Segment", [outs[n][1] - sent_by[n].start for n in emitted]),
    ):
        print(f"  {label:<43} {spread(values)}")

    print()
    print("baseline, same run")
    print(
        f"  SQS poller: long polls of up to {SqsPoller.WAIT_SECONDS} s back to back (each returns when a "
        f"message arrives); template MaximumBatchingWindowInSeconds "
        f"{template_window(stack, 'ProcessorFunction', 'Ingest'):g}"
    )
    print(
        f"  stream poller: reads an idle shard every {StreamPoller.IDLE_SECONDS} s; template "
        f"MaximumBatchingWindowInSeconds {stream_window:g}"
    )
    for name, messages in (("IngestFunction", None), ("ProcessorFunction", 1), ("EmitterFunction", None)):
        function = timed[name]
        invocations = function.of(messages) or function.of()
        requests_each = statistics.median(i.aws_requests for i in invocations) if invocations else 0
        in_aws = sum(i.aws_seconds for i in invocations) / max(
            sum(i.end - i.start for i in invocations), 1e-9
        )
        alone = " with one message" if messages == 1 else ""
        seconds = [i.end - i.start for i in invocations]
        print(
            f"  {name} handler{alone}, {len(invocations)} invocations: p50/p99/max "
            f"{statistics.median(seconds) * 1000:.0f}/{percentile(seconds, 0.99) * 1000:.0f}/"
            f"{max(seconds) * 1000:.0f} ms; {requests_each:.0f} AWS requests each (median), "
            f"{in_aws:.0%} of its time in AWS requests"
        )
    if ins.watch_rounds:
        print(
            f"  watcher (resolution of (a)): a BatchGetItem of the events not yet seen every "
            f"{WATCH_INTERVAL} s, {statistics.median(ins.watch_rounds) * 1000:.1f} ms each (median)"
        )

    print()
    missed = 0
    for way in ("in", "out"):
        p99 = percentile(latency[way], 0.99) if latency[way] else float("inf")
        ok = p99 < TARGET_P99_SECONDS and len(latency[way]) == sent[way]
        missed += not ok
        lost = sent[way] - len(latency[way])
        print(
            f"verdict {labels[way].split()[0]} p99 {p99:.3f} s, floor {floors[way][1]:.3f} s, "
            f"{lost} not there after {DRAIN_SECONDS:.0f} s: {'ok' if ok else 'MISSED'} "
            f"(target: p99 < {TARGET_P99_SECONDS:g} s, every event there)"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
