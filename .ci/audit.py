"""pip-audit over the pinned requirement files: fail on a known vulnerability, say what could not be audited.

Run with the scan venv (`.venv-scan/bin/python .ci/audit.py`); `make security` does. The Lambda layer's
requirements are resolved (what ships, with every transitive dependency); the dev, tools and scan files are
audited pin by pin (`--no-deps`: they never ship, and resolving aws-sam-cli would take minutes).

pip-audit reads each release's vulnerabilities from PyPI's JSON API (pypi.org/pypi/<name>/<version>/json).
Where that API cannot be reached, pip-audit either stops with a connection error or marks every package
"not found on PyPI" and exits 0, which reads as a pass. Both are reported here as NOT AUDITED, with the
packages named, without failing the build: a scan that could not run is not a finding.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYER = "layers/bridge/requirements.txt"
PINNED = (
    "requirements-cli.txt",  # included by requirements-dev.txt, which pip-audit does not follow
    "requirements-dev.txt",
    "requirements-tools.txt",
    "requirements-scan.txt",
)

IGNORED: dict[str, str] = {}
"""Vulnerability id -> why it stays (each becomes --ignore-vuln). None today. A finding against boto3 1.43.11
belongs here, not in a bump: requirements-cli.txt pins it because botocore 1.44 breaks moto's DynamoDB
Streams, and it never ships (Lambda's runtime provides boto3)."""

UNREACHABLE = ("ConnectionError", "ConnectTimeout", "ReadTimeout", "NameResolutionError", "Max retries")


@dataclass(frozen=True)
class Audit:
    """One pip-audit run: its dependencies (JSON report), or None when it wrote no report, and its stderr."""

    name: str
    dependencies: list[dict[str, Any]] | None
    errors: str = ""


def run_pip_audit(name: str, arguments: list[str]) -> Audit:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "audit.json"
        command = [sys.executable, "-m", "pip_audit", "--format", "json", "--output", str(report)]
        command += ["--progress-spinner", "off", "--timeout", "20", *arguments]
        for vulnerability in IGNORED:
            command += ["--ignore-vuln", vulnerability]
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)  # noqa: S603
        if not report.exists():
            return Audit(name, None, done.stderr)
        return Audit(name, json.loads(report.read_text(encoding="utf-8"))["dependencies"], done.stderr)


def verdict(audits: list[Audit]) -> tuple[int, list[str]]:
    """Exit status and report: 1 for a known vulnerability or a pip-audit failure that is not the
    vulnerability service being out of reach; what could not be audited is listed, and is not a failure."""
    found: list[str] = []
    not_audited: list[str] = []
    audited = 0
    for audit in audits:
        if audit.dependencies is None:
            if not any(marker in audit.errors for marker in UNREACHABLE):
                return 1, [audit.errors.rstrip(), f"pip-audit failed on {audit.name}"]
            last = audit.errors.strip().splitlines()[-1] if audit.errors.strip() else "no answer"
            not_audited.append(f"{audit.name}: the vulnerability service could not be reached ({last})")
            continue
        for dependency in audit.dependencies:
            if "skip_reason" in dependency:
                not_audited.append(dependency["skip_reason"])
                continue
            audited += 1
            for vulnerability in dependency.get("vulns", []):
                fixes = ", ".join(vulnerability.get("fix_versions", [])) or "no fixed version yet"
                found.append(
                    f"VULNERABLE {dependency['name']} {dependency['version']}: {vulnerability['id']}"
                    f" (fixed in {fixes})"
                )
    ignored = f", {len(IGNORED)} ignored ({', '.join(IGNORED)})" if IGNORED else ""
    report = [f"pip-audit: {audited} packages audited, {len(found)} known vulnerabilities{ignored}"]
    report += [f"  {line}" for line in found]
    if not_audited:
        report.append(f"pip-audit: WARNING: {len(not_audited)} NOT AUDITED (no vulnerability data for them):")
        report += [f"  {line}" for line in not_audited]
        report.append("pip-audit: not a failure; run `make security` where pypi.org's JSON API answers.")
    return (1 if found else 0), report


def main() -> int:
    pins = [argument for path in PINNED for argument in ("--requirement", path)]
    audits = [
        run_pip_audit(f"{LAYER} (resolved)", ["--requirement", LAYER]),
        run_pip_audit(f"{', '.join(PINNED)} (pins)", ["--disable-pip", "--no-deps", *pins]),
    ]
    status, report = verdict(audits)
    print("\n".join(report))
    return status


if __name__ == "__main__":
    sys.exit(main())
