"""The CLI as a new operator meets it: one-line usage errors, `invoke` without an event, `tail` of an
unknown workspace, `mapping show`'s order, and values from outside printed safely for a terminal (issues
20 and 21). On moto, through bridge_dev.cli.main as the console script calls it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest

from bridge_dev.cli import stats as stats_module
from bridge_dev.events import DEMO_API_KEY, http_event
from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from tests.conftest import ROOT
from tests.functional.conftest import event
from tests.functional.helpers import process_the_queue

OSC_52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07"
"""A terminal's clipboard write (OSC 52), as an event name a browser source could send."""
REWRITE = "mallory\x1b[2K\radmin-accepted"
"""Erase the line, back to its start, write something else: a userId that forges its own tail line."""


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("publish", WS, "--user", "u"), "--event"),
        (("replay", WS, "--since", "nope"), "nope"),
        (("users", "show", WS), "USER_ID"),
        (("stats", WS, "--days", "0"), "--days"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_option(sb, args, option):
    run = sb(*args, json_flag=False)
    assert run.status == 2
    assert run.out == ""
    (line,) = run.err.splitlines()
    assert line.startswith("error: ")
    assert option in line


def test_invoke_without_an_event_says_dash_e_is_required(sb):
    run = sb("invoke", "IngestFunction", json_flag=False)
    assert run.status == 2
    (line,) = run.err.splitlines()
    assert "'-e'" in line
    assert "Missing option" in line
    assert sb("invoke", "IngestFunction").error["code"] == "usage"


def test_tail_of_an_unknown_workspace_fails_before_watching(sb):
    run = sb("tail", "ws_nope", "--seconds", "0.2", json_flag=False)
    assert run.status == 1
    assert run.err.splitlines() == ["error: No workspace ws_nope."]


def test_mapping_show_prints_event_types_in_the_specs_order_in_every_process(aws, workspaces):
    """Sets of strings iterate in an order of each process's hash seed: two processes, two seeds."""
    script = (
        "from bridge_dev.cli.mapping import mapping_data; from segment_bridge.mapping import Mapping; "
        "import json; print(json.dumps(mapping_data(Mapping(exclude_events=['b', 'a', 'c']))))"
    )
    shown = [
        json.loads(
            subprocess.run(  # noqa: S603
                [sys.executable, "-c", script],
                cwd=ROOT,
                env={"PYTHONHASHSEED": seed, "PATH": ""},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for seed in ("1", "2")
    ]
    assert shown[0] == shown[1]
    assert shown[0]["event_types"] == ["identify", "track", "page", "screen", "group", "alias", "delete"]
    assert shown[0]["exclude_events"] == ["a", "b", "c"]


def test_events_list_escapes_an_osc_52_clipboard_write_in_an_event_name(sb, processor):
    processor([event("track", "m-osc", "2026-01-01T10:00:00.000Z", event=OSC_52)])

    table = sb("events", "list", WS, "user-1", json_flag=False)
    assert table.status == 0
    assert "\x1b" not in table.out
    assert "\x07" not in table.out
    assert "\\x1b]52;c;ZWNobyBwd25lZA==\\x07" in table.out
    (history,) = sb("events", "list", WS, "user-1").json  # --json: the value as it is
    assert history["name"] == OSC_52


def test_tail_escapes_a_line_rewrite_in_a_user_id(sb, aws, ingest, monkeypatch):
    body = json.dumps([{"type": "track", "userId": REWRITE, "event": "Signed Up", "messageId": "m-rw"}])
    sent: list[Any] = []

    def sleep_then_deliver(seconds: float) -> None:
        """tail's pause between polls: the first one is when the event arrives and is processed."""
        if not sent:
            delivery = http_event("/v1/segment", body, headers={"authorization": f"Bearer {DEMO_API_KEY}"})
            delivery["requestContext"]["timeEpoch"] = int(time.time() * 1000)
            sent.append(ingest(delivery))
            process_the_queue(aws)

    monkeypatch.setattr(
        stats_module, "time", SimpleNamespace(sleep=sleep_then_deliver, monotonic=time.monotonic)
    )
    run = sb("tail", WS, "--seconds", "0.3", json_flag=False)

    assert sent[0].status == 200
    # (the functions' own JSON log lines share the test's stdout)
    lines = [line for line in run.out.splitlines() if not line.startswith("{") and " accepted " in line]
    assert len(lines) == 1
    assert "\x1b" not in run.out
    assert "\r" not in run.out
    assert "mallory\\x1b[2K\\x0dadmin-accepted" in lines[0]
