"""events/*.json and env.json are what `python -m bridge_dev.events` writes: nobody edits them by hand, and a
change to the code they come from (intake's envelope, the stream poller's records, the template) shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge_dev.events import ENV_FILE, ROOT, build_all
from segment_bridge.envelope import unpack

GENERATED = build_all()


def _comparable(path: Path, document: Any) -> Any:
    """The document, with each queue message's body unpacked: gzip output may differ by zlib build, what
    the envelope holds may not."""
    if path.name != "processor_sqs_batch.json":
        return document
    records = []
    for record in document["Records"]:
        envelope, events = unpack(record["body"])
        fields = {name: value for name, value in record.items() if name not in ("body", "md5OfBody")}
        records.append({**fields, "envelope": envelope.model_dump(exclude={"events"}), "events": events})
    return {**document, "Records": records}


@pytest.mark.parametrize("path", sorted(GENERATED), ids=lambda path: str(path.relative_to(ROOT)))
def test_regenerating_a_committed_file_changes_nothing(path):
    committed = json.loads(path.read_text(encoding="utf-8"))
    assert _comparable(path, committed) == _comparable(path, GENERATED[path]), (
        f"{path.relative_to(ROOT)} differs from what `make events` writes: run it and commit the result"
    )


def test_every_committed_event_file_is_generated():
    committed = set((ROOT / "events").glob("*.json"))
    assert committed == {path for path in GENERATED if path != ENV_FILE}


def test_every_event_file_has_its_line_in_the_testing_doc():
    doc = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    missing = [path.name for path in GENERATED if path != ENV_FILE and f"`{path.name}`" not in doc]
    assert not missing, f"docs/testing.md's events table lacks {missing}"


def test_the_processor_event_carries_intake_envelopes_of_the_demo_workspace():
    batch = GENERATED[ROOT / "events" / "processor_sqs_batch.json"]
    unpacked = [unpack(record["body"]) for record in batch["Records"]]
    assert {envelope.workspaceId for envelope, _ in unpacked} == {"ws_demo"}
    users = {event.get("userId") for _, events in unpacked for event in events}
    assert users == {"user-42", "user-7"}
    assert all(event["messageId"] and event["receivedAt"] for _, events in unpacked for event in events)
