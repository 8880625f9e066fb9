"""The read API's latency on the local stack, against the CLI's old reassembly in the same run.

One user with 10 linked anonymous ids and 1,000 history items (500 its own, 50 under each linked id) is
applied through the processor's use case onto the local stack's embedded AWS. Then, N times each:
  - the read API over HTTP (the local API Gateway -> ReaderFunction -> moto), per route: traits,
    external_ids, metadata (counts with linked: 11 profiles) and events (the newest 10 of all 1,000);
  - the Python client (read/client.py) over the same tables, in-process (the read model, no HTTP);
  - the baseline: what `users show` + `events list` did before the read model (bridge_dev/cli/profiles.py
    at f71d171, its logic kept below): one profile read per linked id, every history item read whole and
    sorted, per call.
Figures are milliseconds, p50 / p99 / max. Target: the HTTP read API's p99 <= 50 ms on every route.
moto in server mode serialises each AWS call in one process: the figures are an upper bound of what
in-region DynamoDB (single-digit ms per call) gives.

Run: .venv/bin/python benchmarks/bench_read.py [--requests N]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import math
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import requests

from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from bridge_dev.local import start
from segment_bridge.identity import MergeProtection
from segment_bridge.keys import new_read_token
from segment_bridge.mapping import Mapping
from segment_bridge.processor.unit import apply_batch
from segment_bridge.read.client import ProfileClient
from segment_bridge.store import Store, get_store

TARGET_P99_MS = 50.0
USER = "bench-user"
LINKED = 10
HISTORY = 1000


def seed(store: Store) -> None:
    """The user, its 10 linked ids (identify with both) and 1,000 history items, applied as the processor
    applies events (in messages of 250)."""
    mapping = store.set_mapping(WS, Mapping(merge_protection=MergeProtection(max_anonymous_ids=LINKED)))
    at = "2026-01-01T00:00:00.000Z"
    events: list[dict[str, Any]] = [
        {
            "type": "identify",
            "messageId": f"id-{n}",
            "userId": USER,
            "anonymousId": f"anon-{n}",
            "timestamp": at,
            "receivedAt": at,
            "traits": {"email": f"bench-{n}@example.com", "plan": "pro", "seats": n, "language": "en"},
        }
        for n in range(LINKED)
    ]
    for n in range(HISTORY):
        when = f"2026-01-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00.000Z"
        owner = {"userId": USER} if n % 2 == 0 else {"anonymousId": f"anon-{(n // 2) % LINKED}"}
        events.append(
            {
                "type": "track",
                "messageId": f"ev-{n}",
                **owner,
                "event": f"Event {n % 7}",
                "properties": {"n": n, "path": f"/page/{n}"},
                "timestamp": when,
                "receivedAt": when,
            }
        )
    for start_at in range(0, len(events), 250):
        apply_batch(WS, events[start_at : start_at + 250], mapping, store)


def old_reassembly(store: Store) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`users show` and `events list --limit 10` as the CLI did them before the read model (f71d171)."""
    store.get_workspace(WS)
    profile = store.read_profile(WS, "U", USER)
    assert profile is not None
    combined = dict(profile.counts)
    linked: dict[str, Any] = {}
    for linked_id in store.linked_ids(WS, USER):
        before = store.read_profile(WS, "A", linked_id) or store.read_profile(WS, "U", linked_id)
        linked[linked_id] = {"counts": before.counts if before else {}}
        for name, count in (before.counts if before else {}).items():
            combined[name] = combined.get(name, 0) + count
    history = []
    for kind, each in [("U", USER)] + [("A", x) for x in store.linked_ids(WS, USER)]:
        history += [{"id": each, **record} for record in store.read_history(WS, kind, each)]
    history.sort(key=lambda event: (event["timestamp"], event["sk"]))
    return {"counts_with_linked": combined, "linked": linked}, history[-10:]


def timed(call: Callable[[], Any], n: int) -> list[float]:
    """Milliseconds per call; a call that fails (moto past the store's 5 s read timeout: a 503) counts
    as infinitely slow, so it lands in the p99 and max, never silently out of them."""
    with contextlib.suppress(Exception):
        call()  # warm: connections, caches
    out = []
    for _ in range(n):
        began = time.perf_counter()
        try:
            call()
        except Exception:
            out.append(math.inf)
            continue
        out.append((time.perf_counter() - began) * 1000)
    return out


def figures(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    failed = sum(1 for sample in ordered if sample == math.inf)
    return f"p50 {statistics.median(ordered):7.1f}  p99 {p99:7.1f}  max {ordered[-1]:7.1f}" + (
        f"  ({failed} failed)" if failed else ""
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per route (default 200)")
    args = parser.parse_args()

    with start() as stack:
        store = get_store()
        seed(store)
        token = store.issue_read_token(WS, new_read_token()).api_key
        session = requests.Session()  # connection pooling, as Segment advises for its Profile API
        session.headers["Authorization"] = "Basic " + base64.b64encode(f"{token}:".encode()).decode()
        base = f"{stack.api_url}/v1/spaces/{WS}/collections/users/profiles/user_id:{USER}"
        client = ProfileClient(
            profiles_table=store.settings.profiles_table,
            events_table=store.settings.events_table,
            workspaces_table=store.settings.workspaces_table,
        )

        answer = session.get(f"{base}/metadata", timeout=10).json()["metadata"]
        assert sum(answer["counts_with_linked"].values()) == HISTORY, answer
        events = session.get(f"{base}/events", timeout=10).json()["data"]
        assert len(events) == 10

        print(
            f"read API, local stack: {LINKED} linked ids, {HISTORY} history items, {args.requests} each (ms);"
            f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )

        def get(url: str, params: dict[str, str]) -> None:
            session.get(url, params=params, timeout=30).raise_for_status()

        worst = 0.0
        for route, params in [
            ("traits", {}),
            ("external_ids", {}),
            ("metadata", {}),
            ("events", {"limit": "10"}),
        ]:
            samples = timed(partial(get, f"{base}/{route}", params), args.requests)
            worst = max(worst, sorted(samples)[min(len(samples) - 1, int(len(samples) * 0.99))])
            print(f"  HTTP   {route:<13} {figures(samples)}")
        for route in ("metadata", "events"):
            samples = timed(partial(client.get, WS, "users", f"user_id:{USER}", route), args.requests)
            print(f"  client {route:<13} {figures(samples)}")
        baseline = timed(lambda: old_reassembly(store), max(20, args.requests // 5))
        print(f"  baseline: the CLI's old users show + events list {figures(baseline)}")
        verdict = "meets" if worst <= TARGET_P99_MS else "MISSES"
        print(f"HTTP read API worst p99 {worst:.1f} ms: {verdict} the target of {TARGET_P99_MS:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
