"""Shared fixtures: fake AWS credentials, moto, and the template's resources created on it."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "segment-bridge",
        "POWERTOOLS_METRICS_NAMESPACE": "SegmentBridge",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


def load_handler(function: str) -> ModuleType:
    """Import functions/<function>/app.py under a unique name (every function's module is `app`)."""
    name = f"{function}_app"
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / function / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def aws() -> Iterator[object]:
    """moto with every resource of template.yaml, and the environment the template gives functions."""
    from moto import mock_aws

    from bridge_dev.template import create_resources
    from segment_bridge.settings import get_settings
    from segment_bridge.store import get_store

    with mock_aws():
        resources = create_resources()
        saved = dict(os.environ)
        os.environ.update(resources.environment())
        get_settings.cache_clear()
        get_store.cache_clear()
        try:
            yield resources
        finally:
            os.environ.clear()
            os.environ.update(saved)
            get_settings.cache_clear()
            get_store.cache_clear()
