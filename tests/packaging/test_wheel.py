"""The package as a user installs it (`pip install ".[cli]"`): the wheel built from the checkout, installed
with its `cli` extra and every dependency from the package index into a fresh venv, and its
`segment-bridge` run there — `--help`, and a command against a local stack that is not running.

About 30-60 s (pip's cache is reused; nothing is installed --no-deps). It runs in `make test`."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT = 600


def run(*args: str | Path, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and the venv's tools
        [str(arg) for arg in args], capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="segment-bridge-wheel-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def wheel(scratch: Path) -> Path:
    """The wheel pip builds from the checkout (its build backend from the index, as for a user)."""
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-q",
        "-w",
        scratch / "dist",
        ROOT,
        timeout=PIP_TIMEOUT,
    )
    assert built.returncode == 0, built.stderr
    (found,) = (scratch / "dist").glob("segment_bridge-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(scratch: Path, wheel: Path) -> Path:
    """The bin folder of a fresh venv holding the wheel with [cli], its dependencies from the index."""
    venv.create(scratch / "venv", with_pip=True)
    done = run(
        scratch / "venv" / "bin" / "python",
        "-m",
        "pip",
        "install",
        "-q",
        f"{wheel}[cli]",
        timeout=PIP_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    return scratch / "venv" / "bin"


def test_the_wheel_carries_every_module_of_the_layer_and_the_cli(wheel):
    """What `packages.find` ships, against the modules of the checkout."""
    names = set(zipfile.ZipFile(wheel).namelist())
    layer = ROOT / "layers" / "bridge"
    expected = {str(path.relative_to(layer)) for path in layer.glob("segment_bridge/**/*.py")}
    expected |= {str(path.relative_to(ROOT)) for path in ROOT.glob("bridge_dev/**/*.py")}
    assert expected - names == set()
    assert "bridge_dev/template.yaml" in names


def test_the_wheel_installs_with_cli_and_runs_against_no_stack(installed):
    command = installed / "segment-bridge"
    helped = run(command, "--help", cwd=Path(tempfile.gettempdir()))
    assert helped.returncode == 0, helped.stderr
    for group in ("workspaces", "mapping", "tail", "purge", "invoke"):
        assert group in helped.stdout

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    refused = run(command, "--endpoint", endpoint, "workspaces", "list", cwd=Path(tempfile.gettempdir()))
    assert refused.returncode == 1
    assert refused.stdout == ""
    (line,) = refused.stderr.splitlines()
    assert line.startswith("error: ")
    assert endpoint in line
    assert "Traceback" not in refused.stderr
