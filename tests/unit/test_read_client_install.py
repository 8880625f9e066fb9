"""The Python client is the package's, for a product running in the account: it imports and answers
with none of the dev tooling (bridge_dev, click, yaml, moto, werkzeug) importable."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import importlib.abc, sys
class NoDevTooling(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("bridge_dev", "click", "yaml", "moto", "werkzeug"):
            raise ImportError(f"dev tooling imported: {name}")
        return None
sys.meta_path.insert(0, NoDevTooling())
from segment_bridge.read.client import ProfileClient
client = ProfileClient(profiles_table="p", events_table="e", workspaces_table="w")
try:
    client.traits("acme", "email:ada@example.com")
except Exception as error:
    print(type(error).__name__, error.code)
"""


def test_the_client_imports_and_answers_without_dev_tooling():
    done = subprocess.run(  # noqa: S603 - our test venv's interpreter
        [sys.executable, "-c", PROBE],
        cwd=ROOT / "layers" / "bridge",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "BadRequest invalid_id_type"  # answered before any AWS call
