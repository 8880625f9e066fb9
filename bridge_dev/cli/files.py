"""Reading the operator's files: mappings, event bodies, events to invoke with."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from segment_bridge.errors import InvalidPayload
from segment_bridge.ingest.intake import Limits, decode_body
from segment_bridge.mapping import Mapping


def read_document(path: Path) -> Any:
    """A JSON or YAML file. JSON is read as JSON first: YAML refuses characters JSON allows (DEL, C1
    controls) and reads a JSON escaped pair of surrogates (an emoji) as two lone surrogates. A lone
    surrogate (an escape JSON allows but no text is) is refused, naming where it is."""
    text = path.read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise InvalidPayload(f"{path} is not YAML or JSON: {_one_line(str(error))}") from None
    where = _not_text(document, ())
    if where is not None:
        raise InvalidPayload(f"{'.'.join(where) or 'value'}: a lone surrogate (\\ud800-\\udfff) is not text")
    return document


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _not_text(value: Any, where: tuple[str, ...]) -> tuple[str, ...] | None:
    """Where the document holds a string that is not UTF-8 text (a lone surrogate), if anywhere."""
    if isinstance(value, str):
        return None if _encodes(value) else where
    if isinstance(value, dict):
        for key, inner in value.items():
            inside = (*where, str(key))  # named as it is: the error's output escapes it (app._report)
            found = inside if not _encodes(str(key)) else _not_text(inner, inside)
            if found is not None:
                return found
    if isinstance(value, list):
        for n, inner in enumerate(value):
            found = _not_text(inner, (*where, str(n)))
            if found is not None:
                return found
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_mapping(path: Path) -> Mapping:
    """A mapping file, validated (pydantic's ValidationError names each wrong field)."""
    return read_mapping_noted(path)[0]


def read_mapping_noted(path: Path) -> tuple[Mapping, list[str]]:
    """A mapping file, validated, and what the operator should be told about it: that `delete` is
    applied although its `event_types` left it out (docs/exactness.md)."""
    from segment_bridge.mapping import DELETES_NOTE

    document = read_document(path)
    if not isinstance(document, dict):
        raise InvalidPayload(f"{path} must hold a mapping object.")
    document.pop("version", None)  # the store numbers versions
    mapping = Mapping.model_validate(document)
    types = document.get("event_types")
    left_out = isinstance(types, list | tuple | set | frozenset) and "delete" not in types
    return mapping, [DELETES_NOTE] if left_out else []


def read_body(path: Path) -> tuple[bytes, str | None]:
    """A request body from a file: an API Gateway event (events/*.json) or a body as Segment sends it.
    Returns (decoded body, the request's path if the file says)."""
    raw = path.read_bytes()
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        document = None
    if isinstance(document, dict) and "requestContext" in document and "body" in document:
        headers = {str(k).lower(): str(v) for k, v in (document.get("headers") or {}).items()}
        body = decode_body(
            document["body"], bool(document.get("isBase64Encoded")), headers.get("content-encoding"), Limits()
        )
        return body, document.get("rawPath")
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw, None


def read_event(path: Path | None) -> dict[str, Any]:
    """A function's event (`invoke -e`): a JSON file, or standard input for `-` or no file."""
    text = sys.stdin.read() if path is None or str(path) == "-" else path.read_text(encoding="utf-8")
    try:
        document = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as error:
        raise InvalidPayload(f"The event is not JSON: {error.msg} (line {error.lineno}).") from None
    if not isinstance(document, dict):
        raise InvalidPayload("The event must be a JSON object.")
    return document
