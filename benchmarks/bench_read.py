"""The read API's latency on the local stack, against the design before issue #24's events index in
the same run.

One user with 10 linked anonymous ids and 1,000 history items (500 its own, 50 under each linked id) is
applied through the processor's use case. The embedded AWS (moto's server) runs in a process of its
own, so its CPU is not the measured process's (a fair latency figure: on AWS, DynamoDB's time is not
the function's); `--stock-moto` runs moto as shipped, the default runs it with bridge_dev.fast_query
(moto's Query at a partition's cost, as DynamoDB's; the same answers). Then, N times each:
  - the read API over HTTP (the local API Gateway -> ReaderFunction -> DynamoDB), per route: traits,
    external_ids, links, metadata (counts with linked: 11 profiles) and events (the newest 10 of 1,000);
  - per route, the read model through the Python client (read/client.py), in a subprocess of its own,
    twice: this design, and the baseline (a quarter of the requests, at least 50): --baseline REV
    (default 7638bda, main before the events index: every history key of the user and its linked ids
    queried and sorted per page), extracted with `git archive` and first on that subprocess's
    sys.path, over the same tables and data;
  - the CLI's old reassembly (what `users show` + `events list` did before the read model, f71d171).
Figures are milliseconds, p50 / p99 / max, and the machine's load average (1 minute) before and after.
Target: the HTTP read API's p99 <= 50 ms on every route.

Run: .venv/bin/python benchmarks/bench_read.py [--requests N] [--baseline REV] [--stock-moto]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import socket
import statistics
import subprocess  # nosec B404 - this interpreter, moto's server and git, fixed arguments
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import requests

from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from bridge_dev.local import start
from segment_bridge.identity import MergeProtection
from segment_bridge.keys import new_read_token
from segment_bridge.mapping import Mapping
from segment_bridge.processor.unit import apply_batch
from segment_bridge.store import Store, get_store

from common import REPO, extract_revision

TARGET_P99_MS = 50.0
BASELINE_REV = "7638bda"
"""main before the events index (issue #24's read API as first merged)."""
ROUTES: list[tuple[str, dict[str, str]]] = [
    ("traits", {}),
    ("external_ids", {}),
    ("links", {}),
    ("metadata", {}),
    ("events", {"limit": "10"}),
]
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


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def figures(samples: list[float]) -> str:
    ordered = sorted(samples)
    failed = sum(1 for sample in ordered if sample == math.inf)
    return f"p50 {statistics.median(ordered):7.1f}  p99 {p99(ordered):7.1f}  max {ordered[-1]:7.1f}" + (
        f"  ({failed} failed)" if failed else ""
    )


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


@contextlib.contextmanager
def moto_server(stock: bool) -> Any:
    """moto's server in a process of its own on a free port of 127.0.0.1: its endpoint."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    module = "moto.server" if stock else "bridge_dev.fast_query"
    server = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed module
        [sys.executable, "-m", module, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(requests.RequestException):
                requests.get(f"{endpoint}/moto-api/", timeout=1)
                break
            time.sleep(0.05)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:  # busy werkzeug threads may outlast SIGTERM
            server.kill()
            server.wait(timeout=10)


CLIENT_WORKER = """
import json, math, sys, time
sys.path.insert(0, sys.argv[1])  # the design's layer first: its segment_bridge, not this checkout's
from segment_bridge.read.client import ProfileClient

profiles, events, workspaces = sys.argv[2].split(",")
workspace, user, n, routes = sys.argv[4], sys.argv[5], int(sys.argv[6]), json.loads(sys.argv[7])
client = ProfileClient(
    profiles_table=profiles, events_table=events, workspaces_table=workspaces, endpoint_url=sys.argv[3]
)
out = {}
for route, params in routes:
    call = lambda: client.get(workspace, "users", "user_id:" + user, route, **params)
    call()
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        try:
            call()
        except Exception:
            samples.append(math.inf)
            continue
        samples.append((time.perf_counter() - began) * 1000)
    out[route] = samples
print(json.dumps(out))
"""
"""Per route, the read model through the ProfileClient of the layer named first (its segment_bridge
imported before anything else: the design measured), timed as `timed` does: JSON {route: samples}."""


def clients(layer: Path, tables: list[str], endpoint: str, n: int) -> dict[str, list[float]]:
    done = subprocess.run(  # noqa: S603 - this interpreter, this script's worker
        [
            sys.executable,
            "-c",
            CLIENT_WORKER,
            str(layer),
            ",".join(tables),
            endpoint,
            WS,
            USER,
            str(n),
            json.dumps(ROUTES),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the client worker for {layer} failed:\n{done.stderr[-4000:]}")
    found: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per route (default 200)")
    parser.add_argument("--baseline", default=BASELINE_REV, help=f"the baseline's revision ({BASELINE_REV})")
    parser.add_argument("--stock-moto", action="store_true", help="moto's Query as shipped (O(table))")
    args = parser.parse_args()

    began = load()
    with tempfile.TemporaryDirectory() as scratch, moto_server(args.stock_moto) as endpoint:
        baseline = extract_revision(args.baseline, Path(scratch)) / "layers" / "bridge"
        with start(aws_endpoint=endpoint) as stack:
            store = get_store()
            seed(store)
            token = store.issue_read_token(WS, new_read_token()).api_key
            session = requests.Session()  # connection pooling, as Segment advises for its Profile API
            session.headers["Authorization"] = "Basic " + base64.b64encode(f"{token}:".encode()).decode()
            base = f"{stack.api_url}/v1/spaces/{WS}/collections/users/profiles/user_id:{USER}"
            tables = [
                store.settings.profiles_table,
                store.settings.events_table,
                store.settings.workspaces_table,
            ]

            answer = session.get(f"{base}/metadata", timeout=10).json()["metadata"]
            assert sum(answer["counts_with_linked"].values()) == HISTORY, answer
            events = session.get(f"{base}/events", timeout=10).json()["data"]
            assert len(events) == 10

            def get(url: str, params: dict[str, str]) -> None:
                session.get(url, params=params, timeout=30).raise_for_status()

            http = {
                route: timed(partial(get, f"{base}/{route}", params), args.requests)
                for route, params in ROUTES
            }
            ours = clients(REPO / "layers" / "bridge", tables, endpoint, args.requests)
            # the baseline's events take seconds a page: a quarter of the requests (at least 50)
            theirs = clients(baseline, tables, endpoint, max(50, args.requests // 4))
            old = timed(lambda: old_reassembly(store), max(20, args.requests // 10))
            ended = load()

            moto = "moto as shipped" if args.stock_moto else "moto with bridge_dev.fast_query"
            print(
                f"read API, local stack ({moto}, in its own process): {LINKED} linked ids,"
                f" {HISTORY} history items, {args.requests} requests each (ms);"
                f" load average {began} before, {ended} after, {os.cpu_count()} cores"
            )
            for route, _ in ROUTES:
                print(f"  HTTP                 {route:<13} {figures(http[route])}")
            for route, _ in ROUTES:
                print(f"  client, this design  {route:<13} {figures(ours[route])}")
                print(
                    f"  client, {args.baseline:<12} {route:<13} {figures(theirs[route])}"
                    f"  ({len(theirs[route])} requests)"
                )
            print(f"  the CLI's old users show + events list  {figures(old)}")
            worst = max(p99(samples) for samples in http.values())
            verdict = "meets" if worst <= TARGET_P99_MS else "MISSES"
            print(f"HTTP read API worst p99 {worst:.1f} ms: {verdict} the target of {TARGET_P99_MS:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
