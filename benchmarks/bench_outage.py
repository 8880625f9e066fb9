"""What a Segment outage leaves for an operator: main's emitter against the working tree's, same run.

One workspace's Segment answers 503 for 1 hour, then (a second scenario) for 6 hours, while two other
workspaces on the same shard stay up; each of the three writes an outbox item every 10 s from the
outage's start until an hour after it ends. Each design runs in simulated time (bridge_dev/outage.py: the
stream's event source with its partial batch responses and 20 retries, the retry queue's delays, the
Segment stand-in) in a subprocess of its own whose sys.path starts with that design's layer, so both see
exactly the same writes and answers. Figures, per design and outage:

- operator: what waits for a person (parked objects + the stream's on-failure records) and how many
  outbox items were not delivered when the run ended (3 h after the outage);
- duplicates: events Segment received more than once (it dedupes them; they cost requests and, on main,
  count twice in `segment-bridge stats`), and how far the `sent` counters are over the truth;
- the healthy workspaces' slowest delivery, the longest invocation (Timeout 60 s), requests made.

Run: .venv/bin/python benchmarks/bench_outage.py [--baseline REV]   (default main)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import REPO, extract_revision

OUTAGES = {"1 h outage": 3600.0, "6 h outage": 6 * 3600.0}
EVERY = 10.0


def worker(root: Path, out: Path) -> None:
    sys.path.insert(0, str(root / "layers" / "bridge"))
    sys.path.insert(0, str(REPO))  # bridge_dev (the simulation) from the working tree
    from bridge_dev.outage import Scenario, simulate

    figures = {}
    for label, seconds in OUTAGES.items():
        scenario = Scenario(
            workspaces=("ws_down", "ws_b", "ws_c"),
            down={"wk-ws_down": (0.0, seconds, 503, {})},
            every=EVERY,
            writing=seconds + 3600.0,
            until=seconds + 3 * 3600.0,
        )
        figures[label] = simulate(scenario)
    out.write_text(json.dumps(figures))


def run_design(root: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-outage-") as scratch:
        out = Path(scratch) / "figures.json"
        command = [sys.executable, __file__, "--worker", str(root), "--out", str(out)]
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # noqa: S603
        if done.returncode:
            raise SystemExit(f"the worker for {root} failed:\n{done.stderr[-4000:]}")
        figures: dict[str, Any] = json.loads(out.read_text())
        return figures


def row(label: str, figures: dict[str, Any]) -> str:
    workspaces = figures["workspaces"].values()
    duplicates = sum(w["sent_more_than_once"] for w in workspaces)
    overcount = sum(w["counted_sent"] - w["delivered"] for w in workspaces)
    healthy = [w["slowest_delivery_s"] or 0 for name, w in figures["workspaces"].items() if name != "ws_down"]
    operator = figures["parked_objects"] + figures["on_failure_records"]
    return (
        f"{label:<28} {figures['written']:>7} {figures['written'] - figures['delivered']:>9} "
        f"{figures['parked_objects']:>7} {figures['on_failure_records']:>10} {operator:>9} "
        f"{duplicates:>6} {overcount:>9} {max(healthy):>10.1f} {figures['longest_invocation_s']:>8.1f} "
        f"{figures['requests']:>9}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default="main", help="git revision of the other design (default main)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.out)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as scratch:
        designs = {
            f"baseline {args.baseline}": run_design(extract_revision(args.baseline, Path(scratch))),
            "working tree": run_design(REPO),
        }
    print("One workspace's Segment answers 503; two others share its shard; 3 items written every 10 s each.")
    print(
        f"{'design / outage':<28} {'written':>7} {'not sent':>9} {'parked':>7} {'on-failure':>10} "
        f"{'operator':>9} {'dupes':>6} {'overcount':>9} {'healthy s':>10} {'longest':>8} {'requests':>9}"
    )
    for outage in OUTAGES:
        for name, figures in designs.items():
            print(row(f"{name} / {outage}", figures[outage]))
    print(
        "not sent: undelivered 3 h after the outage; operator: parked objects + on-failure records (each "
        "needs `dlq redrive`);\ndupes: events Segment received more than once; overcount: `sent` counted "
        "over the events delivered;\nhealthy s: slowest delivery of the two healthy workspaces; longest: "
        "longest invocation (Timeout 60 s)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
