"""A delivery's body: from API Gateway's text (base64, compressed) to bytes, and from bytes to a Payload
(one event, an array of events, or Segment's `{"batch": [...]}`)."""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from segment_bridge.errors import InvalidPayload, PayloadTooLarge, UnreadableBody, UnsupportedEncoding
from segment_bridge.ingest.delivery import Limits
from segment_bridge.timestamps import InvalidTimestamp
from segment_bridge.timestamps import parse as parse_timestamp


@dataclass(slots=True)
class Payload:
    shape: Literal["single", "array", "batch"]
    events: list[Any]
    write_key: object = None
    sent_at: datetime | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    text: str = ""

    def signed_bytes(self) -> bytes:
        """What Segment signs: the whole body for one event, the raw bytes of an array's first element."""
        if self.shape != "array":
            return self.text.encode("utf-8")
        start = self.text.index("[") + 1
        while self.text[start] in " \t\r\n":
            start += 1
        _, end = json.JSONDecoder().raw_decode(self.text, start)
        return self.text[start:end].encode("utf-8")


_BOM = "\ufeff"


def decode_body(
    body: str | None, is_base64_encoded: bool, content_encoding: str | None, limits: Limits
) -> bytes:
    """The body's bytes: base64 (API Gateway's binary bodies) and the Content-Encoding's codings undone,
    size bounded at every step."""
    if not body:
        raise UnreadableBody("The request has no body.")
    if is_base64_encoded:
        try:
            data = base64.b64decode(body, validate=True)
        except ValueError:  # binascii.Error, or characters beyond ASCII
            raise UnreadableBody("The body is marked base64 but is not valid base64.") from None
    else:
        try:
            data = body.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that stands for no byte
            raise UnreadableBody("The body is not UTF-8 text.") from None
    codings = content_codings(content_encoding)
    if not codings and data[:2] == b"\x1f\x8b":
        codings = ["gzip"]  # gzip sent without its header (some SDKs)
    for coding in reversed(codings):  # applied in the order listed, so undone from the last
        wbits = _CODINGS[coding]
        if wbits is not None:
            data = _inflate(data, wbits, coding, limits.max_body_bytes)
    if len(data) > limits.max_body_bytes:
        raise PayloadTooLarge(f"The body is larger than {limits.max_body_bytes} bytes.")
    return data


_CODINGS: dict[str, int | None] = {
    "gzip": zlib.MAX_WBITS | 16,
    "x-gzip": zlib.MAX_WBITS | 16,
    "deflate": zlib.MAX_WBITS,
    "identity": None,
}
MAX_CODINGS = 4
"""More codings than this on one body is not a client we know of: refused like an unknown coding."""


def content_codings(header: str | None) -> list[str]:
    """Content-Encoding as RFC 9110 (8.4) defines it: a comma-separated list of codings, case-insensitive,
    in the order they were applied; empty elements and whitespace around them ignored. An unknown coding,
    or more than MAX_CODINGS, is UnsupportedEncoding (415)."""
    codings = [part.strip().lower() for part in (header or "").split(",")]
    codings = [coding for coding in codings if coding]
    if len(codings) > MAX_CODINGS or any(coding not in _CODINGS for coding in codings):
        raise UnsupportedEncoding(
            "Content-Encoding must list gzip, deflate or identity (at most "
            f"{MAX_CODINGS}, in the order applied)."
        )
    return codings


def _inflate(data: bytes, wbits: int, name: str, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error:
        raise UnreadableBody(f"The body is not valid {name} data.") from None
    if len(out) > max_bytes:
        raise PayloadTooLarge(f"The decompressed body is larger than {max_bytes} bytes.")
    if not inflater.eof:
        raise UnreadableBody(f"The {name} body is truncated.")
    return out


def parse_payload(raw: bytes, call_type: str | None) -> Payload:
    """One event, an array of events, or `{"batch": [...]}` (Segment's batch API) into a Payload.

    A leading UTF-8 byte order mark is ignored (RFC 8259 8.1 lets a parser do so; .NET and PowerShell
    clients write one); `text` keeps it, since a signature covers the bytes as sent."""
    try:
        text = raw.decode("utf-8")
        document = json.loads(text.removeprefix(_BOM))
    except UnicodeDecodeError:
        raise UnreadableBody("The body is not UTF-8 text.") from None
    except json.JSONDecodeError as error:
        raise UnreadableBody(
            f"The body is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})."
        ) from None
    except RecursionError:
        raise UnreadableBody("The body nests too deeply to be read.") from None
    except ValueError:  # an integer of more than 4,300 digits (sys.get_int_max_str_digits)
        raise UnreadableBody("The body holds a number too long to be read.") from None

    if isinstance(document, list):
        payload = Payload(shape="array", events=document, text=text)
    elif isinstance(document, dict) and "batch" in document:
        batch = document["batch"]
        if not isinstance(batch, list):
            raise InvalidPayload("`batch` must be an array of events.")
        payload = Payload(
            shape="batch",
            events=batch,
            write_key=document.get("writeKey"),
            sent_at=_optional_datetime(document.get("sentAt")),
            context=_optional_object(document.get("context")),
            integrations=_optional_object(document.get("integrations")),
            text=text,
        )
    elif isinstance(document, dict):
        payload = Payload(shape="single", events=[document], write_key=document.get("writeKey"), text=text)
    else:
        raise InvalidPayload("The body must be a JSON object (one event or a batch) or an array of events.")

    if call_type and payload.shape != "single":
        raise InvalidPayload(f"/v1/{call_type} takes one event; send batches to /v1/batch.")
    if not payload.events:
        raise InvalidPayload("The batch holds no events.")
    return payload


def _optional_datetime(value: object) -> datetime | None:
    try:
        return parse_timestamp(value) if value else None
    except InvalidTimestamp:
        return None


def _optional_object(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) and value else None
