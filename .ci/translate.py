"""Translate template.yaml with the SAM translator and print the CloudFormation JSON it would deploy.

Run with the tools venv (`.venv-tools/bin/python .ci/translate.py template.yaml`); `make validate` lints
the output with cfn-lint, which checks the generated roles, permissions and event source mappings that
`sam validate --lint` never sees. Needs no AWS account: the template's policies are inline statements,
so the managed-policy loader has nothing to look up.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from cfnlint.decode import decode
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform


class OfflinePolicyLoader(ManagedPolicyLoader):
    """No IAM calls. The template names no managed policy (SAM adds the ones it needs as ARNs); a name added
    later would pass through untranslated, and cfn-lint would flag it as an invalid ARN."""

    def __init__(self) -> None:
        super().__init__(iam_client=None)  # type: ignore[arg-type]

    def load(self) -> dict[str, str]:
        return {}


# Local code paths are replaced by S3 URIs as `sam validate` does: the translator only accepts S3 locations.
CODE_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


def with_placeholder_code_uris(template: dict[str, Any]) -> dict[str, Any]:
    for resource in template.get("Resources", {}).values():
        prop = CODE_PROPERTIES.get(resource.get("Type", ""))
        properties = resource.get("Properties", {})
        if prop and isinstance(properties.get(prop), str) and not properties[prop].startswith("s3://"):
            properties[prop] = f"s3://placeholder-bucket/{properties[prop].strip('/')}"
    return template


def main(argv: list[str]) -> int:
    # The translator fills AWS::Region from the boto session; `make validate` sets the same region.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    path = Path(argv[1] if len(argv) > 1 else "template.yaml")
    template, matches = decode(str(path))
    if matches or template is None:
        for match in matches:
            print(match, file=sys.stderr)
        return 1
    try:
        translated: dict[str, Any] = transform(
            with_placeholder_code_uris(template), {}, OfflinePolicyLoader()
        )
    except InvalidDocumentException as error:
        for cause in error.causes:
            print(f"{path}: {cause.message}", file=sys.stderr)
        return 1
    json.dump(translated, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
