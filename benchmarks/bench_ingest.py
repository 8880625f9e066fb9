"""Ingest CPU per event against its floor, measured in the same run.

The floor is what any intake must at least do with a body: `json.loads` it and `json.dumps` the events
again. Ours is the whole of intake: decode, authenticate (in-memory directory), parse, validate each
event against the Segment Spec, enrich, serialise and pack compressed queue messages. The network call
to SQS is not counted (it is I/O, not CPU). Target: ours <= 3x the floor.

Run: make bench   (or .venv/bin/python benchmarks/bench_ingest.py [--repeat N])
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from segment_bridge.ingest.intake import HttpRequest, Limits, receive
from segment_bridge.keys import WorkspaceAuth

from common import relayed_context, use_fake_aws

KEY = "sbk_bench_key_000000000000000000000000"
TARGET_RATIO = 3.0


def webhook_event(n: int, rng: random.Random) -> dict[str, Any]:
    """An event shaped like what Segment relays to a webhook (about 1 KB)."""
    kind = rng.choice(["track", "track", "track", "identify", "page", "group"])
    event: dict[str, Any] = {
        "type": kind,
        "messageId": f"api-{rng.getrandbits(96):024x}",
        "userId": f"user-{rng.randrange(10_000)}",
        "anonymousId": f"{rng.getrandbits(128):032x}",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "originalTimestamp": "2026-01-01T00:00:00.000Z",
        "sentAt": "2026-01-01T00:00:00.100Z",
        "receivedAt": "2026-01-01T00:00:00.200Z",
        "context": relayed_context(n, rng),
        "integrations": {},
    }
    if kind == "track":
        event |= {
            "event": rng.choice(["Item Viewed", "Signed Up", "Flow Completed"]),
            "properties": {"sku": f"sku-{n}", "price": rng.randrange(10_000) / 100, "currency": "EUR"},
        }
    elif kind == "identify":
        event["traits"] = {"email": f"person{n}@example.com", "plan": "premium", "language": "en"}
    elif kind == "group":
        event |= {"groupId": f"org-{n % 97}", "traits": {"name": f"Org {n % 97}", "employees": n}}
    else:
        event |= {"name": "Pricing", "properties": {"path": "/pricing"}}
    return event


class Directory:
    def workspace_for_key(self, key: str) -> WorkspaceAuth | None:
        return WorkspaceAuth("ws_bench") if key == KEY else None


class CountingSink:
    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    def enqueue(self, bodies: list[str], workspace_id: str) -> None:
        self.messages += len(bodies)
        self.bytes += sum(len(body) for body in bodies)

    def keep_rejected(self, *args: object) -> None:
        raise AssertionError("the benchmark batch has no invalid events")

    def add_daily_counts(self, *args: object) -> None:
        pass  # the daily counts' write (one UpdateItem per request) is priced by bench_cost


def cpu_median(work: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        work()
        samples.append(time.process_time() - start)
    return statistics.median(samples)


def measure(size: int, repeat: int) -> dict[str, float]:
    rng = random.Random(size)
    body = json.dumps([webhook_event(n, rng) for n in range(size)], separators=(",", ":"))
    request = HttpRequest(
        path="/v1/segment",
        headers={"authorization": f"Bearer {KEY}"},
        query={},
        body=body,
        is_base64_encoded=False,
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        request_id="bench",
    )
    sink = CountingSink()
    limits = Limits()

    def floor() -> object:
        return json.dumps(json.loads(body))

    def ours() -> object:
        return receive(request, directory=Directory(), sink=sink, limits=limits)

    ours()  # warm up (imports, pydantic's first validation)
    floor_s = cpu_median(floor, repeat)
    ours_s = cpu_median(ours, repeat)
    runs = repeat + 1
    return {
        "events": size,
        "body_bytes": len(body),
        "floor_us_per_event": floor_s / size * 1e6,
        "ours_us_per_event": ours_s / size * 1e6,
        "ratio": ours_s / floor_s,
        "ours_ms": ours_s * 1e3,
        "messages": sink.messages / runs,
        "message_bytes": sink.bytes / max(sink.messages, 1),
    }


def handler_wall_ms(size: int, repeat: int) -> float:
    """Median wall time of the IngestFunction's lambda_handler for one delivery, on in-process moto
    (so it includes moto's own cost of storing the messages: an upper bound for SQS's part)."""
    import os

    use_fake_aws()
    from moto import mock_aws

    from bridge_dev.events import http_event
    from bridge_dev.runtime import load_function
    from bridge_dev.template import create_resources, load_template
    from segment_bridge.settings import get_settings
    from segment_bridge.store import get_store

    rng = random.Random(size)
    body = json.dumps([webhook_event(n, rng) for n in range(size)], separators=(",", ":"))
    with mock_aws():
        os.environ.update(create_resources().environment())
        os.environ.update({"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"})
        get_settings.cache_clear()
        get_store.cache_clear()
        store = get_store()
        store.create_workspace("bench", workspace_id="ws_bench")
        store.issue_key("ws_bench", KEY)
        function = load_function(load_template(), "IngestFunction")
        event = http_event("/v1/segment", body, headers={"authorization": f"Bearer {KEY}"})

        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            response = function.invoke(event, "bench")
            samples.append(time.perf_counter() - start)
            assert response["statusCode"] == 200, response["body"]
    return statistics.median(samples) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(
        f"ingest CPU per event, median of {args.repeat} runs (process time), floor = json.loads + json.dumps"
    )
    print(
        f"{'events':>7} {'body':>9} {'floor µs/ev':>12} {'ours µs/ev':>11} {'ratio':>6} {'ours ms':>8} "
        f"{'messages':>9} {'B/message':>10}  verdict"
    )
    worst = 0.0
    for size in (100, 4000):
        r = measure(size, args.repeat)
        worst = max(worst, r["ratio"])
        verdict = "ok" if r["ratio"] <= TARGET_RATIO else f"over {TARGET_RATIO}x"
        print(
            f"{r['events']:>7.0f} {r['body_bytes'] / 1e6:>7.2f}MB {r['floor_us_per_event']:>12.1f} "
            f"{r['ours_us_per_event']:>11.1f} {r['ratio']:>5.2f}x {r['ours_ms']:>8.1f} {r['messages']:>9.0f} "
            f"{r['message_bytes']:>10.0f}  {verdict}"
        )
    print(f"target: ours <= {TARGET_RATIO}x floor; worst ratio {worst:.2f}x")
    print()
    print("answer time of the IngestFunction handler (wall, median), SQS on in-process moto")
    for size in (100, 4000):
        print(f"{size:>7} events: {handler_wall_ms(size, max(3, args.repeat // 3)):8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
