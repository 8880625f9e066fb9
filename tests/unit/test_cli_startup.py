"""The operator CLI starts light and fails fast: no local-stack emulator in its process, and a local stack
that is not running is said at once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

EMULATOR_MODULES = ("bridge_dev.local", "bridge_dev.apigw", "bridge_dev.pollers", "moto", "werkzeug")


def _nothing_listening() -> str:
    """An endpoint on 127.0.0.1 with nothing listening (a port the system just handed out, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _cli_environment() -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENT_BRIDGE_")}
    environment.pop("AWS_ENDPOINT_URL", None)
    return environment


def test_the_cli_imports_no_local_stack_emulator_even_when_a_command_runs():
    script = (
        "import contextlib, io, json, sys\n"
        "from bridge_dev.cli import main\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n"
        f"    main(['--endpoint', {_nothing_listening()!r}, 'workspaces', 'list', '--json'])\n"
        f"names = {EMULATOR_MODULES!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in names or m in names)))\n"
    )
    done = subprocess.run(  # noqa: S603 - our test venv's interpreter
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=_cli_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_a_local_stack_that_is_not_running_is_reported_as_no_stack():
    console_script = Path(sys.executable).parent / "segment-bridge"
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 - our own console script
        [str(console_script), "--endpoint", _nothing_listening(), "workspaces", "list", "--json"],
        cwd=ROOT,
        env=_cli_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(f"segment-bridge workspaces list without a stack answered in {time.monotonic() - started:.2f} s")

    assert done.returncode == 1
    assert done.stdout == ""
    error = json.loads(done.stderr)
    assert set(error) == {"code", "message"}
    assert error["code"] == "no_stack"
    assert "make dev" in error["message"]
