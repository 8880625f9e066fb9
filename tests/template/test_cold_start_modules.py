"""What each handler loads at cold start: imported in a fresh interpreter as Lambda imports it (its
CodeUri first on sys.path, then the layer), our modules it loaded must stay within the set below. A
module added here makes every cold start of that function pay for it: benchmarks/bench_coldstart.py
measures what it costs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bridge_dev.runtime import function_properties
from bridge_dev.template import load_template
from tests.conftest import ROOT

SHARED = {
    "segment_bridge",
    "segment_bridge.cache",
    "segment_bridge.concurrency",  # the store's batch calls in flight together
    "segment_bridge.errors",
    "segment_bridge.limits",
    "segment_bridge.settings",
    "segment_bridge.stats",  # the per-workspace daily counters every function adds to
    "segment_bridge.store",
    "segment_bridge.store.aws",
    "segment_bridge.store.queues",
}
LOADED = {
    "IngestFunction": SHARED
    | {
        "segment_bridge.ingest",
        "segment_bridge.keys",  # key hashing
        "segment_bridge.ingest.auth",
        "segment_bridge.ingest.body",
        "segment_bridge.ingest.delivery",
        "segment_bridge.ingest.intake",
        "segment_bridge.ingest.judging",
        "segment_bridge.envelope",
        "segment_bridge.ingest.spec",
        "segment_bridge.timestamps",
    },
    "ProcessorFunction": SHARED
    | {
        "segment_bridge.processor",
        "segment_bridge.processor.entities",
        "segment_bridge.processor.message",
        "segment_bridge.processor.ports",
        "segment_bridge.processor.mappings",
        "segment_bridge.processor.results",
        "segment_bridge.processor.unit",
        "segment_bridge.privacy",
        "segment_bridge.privacy.deletion",  # not privacy.purge: the PurgeFunction's alone
        "segment_bridge.privacy.hooks",
        "segment_bridge.privacy.ports",
        "segment_bridge.privacy.receipts",  # a message's privacy requests and their receipts (two hooks)
        "segment_bridge.receipts",
        "segment_bridge.deleted_ids",
        "segment_bridge.planning",
        "segment_bridge.profiles",
        "segment_bridge.retry",
        "segment_bridge.tombstones",
        "segment_bridge.mapping",
        "segment_bridge.identity",  # merge protection, in the mapping
        "segment_bridge.envelope",
        "segment_bridge.timestamps",
    },
    "EmitterFunction": SHARED
    | {
        "segment_bridge.destinations",
        "segment_bridge.outbound",
        "segment_bridge.outbound.changes",
        "segment_bridge.outbound.delivery",
        "segment_bridge.outbound.egress",
        "segment_bridge.outbound.pacing",
        "segment_bridge.outbound.retries",
        "segment_bridge.outbound.sending",
        "segment_bridge.outbound.track",
        "segment_bridge.mapping",
        "segment_bridge.identity",
        "segment_bridge.values",
    },
    "ReaderFunction": SHARED
    | {
        "segment_bridge.read",
        "segment_bridge.keys",  # read tokens' hashing
        "segment_bridge.read.api",
        "segment_bridge.read.auth",
        "segment_bridge.read.client",
        "segment_bridge.read.model",
        "segment_bridge.read.paging",
        "segment_bridge.store.reading",
        "segment_bridge.store.profiles",  # how a stored profile item reads (store/reading.py uses it)
        "segment_bridge.store.history",  # ... and what store/profiles.py is made of
        "segment_bridge.store.items",
        "segment_bridge.store.links",
        "segment_bridge.store.tombstones",
        "segment_bridge.tombstones",
        "segment_bridge.planning",
        "segment_bridge.profiles",
        "segment_bridge.deleted_ids",
        "segment_bridge.mapping",
        "segment_bridge.identity",
        "segment_bridge.timestamps",
        "segment_bridge.values",
    },
}
"""No function loads another's use case, the profiles' repository (built on first use), or dev tooling."""
USE_CASE = {
    "IngestFunction": "segment_bridge.ingest.intake",
    "ProcessorFunction": "segment_bridge.processor.unit",
    "EmitterFunction": "segment_bridge.outbound.delivery",
    "ReaderFunction": "segment_bridge.read.model",
}

PROBE = (
    "import importlib, json, sys\n"
    "module, attribute = sys.argv[1].rsplit('.', 1)\n"
    "getattr(importlib.import_module(module), attribute)\n"
    "ours = ('segment_bridge', 'bridge_dev')\n"
    "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ours)))\n"
)


@pytest.mark.parametrize("function", sorted(LOADED))
def test_each_handler_loads_only_its_own_modules_at_cold_start(function):
    properties = function_properties(load_template(), function)
    code = ROOT / str(properties["CodeUri"])
    environment = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
    environment["PYTHONPATH"] = os.pathsep.join([str(code), str(ROOT / "layers" / "bridge")])
    done = subprocess.run(  # noqa: S603 - our test venv's interpreter
        [sys.executable, "-c", PROBE, str(properties["Handler"])],
        cwd=code,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = set(json.loads(done.stdout))
    assert USE_CASE[function] in loaded
    assert loaded <= LOADED[function], f"{function} now also loads {sorted(loaded - LOADED[function])}"
