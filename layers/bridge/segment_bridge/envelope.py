"""The queue message: many events of one workspace, gzip-compressed, with readable metadata.

SQS bills every 64 KiB of a message as one request and caps a message at the queue's
MaximumMessageSize, so intake packs as many events as fit into each message. The metadata stays plain
JSON so a message in a dead-letter queue can be read without decoding it.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

ENCODING: Final = "gzip+base64"
COMPRESS_LEVEL = 1
"""gzip level 1: about 4/5 of level 6's ratio on Segment JSON at a fraction of its CPU (see benchmarks)."""
RAW_BYTES_PER_MESSAGE_BYTE = 4
"""How much raw JSON we try per byte of message before compressing; a group that does not fit is split."""


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    v: Literal[1] = 1
    workspaceId: str
    requestId: str
    receivedAt: str
    count: int
    encoding: Literal["gzip+base64"] = ENCODING
    events: str
    job: str | None = None
    """Set on a replay job's copy of archived events (jobs/replay.py): applied, not archived again."""
    mappingVersion: int | None = None
    """A replay's: the mapping version it was planned under (at least that one applies)."""
    source: str | None = None
    """Where the delivery came from, when it says (privacy/receipts.py SOURCES): a privacy request's
    receipt records it. Absent from messages packed before it existed."""


def message_group(envelope: Envelope) -> str:
    """The IngestQueue's MessageGroupId of a message: its workspace, or a replay job's copy's own group
    `<workspace>/replay` (a fair-queue tenant of its own beside the live traffic: jobs/replay.py)."""
    return envelope.workspaceId if envelope.job is None else replay_group(envelope.workspaceId)


def replay_group(workspace_id: str) -> str:
    return f"{workspace_id}/replay"


class EventTooLargeForQueue(ValueError):
    """One event that does not fit a queue message even alone (intake's size limit prevents it)."""


def pack(
    chunks: Sequence[bytes],
    *,
    workspace_id: str,
    request_id: str,
    received_at: str,
    max_bytes: int,
    job: str | None = None,
    mapping_version: int | None = None,
    source: str | None = None,
) -> list[str]:
    """Queue message bodies, each at most `max_bytes`, holding `chunks` (events as UTF-8 JSON) in order;
    `job`: a replay job's (Envelope.job); `source`: where the delivery came from (kept in each message's
    metadata when given)."""
    header: dict[str, str | int] = {
        "workspaceId": workspace_id,
        "requestId": request_id,
        "receivedAt": received_at,
    }
    if job is not None:
        header["job"] = job
    if mapping_version is not None:
        header["mappingVersion"] = mapping_version
    if source is not None:
        header["source"] = source
    budget = max_bytes * RAW_BYTES_PER_MESSAGE_BYTE
    messages: list[str] = []
    group: list[bytes] = []
    size = 0
    for chunk in chunks:
        if group and size + len(chunk) + 1 > budget:
            messages.extend(_encode(group, header, max_bytes))
            group, size = [], 0
        group.append(chunk)
        size += len(chunk) + 1
    if group:
        messages.extend(_encode(group, header, max_bytes))
    return messages


def _encode(group: Sequence[bytes], header: dict[str, str | int], max_bytes: int) -> list[str]:
    payload = gzip.compress(b"[" + b",".join(group) + b"]", compresslevel=COMPRESS_LEVEL, mtime=0)
    body = json.dumps(
        {
            "v": 1,
            **header,
            "count": len(group),
            "encoding": ENCODING,
            "events": base64.b64encode(payload).decode(),
        },
        separators=(",", ":"),
    )
    if len(body) <= max_bytes:
        return [body]
    if len(group) == 1:
        raise EventTooLargeForQueue(f"one event needs {len(body)} bytes; a queue message holds {max_bytes}")
    middle = len(group) // 2
    return _encode(group[:middle], header, max_bytes) + _encode(group[middle:], header, max_bytes)


def unpack(body: str) -> tuple[Envelope, list[dict[str, Any]]]:
    """The envelope and its events; raises ValueError (pydantic's included) for a malformed message."""
    envelope = Envelope.model_validate_json(body)
    events = json.loads(gzip.decompress(base64.b64decode(envelope.events, validate=True)))
    if not isinstance(events, list) or len(events) != envelope.count:
        raise ValueError("the message's events do not match its count")
    return envelope, events
