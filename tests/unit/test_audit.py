""".ci/audit.py's verdict: a known vulnerability fails the build; vulnerability data out of reach does not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    path = Path(__file__).parents[2] / ".ci" / "audit.py"
    spec = importlib.util.spec_from_file_location("ci_audit", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ci_audit"] = module
    spec.loader.exec_module(module)
    return module


def test_a_known_vulnerability_fails_and_names_the_fix(audit):
    dependencies = [
        {"name": "requests", "version": "2.0.0", "vulns": [{"id": "PYSEC-1", "fix_versions": ["2.31.0"]}]},
        {"name": "orjson", "version": "3.13.0", "vulns": []},
    ]

    status, report = audit.verdict([audit.Audit("layer", dependencies)])

    assert status == 1
    assert "2 packages audited, 1 known vulnerabilities" in report[0]
    assert "  VULNERABLE requests 2.0.0: PYSEC-1 (fixed in 2.31.0)" in report


def test_clean_packages_pass_without_a_warning(audit):
    clean = {"name": "ruff", "version": "0.17.5", "vulns": []}

    status, report = audit.verdict([audit.Audit("pins", [clean])])

    assert status == 0
    assert report == ["pip-audit: 1 packages audited, 0 known vulnerabilities"]


def test_packages_without_vulnerability_data_are_listed_as_not_audited_without_failing(audit):
    skipped = {"name": "pydantic", "skip_reason": "Dependency not found on PyPI: pydantic (2.14.3)"}

    status, report = audit.verdict([audit.Audit("layer", [skipped])])

    assert status == 0
    assert report[0] == "pip-audit: 0 packages audited, 0 known vulnerabilities"
    assert "1 NOT AUDITED" in report[1]
    assert "  Dependency not found on PyPI: pydantic (2.14.3)" in report


def test_an_unreachable_vulnerability_service_is_reported_not_failed(audit):
    errors = "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='api.osv.dev', port=443)\n"

    status, report = audit.verdict([audit.Audit("pins", None, errors)])

    assert status == 0
    assert any("pins: the vulnerability service could not be reached" in line for line in report)


def test_any_other_pip_audit_failure_fails(audit):
    errors = "ResolutionImpossible: no matching version\n"

    status, report = audit.verdict([audit.Audit("layer", None, errors)])

    assert status == 1
    assert report[-1] == "pip-audit failed on layer"
