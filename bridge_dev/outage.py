"""A Segment outage in simulated time: the outbox's stream with Lambda's stream event source (batches,
partial batch responses, retries from the first failed record, the on-failure pointer), the retry
queue's delays and its SQS event source, and a Segment stand-in answering per write key — all on one
injected clock, so hours pass in seconds and no invocation really waits.

It drives whichever `segment_bridge` is first on sys.path (benchmarks/bench_outage.py runs main's and the
working tree's, each in its own process): a design without a retry queue simply never defers.
Invocations run one after another (Lambda runs the shard and the retry queue side by side: the
simulation is the slower of the two).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import heapq
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeSerializer

OUTBOX = "OutboxTable"
STREAM_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{OUTBOX}/stream/2026-01-01T00:00:00"
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TIMEOUT = 60.0  # template: EmitterFunction Timeout
SAFETY = 5.0  # functions/emitter/app.py SAFETY_SECONDS
BATCH_SIZE = 100
RETRY_BATCH = 10
MAX_RETRY_ATTEMPTS = 20
MAX_RECORD_AGE = 21600.0
LATENCY = 0.05
"""Seconds one request to Segment takes."""
_serializer = TypeSerializer()


class Clock:
    """Simulated time. Within an invocation each thread (the emitter sends to workspaces in parallel)
    keeps its own time from the invocation's start; `settle` ends the invocation at its slowest thread."""

    def __init__(self, now: float = START) -> None:
        self.base = now
        self._local = threading.local()
        self._spent = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.base + getattr(self._local, "elapsed", 0.0)

    @property
    def now(self) -> float:
        return self()

    def sleep(self, seconds: float) -> None:
        elapsed = getattr(self._local, "elapsed", 0.0) + max(0.0, seconds)
        self._local.elapsed = elapsed
        with self._lock:
            self._spent = max(self._spent, elapsed)

    def settle(self) -> float:
        """End an invocation: time moves on by its slowest thread's; how long it took."""
        took = self._spent
        self.base += took
        self._spent = 0.0
        self._local.elapsed = 0.0
        return took


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str


@dataclass
class StandIn:
    """Segment's tracking API per write key: `down[key] = (start, end, status, headers)` answers that
    status while start <= now < end; a batch holding a `poisoned` messageId is answered 400."""

    clock: Clock
    answer_class: Callable[..., Any]
    down: dict[str, tuple[float, float, int, dict[str, str]]] = field(default_factory=dict)
    poisoned: set[str] = field(default_factory=set)
    deliveries: dict[str, int] = field(default_factory=dict)
    delivered_at: dict[str, float] = field(default_factory=dict)
    requests: list[tuple[str, int, int, int]] = field(default_factory=list)
    """(write key, body bytes, events, status) of every request."""

    def send(self, url: str, write_key: str, body: bytes, seconds_left: float) -> Any:
        self.clock.sleep(min(LATENCY, seconds_left))
        raw = gzip.decompress(body)
        batch = json.loads(raw)["batch"]
        status, headers = 200, {}
        window = self.down.get(write_key)
        if window is not None and window[0] <= self.clock.now < window[1]:
            status, headers = window[2], window[3]
        elif any(event["messageId"] in self.poisoned for event in batch):
            status = 400
        self.requests.append((write_key, len(raw), len(batch), status))
        if status == 200:
            for event in batch:
                message_id = event["messageId"]
                self.deliveries[message_id] = self.deliveries.get(message_id, 0) + 1
                self.delivered_at.setdefault(message_id, self.clock.now)
        text = '{"success":true}' if status == 200 else '{"code":"scripted","message":"scripted"}'
        return self.answer_class(status, headers, text)


@dataclass
class Bucket:
    """parked/emitter/: each park kept under the key the design gives (content-named, or a new one)."""

    naming: Callable[[Any, str | None], str] | None
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    parks: int = 0

    def park_outbound(
        self,
        reason: str,
        record: dict[str, Any],
        response: dict[str, Any] | None = None,
        workspace_id: str | None = None,
        written_at: float | None = None,
    ) -> str:
        self.parks += 1
        key = self.naming(record, workspace_id) if self.naming is not None else f"random-{self.parks}"
        self.objects[key] = {"reason": reason, "record": record, "workspace_id": workspace_id}
        return key


@dataclass
class DelayQueue:
    """An SQS queue with DelaySeconds, on the simulated clock."""

    clock: Clock
    heap: list[tuple[float, int, str]] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    def defer(self, messages: list[tuple[str, int]]) -> None:
        for body, delay in messages:
            heapq.heappush(self.heap, (self.clock.now + delay, next(self.ids), body))

    def next_due(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def take(self, count: int) -> list[tuple[str, str]]:
        taken: list[tuple[str, str]] = []
        while self.heap and self.heap[0][0] <= self.clock.now and len(taken) < count:
            _, n, body = heapq.heappop(self.heap)
            taken.append((f"msg-{n}", body))
        return taken


@dataclass
class Run:
    written: int = 0
    invocations: int = 0
    retry_invocations: int = 0
    over_timeout: int = 0
    longest_invocation: float = 0.0
    on_failure_records: int = 0
    counted_sent: dict[str, int] = field(default_factory=dict)
    counted_parked: dict[str, int] = field(default_factory=dict)


@dataclass
class Scenario:
    workspaces: tuple[str, ...] = ("ws_down", "ws_b", "ws_c")
    keyless: tuple[str, ...] = ()
    every: float = 60.0
    """Seconds between two outbox items of each workspace."""
    writing: float = 7 * 3600.0
    """How long the product writes outbox items."""
    down: dict[str, tuple[float, float, int, dict[str, str]]] = field(default_factory=dict)
    """write key -> (from, until (seconds after START), status, headers)."""
    until: float = 9 * 3600.0
    """When the simulation stops, whatever is left."""


def simulate(scenario: Scenario) -> dict[str, Any]:
    from segment_bridge.destinations import Destination
    from segment_bridge.outbound import delivery
    from segment_bridge.outbound.egress import Answer as EgressAnswer

    naming: Callable[[Any, str | None], str] | None
    try:
        from segment_bridge.store.parked import parked_name as naming
    except ImportError:  # a design whose parked objects have random names
        naming = None
    clock = Clock()
    segment = StandIn(clock, EgressAnswer)
    for key, (start, end, status, headers) in scenario.down.items():
        segment.down[key] = (START + start, START + end, status, headers)
    bucket, retries = Bucket(naming), DelayQueue(clock)
    run = Run()
    fields = {f.name for f in dataclasses.fields(delivery.Sending)}
    pacer: Any = None
    if "pacer" in fields:  # one per container, as the function keeps it (template defaults)
        from segment_bridge.outbound.pacing import Pacer

        pacer = Pacer(50, 1000, clock)

    def destination(workspace_id: str) -> Any:
        if workspace_id in scenario.keyless:
            return None
        return Destination("https://api.segment.io/v1/batch", f"wk-{workspace_id}")

    def sending() -> Any:
        values: dict[str, Any] = {
            "destination": destination,
            "sender": segment,
            "parking": bucket,
            "deadline": clock.now + TIMEOUT - SAFETY,
            "clock": clock,
            "sleep": clock.sleep,
            "retries": retries,
            "pacer": pacer,
            "parallel": 16,  # as the function sends: a slow workspace delays no other
        }
        return delivery.Sending(**{name: value for name, value in values.items() if name in fields})

    def invoke(call: Callable[[], Any]) -> Any:
        clock.sleep(0.01)
        report = call()
        took = clock.settle()
        run.longest_invocation = max(run.longest_invocation, took)
        run.over_timeout += took > TIMEOUT
        for workspace_id, counts in report.by_workspace.items():
            for name, into in (("sent", run.counted_sent), ("parked", run.counted_parked)):
                into[workspace_id] = into.get(workspace_id, 0) + counts.get(name, 0)
        return report

    writes = [
        (START + t, workspace_id)
        for t in _times(scenario.every, scenario.writing)
        for workspace_id in scenario.workspaces
    ]
    written: dict[str, tuple[float, str]] = {}  # messageId -> when and by which workspace
    shard: list[dict[str, Any]] = []
    checkpoint = attempts = 0
    sequence = itertools.count(1)
    while clock.now < START + scenario.until:
        while writes and writes[0][0] <= clock.now:
            at, workspace_id = writes.pop(0)
            record, message_id = _record(workspace_id, next(sequence), at)
            written[message_id] = (at, workspace_id)
            shard.append(record)
            run.written += 1
        ready = [
            r for r in shard[checkpoint:] if clock.now - r["dynamodb"]["ApproximateCreationDateTime"] >= 0
        ]
        if ready:
            batch = ready[:BATCH_SIZE]
            aged = [
                r for r in batch if clock.now - r["dynamodb"]["ApproximateCreationDateTime"] > MAX_RECORD_AGE
            ]
            if aged:  # MaximumRecordAgeInSeconds: Lambda hands them to the on-failure destination
                run.on_failure_records += len(aged)
                checkpoint += len(aged)
                continue
            run.invocations += 1
            report = invoke(
                functools.partial(
                    delivery.deliver,
                    delivery.stream_changes({"Records": batch}, clock),
                    outbox_table=OUTBOX,
                    own_tables=frozenset(),
                    sending=sending(),
                )
            )
            failed = {str(record_id) for record_id in report.failed}
            if not failed:
                checkpoint += len(batch)
                attempts = 0
                continue
            first = min(n for n, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] in failed)
            checkpoint += first
            attempts = attempts + 1 if first == 0 else 1
            if attempts > MAX_RETRY_ATTEMPTS:  # the batch's pointer to the on-failure destination
                rest = len(batch) - first
                run.on_failure_records += rest
                checkpoint += rest
                attempts = 0
            continue
        due = retries.take(RETRY_BATCH)
        if due:
            run.retry_invocations += 1
            report = invoke(functools.partial(delivery.deliver_retries, due, sending()))
            for record_id in dict.fromkeys(report.failed):  # handed back: visible again later
                body = next(body for message_id, body in due if message_id == record_id)
                retries.defer([(body, 30)])
            continue
        upcoming = [t for t in (writes[0][0] if writes else None, retries.next_due()) if t is not None]
        if not upcoming:
            break
        clock.base = max(clock.base + 1.0, min(upcoming))
    return _figures(scenario, run, segment, bucket, retries, written)


def _created(record: dict[str, Any]) -> float:
    return float(record["dynamodb"]["ApproximateCreationDateTime"])


def _times(every: float, writing: float) -> list[float]:
    return [n * every for n in range(int(writing // every))]


def _record(workspace_id: str, n: int, at: float) -> tuple[dict[str, Any], str]:
    from segment_bridge.outbound.track import outbound_message_id

    keys = {"pk": f"WS#{workspace_id}", "sk": f"EVT#{n:08d}"}
    item = keys | {"event": "Flow Completed", "userId": f"user-{n % 97}", "properties": {"n": Decimal(n)}}
    record = {
        "eventID": str(n),
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "eventSourceARN": STREAM_ARN,
        "dynamodb": {
            "Keys": {name: _serializer.serialize(value) for name, value in keys.items()},
            "NewImage": {name: _serializer.serialize(value) for name, value in item.items()},
            "SequenceNumber": f"{n:021d}",
            "ApproximateCreationDateTime": at,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    return record, outbound_message_id(OUTBOX, keys)


def _figures(
    scenario: Scenario,
    run: Run,
    segment: StandIn,
    bucket: Bucket,
    retries: DelayQueue,
    written: dict[str, tuple[float, str]],
) -> dict[str, Any]:
    by_workspace: dict[str, dict[str, Any]] = {}
    for workspace_id in scenario.workspaces:
        mine = [m for m, (_, owner) in written.items() if owner == workspace_id]
        delivered = [m for m in mine if m in segment.deliveries]
        late = [segment.delivered_at[m] - written[m][0] for m in delivered]
        by_workspace[workspace_id] = {
            "written": len(mine),
            "delivered": len(delivered),
            "sent_more_than_once": sum(segment.deliveries[m] > 1 for m in delivered),
            "counted_sent": run.counted_sent.get(workspace_id, 0),
            "counted_parked": run.counted_parked.get(workspace_id, 0),
            "parked_objects": sum(1 for o in bucket.objects.values() if o["workspace_id"] == workspace_id),
            "slowest_delivery_s": round(max(late), 1) if late else None,
        }
    return {
        "written": run.written,
        "delivered": sum(1 for m in written if m in segment.deliveries),
        "parked_objects": len(bucket.objects),
        "parks": bucket.parks,
        "on_failure_records": run.on_failure_records,
        "still_waiting": sum(len(json.loads(body).get("events", [])) for _, _, body in retries.heap),
        "invocations": run.invocations,
        "retry_invocations": run.retry_invocations,
        "over_timeout": run.over_timeout,
        "longest_invocation_s": round(run.longest_invocation, 1),
        "requests": len(segment.requests),
        "largest_request_bytes": max((r[1] for r in segment.requests), default=0),
        "workspaces": by_workspace,
    }
