"""DynamoDB writes of the processor per 1,000 events, next to the naive one-write-per-event design.

Ours: per queue message, one BatchGetItem for every entity touched, then per entity one conditional
write (PutItem when only the profile changes, TransactWriteItems when history is added: profile +
history items + memberships, all or nothing). Naive: every event updates its profile (one UpdateItem
sized like the profile) and every track/page/screen also puts its history item; no exact counts.

Write units follow DynamoDB's pricing rules: 1 WCU per started KB of item, twice that inside a
transaction. Item sizes are computed from the items actually written, by DynamoDB's sizing rules.

Run: make bench   (or .venv/bin/python benchmarks/bench_processor.py)
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from typing import Any

MIXES = {
    # name: (identify, track, page, group) shares, users active in one webhook batch
    "identify-heavy": ((0.6, 0.25, 0.1, 0.05), 300),
    "track-heavy": ((0.1, 0.7, 0.17, 0.03), 150),
}
EVENTS = 4000
BATCH = 1000  # a Segment webhook batch (its default); intake packs it into a few queue messages


def attribute_bytes(value: dict[str, Any]) -> int:
    """Size of one DynamoDB AttributeValue, by DynamoDB's item-size rules (close approximation)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return math.ceil(len(inner.lstrip("-").replace(".", "")) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + attribute_bytes(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + attribute_bytes(v) for v in inner)
    return len(str(inner))


def item_units(item: dict[str, Any]) -> int:
    size = sum(len(name.encode()) + attribute_bytes(value) for name, value in item.items())
    return max(1, math.ceil(size / 1024))


class Meter:
    """Counts write requests and write units of a boto3 DynamoDB client's calls."""

    def __init__(self, client: Any) -> None:
        self.requests: Counter[str] = Counter()
        self.units = 0
        self.read_units = 0  # strongly consistent reads: 1 unit per item read (all are under 4 KB here)
        self.sizes: dict[str, int] = {}  # pk -> WCU of the latest profile item written
        for name in ("put_item", "transact_write_items", "batch_write_item", "batch_get_item", "update_item"):
            setattr(client, name, self._wrap(name, getattr(client, name)))

    def _wrap(self, name: str, call: Any) -> Any:
        def metered(**kwargs: Any) -> Any:
            self.requests[name] += 1
            if name == "put_item":
                self._count(kwargs["Item"], 1)
            elif name == "transact_write_items":
                for entry in kwargs["TransactItems"]:
                    self._count(entry["Put"]["Item"], 2)
            elif name == "batch_write_item":
                for entries in kwargs["RequestItems"].values():
                    for entry in entries:
                        if "PutRequest" in entry:
                            self._count(entry["PutRequest"]["Item"], 1)
            elif name == "batch_get_item":
                self.read_units += sum(len(wanted["Keys"]) for wanted in kwargs["RequestItems"].values())
            return call(**kwargs)

        return metered

    def _count(self, item: dict[str, Any], factor: int) -> None:
        units = item_units(item)
        self.units += factor * units
        if item["sk"]["S"] == "PROFILE":
            self.sizes[item["pk"]["S"]] = units


def generate(mix: str, rng: random.Random) -> list[list[dict[str, Any]]]:
    shares, users = MIXES[mix]
    batches = []
    for start in range(0, EVENTS, BATCH):
        batch = []
        for n in range(start, start + BATCH):
            user = f"user-{rng.randrange(users)}"
            timestamp = f"2026-01-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z"
            base = {
                "userId": user,
                "messageId": f"{mix}-{n}",
                "timestamp": timestamp,
                "receivedAt": timestamp,
                "context": {"ip": "198.51.100.7", "library": {"name": "analytics.js"}},
            }
            kind = rng.choices(["identify", "track", "page", "group"], weights=shares)[0]
            if kind == "identify":
                batch.append(
                    base
                    | {
                        "type": "identify",
                        "traits": {
                            "email": f"{user}@example.com",
                            "plan": rng.choice(["free", "pro", "premium"]),
                            "language": "en",
                            "name": f"Person {user}",
                            "logins": rng.randrange(100),
                        },
                    }
                )
            elif kind == "track":
                batch.append(
                    base
                    | {
                        "type": "track",
                        "event": rng.choice(["Item Viewed", "Signed Up", "Flow Completed"]),
                        "properties": {"sku": f"sku-{n}", "price": rng.randrange(10_000) / 100},
                    }
                )
            elif kind == "page":
                batch.append(base | {"type": "page", "name": "Pricing", "properties": {"path": "/pricing"}})
            else:
                batch.append(
                    base
                    | {
                        "type": "group",
                        "groupId": f"org-{rng.randrange(20)}",
                        "traits": {"name": "Org", "employees": rng.randrange(500)},
                    }
                )
        batches.append(batch)
    return batches


def measure(mix: str) -> dict[str, float]:
    from moto import mock_aws

    from bridge_dev.template import create_resources
    from segment_bridge.mapping import Mapping
    from segment_bridge.profiles import apply_batch
    from segment_bridge.settings import get_settings
    from segment_bridge.store import get_store

    with mock_aws():
        os.environ.update(create_resources().environment())
        get_settings.cache_clear()
        get_store.cache_clear()
        store = get_store()
        meter = Meter(store._dynamodb)
        batches = generate(mix, random.Random(mix))
        history_units = []
        for batch in batches:
            applied = apply_batch("ws_bench", batch, Mapping(), store)
            history_units.append(applied.history_written)
        events = [event for batch in batches for event in batch]
        # Naive: each event rewrites its profile (sized as written) and puts its history item (1 WCU here).
        naive_units = 0
        for event in events:
            key = f"WS#ws_bench#U#{event['userId']}"
            naive_units += meter.sizes.get(key, 1)
            if event["type"] in ("track", "page"):
                naive_units += 1
            if event["type"] == "group":
                naive_units += meter.sizes.get(f"WS#ws_bench#G#{event['groupId']}", 1)
        naive_requests = sum(2 if e["type"] in ("track", "page", "group") else 1 for e in events)
        writes = sum(n for name, n in meter.requests.items() if name != "batch_get_item")
        per = 1000 / len(events)
        return {
            "write_requests": writes * per,
            "read_requests": meter.requests["batch_get_item"] * per,
            "read_units": meter.read_units * per,
            "units": meter.units * per,
            "naive_requests": naive_requests * per,
            "naive_units": naive_units * per,
        }


def main() -> int:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_METRICS_NAMESPACE": "Bench",
        }
    )
    print(f"DynamoDB requests and units per 1,000 events ({EVENTS} events in webhook batches of {BATCH})")
    header = ("mix", "write req", "naive req", "WCU", "naive WCU", "WCU ratio", "read req", "RCU")
    print("{:>15} {:>10} {:>10} {:>8} {:>10} {:>10} {:>9} {:>6}".format(*header))
    for mix in MIXES:
        r = measure(mix)
        row = (
            mix,
            f"{r['write_requests']:.0f}",
            f"{r['naive_requests']:.0f}",
            f"{r['units']:.0f}",
            f"{r['naive_units']:.0f}",
            f"{r['units'] / r['naive_units']:.2f}x",
            f"{r['read_requests']:.0f}",
            f"{r['read_units']:.0f}",
        )
        print("{:>15} {:>10} {:>10} {:>8} {:>10} {:>10} {:>9} {:>6}".format(*row))
    print(
        "WCU: 1 per started KB of item written; RCU: 1 per item read, strongly consistent (naive reads none)."
    )
    print(
        "Naive: one profile write per event (sized as our profile items) plus one history put per track/page;"
    )
    print("its counts are not exact under redelivery. On-demand, a write unit costs 5x a read unit.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
