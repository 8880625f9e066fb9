"""Events per Segment request and bytes per request, against Segment's limits, for a realistic outbox.

The baseline is one request per event (what a naive emitter, or Segment's single-call /v1/track, does).
Ours packs a stream batch (the template's BatchSize) into /v1/batch requests within Segment's limits as
its SDKs keep them (475,000 bytes for the whole body, writeKey included, and 2,500 events per request;
32 KB per event) and gzips them.

Run: make bench   (or .venv/bin/python benchmarks/bench_emitter.py)
"""

from __future__ import annotations

import gzip
import random
import statistics
from datetime import UTC, datetime

from bridge_dev.template import load_template
from segment_bridge.outbound.track import (
    MAX_REQUEST_BYTES,
    MAX_REQUEST_EVENTS,
    request_body,
    requests_for,
    track_call,
)

from common import outbox_items

SIZES = {"small (~0.3 KB)": 40, "typical (~1 KB)": 700, "large (~8 KB)": 8000}


def main() -> int:
    batch_size = load_template()["Resources"]["EmitterFunction"]["Properties"]["Events"]["Outbox"][
        "Properties"
    ]["BatchSize"]
    print(
        f"outbound packing of a stream batch of {batch_size} records (and of 10 batches' worth, 1,000 events)"
    )
    print(
        f"{'events':>22} {'n':>5} {'requests':>9} {'baseline':>9} {'ev/req':>7} {'KB/req raw':>11} "
        f"{'KB/req gzip':>12} {'limit KB':>9} {'max ev':>7}"
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for label, blob in SIZES.items():
        for count in (batch_size, 1000):
            rng = random.Random(f"{label}{count}")
            events = [
                track_call(
                    item,
                    table="OutboxTable",
                    keys={"pk": item["pk"], "sk": item["sk"]},
                    record_id=str(item["sk"]),
                    created_at=0.0,
                )
                for item in outbox_items(count, blob, rng)
            ]
            key = "k" * 32  # a Segment write key's length
            requests = requests_for(events, key)
            raw = [len(request_body(r, now, key)) for r in requests]
            zipped = [len(gzip.compress(request_body(r, now, key), compresslevel=6)) for r in requests]
            assert all(size <= MAX_REQUEST_BYTES for size in raw)
            assert all(len(r) <= MAX_REQUEST_EVENTS for r in requests)
            print(
                f"{label:>22} {count:>5} {len(requests):>9} {count:>9} {count / len(requests):>7.0f} "
                f"{statistics.mean(raw) / 1024:>11.1f} {statistics.mean(zipped) / 1024:>12.1f} "
                f"{MAX_REQUEST_BYTES // 1024:>9} {MAX_REQUEST_EVENTS:>7}"
            )
    print("every request is within 475,000 bytes and 2,500 events; baseline = one request per event")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
