"""AWS requests, billed units and dollars per event, end to end, next to a naive design priced alike.

The real handlers run on moto in process, with the template's resources: Segment webhook deliveries
(API Gateway HTTP API v2 events) into the IngestFunction; the queue messages it sends, handed to the
ProcessorFunction as Lambda's SQS poller would (the template's BatchSize); and an outbound share: outbox
items the product writes, read from the table's stream and handed to the EmitterFunction (its BatchSize),
which sends them to a local Segment stand-in. Every AWS call the handlers make is counted through
boto3's event hooks, with what AWS bills for it (see common.AwsMeter); the poller's own SQS calls are
added. Lambda is billed as AWS bills it: the invocation's duration (wall time) x its MemorySize, on
arm64. Each AWS call waits a typical in-region latency in the thread that makes it (LATENCY_MS,
`common.InjectedLatency`), so calls a handler makes from threads overlap as on AWS; the duration is
the handler's wall time, less the CPU moto and the meter spent answering in process (AWS's own time is
the injected latency), with the rest of the invocation thread's time (our code, and its waits for its
own threads) stretched to the function's CPU share below one vCPU, plus 100 ms per Segment request.
The naive design: one HTTP request and one Lambda invocation per event (the IngestFunction on a
one-event delivery, measured here) and two DynamoDB writes per event, priced with the same table.

Two designs in one run: --baseline REV (default 1b62102, the serial processor before issue #13) is
extracted with `git archive` (its layer, functions/ and template.yaml) and measured in a subprocess
whose sys.path starts with its layer; the working tree likewise in another.

Targets (issue #6): <= 1.2 DynamoDB write units per event on the track-heavy mix, <= $1.00 per million
events end to end.

Run: make bench   (or .venv/bin/python benchmarks/bench_cost.py [--baseline REV | --no-baseline])
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import pickle  # nosec B403 - this script's own results, between its own processes
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    BATCH,
    DYNAMODB_READS,
    EVENTS,
    KB,
    MIXES,
    REPO,
    AwsMeter,
    InjectedLatency,
    as_relayed,
    extract_revision,
    mix_batches,
    outbox_items,
    sqs_chunks,
    use_fake_aws,
)

# --- prices: AWS list prices in us-east-1, first tier, without free tiers (read 2026-11-22) -------------
# aws.amazon.com/api-gateway/pricing: HTTP APIs, first 300 million requests a month, each request metered
# in 512 KB increments.
HTTP_API_PER_REQUEST = 1.00 / 1e6
HTTP_API_METERED_BYTES = 512 * KB
# aws.amazon.com/lambda/pricing: Arm, first 7.5 billion GB-seconds a month.
LAMBDA_PER_GB_SECOND = 0.0000133334
LAMBDA_PER_REQUEST = 0.20 / 1e6
# aws.amazon.com/sqs/pricing: standard queue; every 64 KB chunk of a request's payload is one request.
SQS_PER_REQUEST = 0.40 / 1e6
# aws.amazon.com/dynamodb/pricing/on-demand: Standard table class, since 2024-11-01 (half the earlier
# $1.25 and $0.25).
DYNAMODB_PER_WRITE_UNIT = 0.625 / 1e6
DYNAMODB_PER_READ_UNIT = 0.125 / 1e6
# aws.amazon.com/s3/pricing: S3 Standard, PUT/COPY/POST/LIST and GET/SELECT requests.
S3_PER_PUT = 0.005 / 1000
S3_PER_GET = 0.0004 / 1000
# aws.amazon.com/secrets-manager/pricing: API calls.
SECRETS_PER_CALL = 0.05 / 10_000
# aws.amazon.com/cloudwatch/pricing: logs ingested (standard; Lambda's first tier).
LOGS_PER_GB = 0.50
# aws.amazon.com/ec2/pricing/on-demand: data transfer out to the internet, first 10 TB a month.
TRANSFER_OUT_PER_GB = 0.09
# Storage accrues per month kept, not per event: printed apart, not in the totals.
DYNAMODB_PER_GB_MONTH = 0.25
S3_PER_GB_MONTH = 0.023
GB = 1024**3

# --- assumptions ----------------------------------------------------------------------------------
OUTBOUND_SHARE = 0.1
"""Outbox events the product writes per inbound event."""
OUTBOX_BLOB = 700
"""Characters of notes in an outbox item: track calls of about 0.8 KB (bench_emitter's "typical")."""
LATENCY_MS = {"dynamodb": 6.0, "sqs": 12.0, "s3": 25.0, "secretsmanager": 15.0}
"""What one call to each service waits (typical in-region p50), injected in the calling thread."""
OTHER_LATENCY_MS = 10.0
SEGMENT_LATENCY_MS = 100.0
"""One /v1/batch request to Segment (api.segment.io) from us-east-1."""
FULL_VCPU_MB = 1769
"""Lambda gives a function CPU in proportion to its memory, one vCPU at 1,769 MB: the invocation
thread's own time measured here on a full core is stretched by 1,769 / MemorySize below that (taking
this machine's core for a Graviton one)."""
BASELINE_REV = "1b62102"
"""The serial processor before issue #13 (bench_throughput's baseline too)."""
PLATFORM_LOG_BYTES = 350
"""Lambda's START, END and REPORT lines of an invocation."""
ACCESS_LOG_BYTES = 330
"""The API's access log line of a request (the template's format)."""
NAIVE_SAMPLES = 15
S3_GETS = {"GetObject", "HeadObject"}
FUNCTIONS = ("IngestFunction", "ProcessorFunction", "EmitterFunction")
WS = "ws_bench"
KEY = "sbk_bench_key_000000000000000000000000"
WRITE_KEY = "segment-source-write-key-bench"
TARGET_WCU_PER_EVENT = 1.2
TARGET_DOLLARS_PER_MILLION = 1.00


class LogSink(io.TextIOBase):
    """Stands in for stdout while the handlers run: counts what they log (Powertools' JSON lines and
    metrics), which is what CloudWatch Logs would ingest."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode())
        return len(text)


@dataclass
class Invocation:
    function: str
    wall_ms: float  # with AWS's latency injected
    own_ms: float  # the invocation thread's time, less moto's and the meter's CPU and its injected waits
    billed_ms: int  # the duration AWS bills: own time at the CPU share, the waits, Segment's answers
    log_bytes: int


@dataclass
class Result:
    mix: str
    events: int
    event_bytes: float
    deliveries: int = 0
    http_units: int = 0
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    units: dict[tuple[str, str, str], float] = field(default_factory=dict)
    payload_bytes: Counter[str] = field(default_factory=Counter)
    invocations: list[Invocation] = field(default_factory=list)
    memory_mb: dict[str, int] = field(default_factory=dict)
    outbound: int = 0
    segment_requests: int = 0
    segment_bytes: int = 0
    stored_bytes: dict[str, int] = field(default_factory=dict)
    naive: list[Invocation] = field(default_factory=list)


def cpu_slowdown(memory_mb: int) -> float:
    return max(1.0, FULL_VCPU_MB / memory_mb)


def by_service(requests: Counter[tuple[str, str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (service, _), n in requests.items():
        out[service] += n
    return out


class Pipeline:
    """The template's functions, fed as API Gateway, Lambda's SQS poller and its stream poller would."""

    def __init__(
        self,
        resources: Any,
        meter: AwsMeter,
        latency: InjectedLatency,
        segment: Any,
        sink: LogSink,
        root: Path,
    ) -> None:
        import boto3

        from bridge_dev.runtime import load_function
        from bridge_dev.template import load_template

        template = load_template(root / "template.yaml")
        self.functions = {name: load_function(template, name, code_root=root) for name in FUNCTIONS}
        self.latency = latency
        self.batch_sizes = {
            name: next(iter(template["Resources"][name]["Properties"]["Events"].values()))["Properties"][
                "BatchSize"
            ]
            for name in ("ProcessorFunction", "EmitterFunction")
        }
        self.resources, self.meter, self.segment, self.sink = resources, meter, segment, sink
        # The pollers' own reads go through a session the meter does not see: Lambda's stream reads are
        # free, and its SQS calls are charged explicitly (`charge`).
        session = boto3.session.Session()
        self._sqs = session.client("sqs")
        self._dynamodb = session.client("dynamodb")
        self._streams = session.client("dynamodbstreams")
        self._seen: set[str] = set()
        self.invocations: list[Invocation] = []
        self.deliveries = 0
        self.http_units = 0
        self._requests = 0

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        meter = self.meter
        inside, metering, logged = meter.inside_cpu_seconds, meter.meter_seconds, self.sink.bytes
        slept = self.latency.slept_here()
        sent = len(self.segment.requests)
        self._requests += 1
        start = time.perf_counter()
        result = self.functions[name].invoke(event, f"bench-{self._requests}")
        wall = time.perf_counter() - start
        if meter.recording:
            # The stand-in's CPU (moto and the meter, in whichever thread) is not the function's time on
            # AWS; what is left is the duration: the invocation thread's own work and its waits for its
            # threads (stretched below one vCPU), and its own waits for AWS (not stretched).
            waited = self.latency.slept_here() - slept
            stand_in = (meter.inside_cpu_seconds - inside) + (meter.meter_seconds - metering)
            own = max(0.0, wall - stand_in - waited)
            segment = (len(self.segment.requests) - sent) * SEGMENT_LATENCY_MS
            slowdown = cpu_slowdown(self.functions[name].memory_mb)
            self.invocations.append(
                Invocation(
                    function=name,
                    wall_ms=wall * 1000,
                    own_ms=own * 1000,
                    billed_ms=math.ceil((own * slowdown + waited) * 1000 + segment),
                    log_bytes=self.sink.bytes - logged,
                )
            )
        return result

    def deliver(self, events: list[dict[str, Any]]) -> None:
        """One Segment webhook delivery, then its queue messages through the processor."""
        from bridge_dev.events import bearer, http_event
        from bridge_dev.runtime import lambda_sqs_event

        body = json.dumps(events, separators=(",", ":"))
        request = http_event("/v1/segment", body, headers=bearer(KEY), request_id=f"req-{self._requests}")
        answer = self.invoke("IngestFunction", request)
        assert answer["statusCode"] == 200, answer["body"]
        assert json.loads(answer["body"])["accepted"] == len(events), answer["body"]
        if self.meter.recording:
            self.deliveries += 1
            self.http_units += math.ceil(len(body.encode()) / HTTP_API_METERED_BYTES)
        messages = self._take_messages()
        size = self.batch_sizes["ProcessorFunction"]
        for start in range(0, len(messages), size):
            group = messages[start : start + size]
            payload = sum(len(message["Body"].encode()) for message in group)
            self.meter.charge("sqs", "ReceiveMessage", "IngestQueue (Lambda's poller)", sqs_chunks(payload))
            event = lambda_sqs_event(self.resources.queue_arns["IngestQueue"], group)
            assert self.invoke("ProcessorFunction", event) == {"batchItemFailures": []}
            self.meter.charge("sqs", "DeleteMessageBatch", "IngestQueue (Lambda's poller)", 1)

    def _take_messages(self) -> list[Any]:
        url = self.resources.queue_urls["IngestQueue"]
        messages: list[Any] = []
        while got := self._sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            messages += got
            self._sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(got)],
            )
        return messages

    def emit(self, items: list[dict[str, Any]]) -> None:
        """The product writes outbox items; their stream records go through the emitter."""
        from bridge_dev.runtime import lambda_stream_record
        from segment_bridge.store import get_store

        for item in items:
            get_store().publish(item)
        table = self.resources.tables["OutboxTable"]
        stream = self._dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        records = []
        for shard in self._streams.describe_stream(StreamArn=stream)["StreamDescription"]["Shards"]:
            iterator: str | None = self._streams.get_shard_iterator(
                StreamArn=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            ).get("ShardIterator")
            while iterator:
                page = self._streams.get_records(ShardIterator=iterator)
                records += [r for r in page["Records"] if r["dynamodb"]["SequenceNumber"] not in self._seen]
                iterator = page.get("NextShardIterator") if page["Records"] else None
        self._seen |= {record["dynamodb"]["SequenceNumber"] for record in records}
        size = self.batch_sizes["EmitterFunction"]
        for start in range(0, len(records), size):
            event = {"Records": [lambda_stream_record(r, stream) for r in records[start : start + size]]}
            assert self.invoke("EmitterFunction", event) == {"batchItemFailures": []}


def measure(mix: str, sink: LogSink, root: Path) -> Result:
    from moto import mock_aws

    from bridge_dev.segment_api import FakeSegment
    from bridge_dev.template import create_resources, load_template
    from segment_bridge.settings import get_settings
    from segment_bridge.store import get_store

    rng = random.Random(mix)
    batches = [
        [as_relayed(event, start + n, rng) for n, event in enumerate(batch)]
        for start, batch in zip(range(0, EVENTS, BATCH), mix_batches(mix, rng), strict=True)
    ]
    events = [event for batch in batches for event in batch]
    result = Result(
        mix, len(events), statistics.mean(len(json.dumps(e, separators=(",", ":"))) for e in events)
    )
    template = load_template(root / "template.yaml")
    meter = AwsMeter(template)
    latency = InjectedLatency(OTHER_LATENCY_MS / 1000, {s: ms / 1000 for s, ms in LATENCY_MS.items()})
    with mock_aws(), FakeSegment({WRITE_KEY}).start() as segment:
        resources = create_resources(template=template)
        os.environ.update(resources.environment())
        meter.install()
        latency.install()
        latency.enabled = False
        get_settings.cache_clear()
        get_store.cache_clear()
        store = get_store()
        store.create_workspace("bench", workspace_id=WS)
        store.issue_key(WS, KEY)
        store.set_segment_destination(WS, WRITE_KEY, segment.url)
        pipeline = Pipeline(resources, meter, latency, segment, sink, root)

        # Warm containers: one delivery and one outbox item first (imports, the key, mapping and
        # destination caches), not counted.
        warm = [
            {**event, "userId": "warm-up", "anonymousId": "warm-up", "messageId": f"warm-up-{n}"}
            for n, event in enumerate(events[:2])
        ]
        pipeline.deliver(warm)
        pipeline.emit([item | {"sk": "EVT#warm-up"} for item in outbox_items(1, OUTBOX_BLOB, rng)])
        sent_before = len(segment.requests)

        meter.recording = latency.enabled = True
        for batch in batches:
            pipeline.deliver(batch)
        result.outbound = round(len(events) * OUTBOUND_SHARE)
        pipeline.emit(outbox_items(result.outbound, OUTBOX_BLOB, rng))
        result.requests = Counter(meter.requests)
        result.units = dict(meter.units)
        result.payload_bytes = Counter(meter.payload_bytes)
        result.invocations = list(pipeline.invocations)
        result.deliveries, result.http_units = pipeline.deliveries, pipeline.http_units
        result.memory_mb = {name: function.memory_mb for name, function in pipeline.functions.items()}
        counted = segment.requests[sent_before:]
        result.segment_requests = len(counted)
        result.segment_bytes = sum(r.raw_bytes for r in counted)
        result.stored_bytes = meter.stored_bytes()

        # The naive design's invocation: the IngestFunction on one-event deliveries.
        pipeline.invocations.clear()
        for event in events[:NAIVE_SAMPLES]:
            pipeline.deliver([event | {"messageId": f"naive-{event['messageId']}"}])
        result.naive = [i for i in pipeline.invocations if i.function == "IngestFunction"]
        meter.recording = latency.enabled = False
    return result


# ---------------------------------------------------------------------------------------------- pricing


def lambda_gb_seconds(result: Result, function: str, wall: bool = False) -> float:
    """Invocations x median billed duration x memory. With `wall`, the whole wall time on moto where it
    is longer (moto's CPU billed as if it were the function's): an upper bound for a threaded handler,
    whose stand-in CPU may overlap its waits instead of adding to them."""
    billed = [
        max(i.wall_ms, i.billed_ms) if wall else i.billed_ms
        for i in result.invocations
        if i.function == function
    ]
    if not billed:
        return 0.0
    return len(billed) * statistics.median(billed) / 1000 * result.memory_mb[function] / 1024


def log_bytes(result: Result) -> float:
    return (
        sum(i.log_bytes for i in result.invocations)
        + len(result.invocations) * PLATFORM_LOG_BYTES
        + result.deliveries * ACCESS_LOG_BYTES
    )


def dynamodb_units(result: Result, reads: bool, outbox: bool = True) -> float:
    return sum(
        units
        for (service, operation, resource), units in result.units.items()
        if service == "dynamodb"
        and (operation in DYNAMODB_READS) == reads
        and (outbox or not resource.startswith("OutboxTable"))
    )


def costs(result: Result) -> dict[str, float]:
    """Dollars per million events, by line item."""
    per = 1e6 / result.events
    units: defaultdict[str, float] = defaultdict(float)
    for (service, operation, _), n in result.units.items():
        units[f"{service} {operation}"] += n
    sqs = sum(n for name, n in units.items() if name.startswith("sqs "))
    s3_gets = sum(n for name, n in units.items() if name.removeprefix("s3 ") in S3_GETS)
    s3_puts = sum(n for name, n in units.items() if name.startswith("s3 ")) - s3_gets
    secrets = sum(n for name, n in units.items() if name.startswith("secretsmanager "))
    gb_seconds = sum(lambda_gb_seconds(result, function) for function in FUNCTIONS)
    return {
        "API Gateway (HTTP API)": result.http_units * HTTP_API_PER_REQUEST * per,
        "Lambda requests": len(result.invocations) * LAMBDA_PER_REQUEST * per,
        "Lambda duration (GB-s)": gb_seconds * LAMBDA_PER_GB_SECOND * per,
        "SQS": sqs * SQS_PER_REQUEST * per,
        "DynamoDB writes": dynamodb_units(result, reads=False) * DYNAMODB_PER_WRITE_UNIT * per,
        "DynamoDB reads": dynamodb_units(result, reads=True) * DYNAMODB_PER_READ_UNIT * per,
        "S3 requests": (s3_puts * S3_PER_PUT + s3_gets * S3_PER_GET) * per,
        "Secrets Manager": secrets * SECRETS_PER_CALL * per,
        "CloudWatch Logs": log_bytes(result) / GB * LOGS_PER_GB * per,
        "data transfer out": result.segment_bytes / GB * TRANSFER_OUT_PER_GB * per,
    }


def naive_billed_ms(result: Result) -> list[float]:
    """Our ingest code on one event (own time: moto's answer to its queue call and the call's latency
    left out), then two DynamoDB writes' latency."""
    slowdown = cpu_slowdown(result.memory_mb["IngestFunction"])
    return [i.own_ms * slowdown + 2 * LATENCY_MS["dynamodb"] for i in result.naive]


def naive_costs(result: Result) -> dict[str, float]:
    """The naive design, per million events: its invocation is our ingest code on one event, with two
    DynamoDB writes' latency instead of our queue call's."""
    billed = statistics.median(naive_billed_ms(result))
    logs = statistics.median(i.log_bytes for i in result.naive) + PLATFORM_LOG_BYTES + ACCESS_LOG_BYTES
    memory = result.memory_mb["IngestFunction"]
    return {
        "API Gateway (HTTP API)": 1e6 * HTTP_API_PER_REQUEST,
        "Lambda requests": 1e6 * LAMBDA_PER_REQUEST,
        "Lambda duration (GB-s)": 1e6 * math.ceil(billed) / 1000 * memory / 1024 * LAMBDA_PER_GB_SECOND,
        "SQS": 0.0,
        "DynamoDB writes": 1e6 * 2 * DYNAMODB_PER_WRITE_UNIT,
        "DynamoDB reads": 0.0,
        "S3 requests": 0.0,
        "Secrets Manager": 0.0,
        "CloudWatch Logs": 1e6 * logs / GB * LOGS_PER_GB,
        "data transfer out": 0.0,
    }


# ---------------------------------------------------------------------------------------------- report


def table_rows(results: list[Result]) -> list[tuple[str, str, str, str, list[float | None]]]:
    """(service, operation, resource, unit, [requests, units per 1,000 events for each result])."""
    rows: list[tuple[str, str, str, str, list[float | None]]] = []

    def add(service: str, operation: str, resource: str, unit: str, values: list[float | None]) -> None:
        rows.append((service, operation, resource, unit, values))

    def per_k(result: Result, n: float) -> float:
        return n * 1000 / result.events

    add(
        "apigateway",
        "POST /v1/segment",
        "BridgeApi",
        "512 KB requests",
        [v for r in results for v in (per_k(r, r.deliveries), per_k(r, r.http_units))],
    )
    for function in FUNCTIONS:
        values: list[float | None] = []
        for r in results:
            values += [
                per_k(r, sum(1 for i in r.invocations if i.function == function)),
                per_k(r, lambda_gb_seconds(r, function)),
            ]
        add("lambda", "Invoke", f"{function} ({results[0].memory_mb[function]} MB)", "GB-s", values)
    order = {"sqs": 0, "s3": 1, "dynamodb": 2, "secretsmanager": 3}
    operations = sorted(
        {(s, o) for r in results for (s, o) in r.requests}, key=lambda so: (order.get(so[0], 9), so)
    )
    unit_names = {"sqs": "64 KB chunks"}
    for service, operation in operations:
        resources = sorted(
            {res for r in results for (s, o, res) in r.units if (s, o) == (service, operation)}
        )
        for n, resource in enumerate(resources):
            unit = unit_names.get(service, "requests")
            if service == "dynamodb":
                unit = "RCU" if operation in DYNAMODB_READS else "WCU"
            values = []
            for r in results:
                # requests on the operation's first line only; units on each resource's line
                values += [
                    per_k(r, r.requests[service, operation]) if n == 0 else None,
                    per_k(r, r.units.get((service, operation, resource), 0.0)),
                ]
            add(service if n == 0 else "", operation if n == 0 else "", resource, unit, values)
    add(
        "logs",
        "ingestion",
        "Lambda + API access logs",
        "KB",
        [v for r in results for v in (None, per_k(r, log_bytes(r) / KB))],
    )
    add(
        "transfer",
        "out to Segment",
        "gzip'd /v1/batch bodies",
        "KB",
        [v for r in results for v in (per_k(r, r.segment_requests), per_k(r, r.segment_bytes / KB))],
    )
    return rows


def cell(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}" if value else "0"


def durations(label: str, runs: list[Invocation], memory_mb: int, billed: list[float]) -> str:
    wall = statistics.median(i.wall_ms for i in runs)
    ours = statistics.median(i.own_ms for i in runs)
    return (
        f"  {label:<34}{len(runs):>3} x {wall:8.1f} {ours:8.1f} {statistics.median(billed):8.0f} ms"
        f"  at {memory_mb} MB"
    )


def report(results: list[Result], out: Any) -> None:
    def say(line: str = "") -> None:
        print(line.rstrip(), file=out)

    sizes = " and ".join(f"{r.event_bytes / KB:.2f} KB ({r.mix})" for r in results)
    say(f"AWS requests and billed units per 1,000 events: {EVENTS:,} events a mix in webhook deliveries of")
    say(f"{BATCH:,}, of about {sizes}; {OUTBOUND_SHARE:.0%} as many outbox events;")
    say("warm containers (keys, mappings and destinations cached)")
    head = f"{'service':<11}{'operation':<19}{'resource':<32}"
    say(head + "".join(f"{r.mix:>22}" for r in results) + "  unit")
    say(" " * len(head) + "".join(f"{'requests':>11}{'units':>11}" for _ in results))
    for service, operation, resource, unit, values in table_rows(results):
        cells = "".join(f"{cell(v):>11}" for v in values)
        say(f"{service:<11}{operation:<19}{resource:<32}{cells}  {unit}")
    say("IngestQueue (Lambda's poller): modelled, a ReceiveMessage and a DeleteMessageBatch an invocation;")
    say("its reads of the outbox stream are free. Write and read units include the secondary indexes'.")
    say()

    say("handler durations, median per invocation (ms): wall on moto with AWS's latency injected, our")
    say("code (the invocation thread's time less moto's CPU and its waits), billed (the duration AWS bills:")
    say("our code at the function's CPU share, plus the waits for AWS and Segment)")
    for r in results:
        for function in FUNCTIONS:
            runs = [i for i in r.invocations if i.function == function]
            billed = [float(i.billed_ms) for i in runs]
            say(durations(f"{r.mix} {function}", runs, r.memory_mb[function], billed))
    naive = results[-1].naive
    billed = naive_billed_ms(results[-1])
    memory = results[-1].memory_mb["IngestFunction"]
    say(durations("naive: one event, two writes", naive, memory, billed))
    say()

    table = {r.mix: costs(r) for r in results}
    baseline = naive_costs(results[-1])
    say(f"{'$ per million events':<40}" + "".join(f"{r.mix:>16}" for r in results) + f"{'naive':>10}")
    for item in baseline:
        cells = "".join(f"{table[r.mix][item]:>16.3f}" for r in results)
        say(f"  {item:<38}{cells}{baseline[item]:>10.3f}")
    totals = {mix: sum(lines.values()) for mix, lines in table.items()}
    naive_total = sum(baseline.values())
    say(f"  {'total':<38}" + "".join(f"{totals[r.mix]:>16.3f}" for r in results) + f"{naive_total:>10.3f}")
    say(f"  {'against naive':<38}" + "".join(f"{totals[r.mix] / naive_total:>15.2f}x" for r in results))
    say()

    for r in results:
        dynamo = sum(r.stored_bytes.values()) / r.events * 1e6 / GB
        archive = r.payload_bytes["s3"] / r.events * 1e6 / GB
        say(
            f"storage per million {r.mix} events, not in the totals: DynamoDB {dynamo:.2f} GB "
            f"(${dynamo * DYNAMODB_PER_GB_MONTH:.2f}/month), S3 {archive:.2f} GB "
            f"(${archive * S3_PER_GB_MONTH:.3f}/month)"
        )
    say()

    for r in results:
        wcu = dynamodb_units(r, reads=False, outbox=False) / r.events
        line = f"DynamoDB write units per inbound event, {r.mix}: {wcu:.2f}"
        if r.mix == "track-heavy":
            over = wcu - TARGET_WCU_PER_EVENT
            verdict = "ok" if over <= 0 else f"MISSED by {over:.2f} ({over / TARGET_WCU_PER_EVENT:.0%})"
            line += f" (target <= {TARGET_WCU_PER_EVENT}): {verdict}"
        say(line)
    for r in results:
        over = totals[r.mix] - TARGET_DOLLARS_PER_MILLION
        verdict = "ok" if over <= 0 else f"MISSED by ${over:.2f} ({over / TARGET_DOLLARS_PER_MILLION:.0%})"
        say(
            f"$ per million events end to end, {r.mix}: ${totals[r.mix]:.2f} "
            f"(target <= ${TARGET_DOLLARS_PER_MILLION:.2f}, naive ${naive_total:.2f}): {verdict}"
        )


def measure_design(root: Path) -> list[Result]:
    """Every mix through the design at `root` (in a subprocess of its own: its layer first on sys.path)."""
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as scratch:
        out = Path(scratch) / "results.pickle"
        done = subprocess.run(  # noqa: S603 - this interpreter, this script
            [sys.executable, __file__, "--worker", str(root), "--out", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode:
            raise SystemExit(f"the worker for {root} failed:\n{done.stderr[-4000:]}")
        results: list[Result] = pickle.loads(out.read_bytes())  # noqa: S301  # nosec B301 - written above
        return results


def worker(root: Path, out: Path) -> None:
    sys.path.insert(0, str(root / "layers" / "bridge"))
    use_fake_aws()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    stdout, sink = sys.stdout, LogSink()
    sys.stdout = sink  # what the handlers print is what CloudWatch Logs would ingest
    try:
        results = [measure(mix, sink, root) for mix in MIXES]
    finally:
        sys.stdout = stdout
    out.write_bytes(pickle.dumps(results))


def compare(designs: dict[str, list[Result]], out: Any) -> None:
    """$ per million events by line item, each design next to the other (the same run)."""
    tables = {name: {r.mix: costs(r) for r in results} for name, results in designs.items()}
    mixes = [r.mix for r in next(iter(designs.values()))]
    columns = [(name, mix) for mix in mixes for name in designs]
    print("$ per million events, both designs measured in this run", file=out)
    print(f"{'':<26}" + "".join(f"{mix[:13]:>15}" for _, mix in columns), file=out)
    print(f"{'':<26}" + "".join(f"{name[:14]:>15}" for name, _ in columns), file=out)
    items = list(next(iter(tables.values()))[mixes[0]])
    for item in items:
        cells = "".join(f"{tables[name][mix][item]:>15.3f}" for name, mix in columns)
        print(f"  {item:<24}{cells}", file=out)
    totals = "".join(f"{sum(tables[name][mix].values()):>15.3f}" for name, mix in columns)
    print(f"  {'total':<24}{totals}", file=out)
    # Bounded from above: the whole wall time on moto billed (moto's CPU included, as if AWS took it).
    by_column = {(name, r.mix): r for name, rs in designs.items() for r in rs}
    upper = ""
    for name, mix in columns:
        r = by_column[name, mix]
        billed = sum(lambda_gb_seconds(r, f) for f in FUNCTIONS)
        walled = sum(lambda_gb_seconds(r, f, wall=True) for f in FUNCTIONS)
        extra = (walled - billed) * LAMBDA_PER_GB_SECOND * 1e6 / r.events
        upper += f"{sum(tables[name][mix].values()) + extra:>15.3f}"
    print(f"  {'total, wall time billed':<24}{upper}", file=out)
    for name, results in designs.items():
        for r in results:
            runs = [i for i in r.invocations if i.function == "ProcessorFunction"]
            memory = r.memory_mb["ProcessorFunction"]
            print(
                f"  {name} {r.mix}: ProcessorFunction {len(runs)} invocations at {memory} MB, median "
                f"wall {statistics.median(i.wall_ms for i in runs):.0f} ms, billed "
                f"{statistics.median(i.billed_ms for i in runs):.0f} ms",
                file=out,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default=BASELINE_REV, help=f"git revision (default {BASELINE_REV})")
    parser.add_argument("--no-baseline", action="store_true", help="this working tree only")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.out)
        return 0
    designs: dict[str, list[Result]] = {}
    if not args.no_baseline:
        with tempfile.TemporaryDirectory(prefix="bench-cost-baseline-") as scratch:
            designs[f"baseline {args.baseline}"] = measure_design(
                extract_revision(args.baseline, Path(scratch))
            )
    designs["tree"] = measure_design(REPO)
    report(designs["tree"], sys.stdout)
    if len(designs) > 1:
        print()
        compare(designs, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
