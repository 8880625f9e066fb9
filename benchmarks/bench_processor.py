"""DynamoDB writes of the processor per 1,000 events, next to the naive one-write-per-event design.

Ours: per queue message, one BatchGetItem for every entity touched and one for which history items
already exist, then per entity one conditional PutItem (profile + exact counts + a write-ahead list of
pending history) and BatchWriteItem calls for the new history and memberships. Naive: every event
updates its profile (one write sized like the profile) and every track/page also puts its history item;
no exact counts.

Units follow DynamoDB's pricing rules, for the table and every secondary index an item is in (see
common.AwsMeter): 1 write unit per started KB of item, 1 read unit per item read strongly consistently.
Item sizes are computed from the items actually written.

Run: make bench   (or .venv/bin/python benchmarks/bench_processor.py)
"""

from __future__ import annotations

import os
import random

from common import BATCH, DYNAMODB_READS, EVENTS, MIXES, AwsMeter, item_units, mix_batches, use_fake_aws


def measure(mix: str) -> dict[str, float]:
    from moto import mock_aws

    from bridge_dev.template import create_resources, load_template
    from segment_bridge.mapping import Mapping
    from segment_bridge.processor.unit import apply_batch
    from segment_bridge.settings import get_settings
    from segment_bridge.store import get_store

    with mock_aws():
        os.environ.update(create_resources().environment())
        meter = AwsMeter(load_template())
        meter.install()
        get_settings.cache_clear()
        get_store.cache_clear()
        store = get_store()
        store.create_workspace("bench", workspace_id="ws_bench")  # with its index of deleted ids, as deployed
        meter.recording = True
        batches = mix_batches(mix, random.Random(mix))
        for batch in batches:
            apply_batch("ws_bench", batch, Mapping(), store)
        meter.recording = False
        events = [event for batch in batches for event in batch]

        def profile_units(entity: str) -> int:
            item = meter.stored_item(
                "ProfilesTable", {"pk": {"S": f"WS#ws_bench#{entity}"}, "sk": {"S": "PROFILE"}}
            )
            return item_units(item) if item else 1

        # Naive: each event rewrites its profile (sized as ours) and each track/page puts its history item
        # (1 WCU: the same EventsTable, which has no secondary index).
        naive_units = 0
        for event in events:
            naive_units += profile_units(f"U#{event['userId']}")
            if event["type"] in ("track", "page"):
                naive_units += 1
            if event["type"] == "group":
                naive_units += profile_units(f"G#{event['groupId']}")
        naive_requests = sum(2 if e["type"] in ("track", "page", "group") else 1 for e in events)
        calls = [(op, n) for (_, op), n in meter.requests.items()]
        units = [(op, n) for (service, op, _), n in meter.units.items() if service == "dynamodb"]
        per = 1000 / len(events)
        return {
            "write_requests": sum(n for op, n in calls if op not in DYNAMODB_READS) * per,
            "read_requests": sum(n for op, n in calls if op in DYNAMODB_READS) * per,
            "read_units": sum(n for op, n in units if op in DYNAMODB_READS) * per,
            "units": sum(n for op, n in units if op not in DYNAMODB_READS) * per,
            "naive_requests": naive_requests * per,
            "naive_units": naive_units * per,
        }


def main() -> int:
    use_fake_aws()
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
    print("WCU: 1 per started KB of item written, for the table and each index it is in; RCU: 1 per item")
    print("read, strongly consistent (naive reads none). Naive: one profile write per event (sized as our")
    print("profile items) plus one history put per track/page, in the same tables;")
    print("its counts are not exact under redelivery. On-demand, a write unit costs 5x a read unit.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
