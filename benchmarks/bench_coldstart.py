"""Cold start: import and init of each handler module, against `import boto3` alone, in the same run.

Each sample is a fresh interpreter. A handler sample loads the function's module as Lambda does: the
module named by the template's Handler, from the function's CodeUri (the working directory and first on
sys.path), with the layer's ContentUri next on sys.path and the template's environment set (resolved
with placeholder resource names; no AWS call). The figure is the wall time of that import (module code,
Logger/Metrics/resolver set-up, every model built at import), timed inside the child: interpreter
start-up, the same on both sides, is left out. The baseline is `import boto3` in a fresh interpreter with
the same environment. Target (issue #6): each handler <= 1.5x the baseline.

Also measured, to explain the figures: the floor of this stack's design (boto3, one pydantic model,
Powertools' Logger, Metrics and the utility the handler is built on), and the first invocation's extra
init: the boto3 clients its path creates (the store creates them lazily; the emitter also its requests
session), against `import boto3` + the same. Wall time is the figure; CPU (process) time is printed next
to it because it is what a shared machine's noise spares. Every kind of sample is interleaved, round
after round, in a rotating order. Bytecode caches are warm (one untimed run of each first). The children
fail if anything imports the X-Ray SDK.

Run: make bench   (or .venv/bin/python benchmarks/bench_coldstart.py [--repeat N] [--python PATH]
                   [--importtime N] [--instructions])
--python runs the children under another interpreter, whose environment needs the layer's requirements
and boto3 (e.g. a python3.13 venv); --importtime N profiles each handler's imports (N runs each);
--instructions also counts each import's instructions under valgrind (deterministic, slow).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge_dev.template import TEMPLATE_PATH, LocalResources, load_template

TARGET_RATIO = 1.5
ROOT = TEMPLATE_PATH.parent
FUNCTIONS = ("IngestFunction", "ProcessorFunction", "EmitterFunction")
# What each function's first invocation builds before its first call out (the store creates its boto3
# clients lazily; the emitter its requests session): the same on the baseline's side.
FIRST_INVOCATION = {
    "IngestFunction": ("dynamodb", "sqs"),  # key lookup, queue (s3 only when events are rejected)
    "ProcessorFunction": ("dynamodb", "s3"),  # mapping and profiles, raw archive
    "EmitterFunction": ("dynamodb", "secretsmanager", "requests"),  # destination, write key, Segment
}

# Times `setup` (the imports) and then `first` (the first invocation's builds) in a fresh interpreter:
# wall and process (CPU) time of each.
CHILD = """
import sys, time
setup, first = sys.argv[1:3]
sys.path[:0] = sys.argv[3:]
start, start_cpu = time.perf_counter(), time.process_time()
exec(setup)
imported, imported_cpu = time.perf_counter(), time.process_time()
exec(first)
done, done_cpu = time.perf_counter(), time.process_time()
print(imported - start, done - start, imported_cpu - start_cpu, done_cpu - start_cpu)
print("aws_xray_sdk" in sys.modules)
"""
BOTO3 = "import boto3"
# The least a handler of this stack's design imports: boto3, Powertools' Logger and Metrics and the
# utility the handler's shape is built on, and pydantic with one model. Powertools comes first, as in the
# handlers (isort's order): its batch utility builds its parser's pydantic models if pydantic is loaded.
FLOOR = """
import boto3
from aws_lambda_powertools import Logger, Metrics
import {utility}
from pydantic import BaseModel
class Model(BaseModel):
    name: str
Logger(), Metrics()
"""
UTILITIES = {
    "IngestFunction": "aws_lambda_powertools.event_handler",
    "ProcessorFunction": "aws_lambda_powertools.utilities.batch",
    "EmitterFunction": "aws_lambda_powertools.utilities.data_classes",
}


@dataclass(frozen=True)
class Target:
    name: str
    setup: str
    cwd: Path = ROOT
    paths: tuple[str, ...] = ()


def lambda_environment(template: dict[str, Any], function: str) -> dict[str, str]:
    """The template's function environment with placeholder names, plus what Lambda itself sets."""
    resources = template["Resources"]
    by_type: dict[str, list[str]] = defaultdict(list)
    for logical_id, resource in resources.items():
        by_type[resource["Type"]].append(logical_id)
    queues = by_type["AWS::SQS::Queue"]
    local = LocalResources(
        tables={name: name for name in by_type["AWS::DynamoDB::Table"]},
        queue_urls={name: f"https://sqs.us-east-1.amazonaws.com/123456789012/{name}" for name in queues},
        queue_arns={name: f"arn:aws:sqs:us-east-1:123456789012:{name}" for name in queues},
        buckets={name: "segment-bridge-archive" for name in by_type["AWS::S3::Bucket"]},
        template=template,
    )
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        **local.environment(),
    }


def handler(template: dict[str, Any], function: str) -> Target:
    """The function's handler module, loaded as Lambda loads it (CodeUri, then the layer, on sys.path)."""
    resources = template["Resources"]
    properties = {**template.get("Globals", {}).get("Function", {}), **resources[function]["Properties"]}
    module, _, attribute = str(properties["Handler"]).rpartition(".")
    code = ROOT / properties["CodeUri"]
    layer = ROOT / resources["BridgeLayer"]["Properties"]["ContentUri"]
    setup = f"import {module}\nassert callable({module}.{attribute})"
    return Target(function, setup, cwd=code, paths=(str(code), str(layer)))


def first_invocation(function: str) -> str:
    code = ["import boto3"]
    for name in FIRST_INVOCATION[function]:
        code.append(
            "import requests; requests.Session()" if name == "requests" else f"boto3.client({name!r})"
        )
    return "\n".join(code)


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float


def run(python: str, target: Target, env: dict[str, str], first: str = "") -> Sample:
    """Milliseconds of one fresh interpreter: its imports, or with `first`, its imports and `first`."""
    out = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [python, "-c", CHILD, target.setup, first, *target.paths],
        cwd=target.cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{target.name} failed:\n{out.stderr}")
    times, xray = out.stdout.splitlines()
    if xray != "False":
        raise RuntimeError(f"{target.name} imported the X-Ray SDK")
    wall, wall_first, cpu, cpu_first = (float(value) * 1e3 for value in times.split())
    return Sample(wall_first, cpu_first) if first else Sample(wall, cpu)


def measure(python: str, repeat: int) -> dict[str, Sample]:
    """Median wall and CPU ms of each kind of sample, interleaved round after round."""
    template = load_template()
    env = {name: lambda_environment(template, name) for name in FUNCTIONS}
    boto3 = Target("boto3", BOTO3)
    # (label, target, environment, first invocation's code)
    plan = [("boto3", boto3, env[FUNCTIONS[0]], "")]
    for name in FUNCTIONS:
        floor = Target(f"floor {name}", FLOOR.format(utility=UTILITIES[name]))
        first = first_invocation(name)
        plan += [
            (f"floor {name}", floor, env[name], ""),
            (name, handler(template, name), env[name], ""),
            (f"boto3 first {name}", boto3, env[name], first),
            (f"{name} first", handler(template, name), env[name], first),
        ]
    for _, target, environment, first in plan:  # warm the bytecode caches
        run(python, target, environment, first)
    samples: dict[str, list[Sample]] = defaultdict(list)
    for round_ in range(repeat):
        shift = round_ % len(plan)
        for label, target, environment, first in plan[shift:] + plan[:shift]:
            samples[label].append(run(python, target, environment, first))
    return {
        label: Sample(statistics.median(s.wall for s in values), statistics.median(s.cpu for s in values))
        for label, values in samples.items()
    }


def report(python: str, repeat: int, median: dict[str, Sample]) -> None:
    version = subprocess.run(  # noqa: S603
        [python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"cold start: import + init of each handler module, Python {version}, median of {repeat} fresh")
    print(
        "interpreters each; wall ms (the figure) and CPU ms (process time: what the machine's noise spares)"
    )
    print(
        f"{'':>18} {'wall: boto3':>11} {'floor':>6} {'handler':>8} {'ratio':>6}"
        f" {'cpu: boto3':>11} {'floor':>6} {'handler':>8} {'ratio':>6}"
        f"  verdict (wall ratio <= {TARGET_RATIO}x)"
    )
    for name in FUNCTIONS:
        base, floor, ours = median["boto3"], median[f"floor {name}"], median[name]
        print(
            f"{name:>18} {base.wall:>11.1f} {floor.wall:>6.1f} {ours.wall:>8.1f}"
            f" {ours.wall / base.wall:>5.2f}x"
            f" {base.cpu:>11.1f} {floor.cpu:>6.1f} {ours.cpu:>8.1f} {ours.cpu / base.cpu:>5.2f}x"
            f"  {verdict(ours.wall / base.wall)}"
        )
    print("floor = import boto3, pydantic (one model), Powertools' Logger and Metrics and the handler's")
    print("Powertools utility (event_handler, batch, data_classes); no child imported the X-Ray SDK")
    print()
    print("with what the first invocation builds (baseline: import boto3 + the same builds)")
    print(f"{'':>18} {'builds':>34} {'wall: boto3+':>12} {'ours':>6} {'ratio':>6} {'cpu ratio':>10}")
    for name in FUNCTIONS:
        base, ours = median[f"boto3 first {name}"], median[f"{name} first"]
        builds = ", ".join(FIRST_INVOCATION[name])
        print(
            f"{name:>18} {builds:>34} {base.wall:>12.1f} {ours.wall:>6.1f} {ours.wall / base.wall:>5.2f}x"
            f" {ours.cpu / base.cpu:>9.2f}x"
        )


def verdict(ratio: float) -> str:
    if ratio <= TARGET_RATIO:
        return "ok"
    return f"missed by {ratio - TARGET_RATIO:.2f}x ({(ratio / TARGET_RATIO - 1) * 100:.0f}% over)"


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def group(module: str) -> str:
    """Where a module's time is counted: our modules and Powertools' by subpackage, others by package."""
    parts = module.split(".")
    if parts[0] in ("segment_bridge", "aws_lambda_powertools"):
        return ".".join(parts[:3] if parts[1:2] == ["utilities"] else parts[:2])
    return parts[0]


def self_times(python: str, target: Target, env: dict[str, str]) -> dict[str, int]:
    """Microseconds of each module's own import (children excluded), from `python -X importtime`."""
    out = subprocess.run(  # noqa: S603
        [python, "-X", "importtime", "-c", CHILD, target.setup, "", *target.paths],
        cwd=target.cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return {m[4]: int(m[1]) for m in map(_IMPORTTIME.match, out.stderr.splitlines()) if m}


def profile(python: str, runs: int, top: int = 14) -> None:
    """Median self time per package of the modules a handler imports beyond `import boto3`'s."""
    template = load_template()
    print(f"where the import time goes beyond `import boto3` (-X importtime, median of {runs} runs, ms)")
    for name in FUNCTIONS:
        env = lambda_environment(template, name)
        baseline = set(self_times(python, Target("boto3", BOTO3), env))
        grouped: dict[str, list[float]] = defaultdict(list)
        for _ in range(runs):
            sums: dict[str, float] = defaultdict(float)
            for module, micros in self_times(python, handler(template, name), env).items():
                if module not in baseline:
                    sums[group(module)] += micros / 1e3
            for key, value in sums.items():
                grouped[key].append(value)
        medians = {key: statistics.median(values) for key, values in grouped.items()}
        ranked = sorted(medians.items(), key=lambda item: -item[1])
        print(f"{name}: {sum(medians.values()):.1f} ms in modules `import boto3` does not load")
        for key, value in ranked[:top]:
            print(f"  {value:7.1f}  {key}")


def instructions(python: str, target: Target, env: dict[str, str]) -> int:
    """Instructions one fresh interpreter runs (valgrind's callgrind): the same on every run, whatever the
    machine's load, so it shows small differences that wall time hides."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind")
    callgrind = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    out = subprocess.run(  # noqa: S603
        [*callgrind, python, "-c", CHILD, target.setup, "", *target.paths],
        cwd=target.cwd,
        env={**env, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    collected = re.search(r"Collected : (\d+)", out.stderr)
    if collected is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{out.stderr[-2000:]}")
    return int(collected[1])


def count_instructions(python: str) -> None:
    """Millions of instructions of each import beyond an empty child's, and their ratio to boto3's."""
    template = load_template()
    env = lambda_environment(template, FUNCTIONS[0])
    empty = instructions(python, Target("empty", "pass"), env)
    base = instructions(python, Target("boto3", BOTO3), env) - empty
    print("instructions (valgrind callgrind, deterministic), beyond an empty interpreter's")
    print(f"{'':>18} {'boto3 M':>8} {'floor M':>8} {'ratio':>6} {'handler M':>10} {'ratio':>6}")
    for name in FUNCTIONS:
        env = lambda_environment(template, name)
        floor = instructions(python, Target("floor", FLOOR.format(utility=UTILITIES[name])), env) - empty
        ours = instructions(python, handler(template, name), env) - empty
        print(
            f"{name:>18} {base / 1e6:>8.0f} {floor / 1e6:>8.0f} {floor / base:>5.2f}x"
            f" {ours / 1e6:>10.0f} {ours / base:>5.2f}x"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter of the children (its venv needs the layer's deps)",
    )
    parser.add_argument(
        "--importtime", type=int, default=0, metavar="N", help="also profile with -X importtime, N runs each"
    )
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions (needs valgrind; slow)"
    )
    args = parser.parse_args()
    report(args.python, args.repeat, measure(args.python, args.repeat))
    if args.instructions:
        print()
        count_instructions(args.python)
    if args.importtime:
        print()
        profile(args.python, args.importtime)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
