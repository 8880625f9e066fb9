"""Privacy requests' receipts and the regulations poll as pure logic (issue 25)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segment_bridge.envelope import unpack
from segment_bridge.identity import MergeProtection
from segment_bridge.ingest.intake import delivery_source
from segment_bridge.mapping import Mapping
from segment_bridge.planning import plan
from segment_bridge.privacy.regulations import Answer, Regulation, poll, wait_seconds
from segment_bridge.receipts import Receipt, Requested, requested_in
from tests.conftest import ROOT

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("agent", "source"),
    [
        ("Segment (Actions)", "segment"),
        ("Segment.io/1.0", "segment"),
        ("Segment (Function) segment-bridge", "function"),
        ("python-requests/2.32.3", "api"),
        ("", "api"),
    ],
)
def test_a_delivery_says_where_it_came_from_by_its_user_agent(agent, source):
    assert delivery_source({"user-agent": agent} if agent else {}) == source


def test_the_destination_functions_own_user_agent_is_labelled_function():
    script = (ROOT / "segment" / "bridge-function.js").read_text(encoding="utf-8")
    [agent] = re.findall(r"'User-Agent': '([^']+)'", script)
    assert delivery_source({"user-agent": agent}) == "function"


ids = st.text(min_size=1, max_size=8)
times = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
    lambda moment: moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
)


@st.composite
def delete_events(draw: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "delete", "messageId": draw(ids), "receivedAt": draw(times)}
    user, anonymous = draw(st.one_of(st.none(), ids)), draw(st.one_of(st.none(), ids))
    if user is None and anonymous is None:
        user = draw(ids)
    event |= {"userId": user} if user else {}
    event |= {"anonymousId": anonymous} if anonymous else {}
    if draw(st.booleans()):
        event["timestamp"] = draw(times)  # may be more than 23 h after receivedAt: clamped
    return event


MAPPINGS = st.sampled_from(
    [
        Mapping(),  # the default merge protection blocks ids such as "0", "null", "undefined"
        Mapping(merge_protection=MergeProtection(blocked_values=frozenset({"a", "b"}))),
    ]
)


@given(st.lists(delete_events(), max_size=6), MAPPINGS)
def test_the_requests_of_a_message_are_the_deletes_the_processor_applies(events, mapping):
    """Each receipt names the key and time the delete's tombstone records, under the workspace's mapping
    (a delete of an id its merge protection blocks gets no receipt)."""
    requests = requested_in(
        events, received_at="2026-01-01T00:00:00.000Z", source="api", request_id="r", mapping=mapping
    )
    planned = plan(events, mapping).deletions
    assert {(r.key, r.deleted_at) for r in requests} == {(d.key, d.timestamp) for d in planned}
    assert len(requests) == len({(r.key, r.deleted_at) for r in requests})


# --- the regulations poll: exactly once under re-listing -------------------------------------------


class Fakes:
    """The queue, the receipts and the cursor, in memory."""

    def __init__(self) -> None:
        self.queued: list[tuple[str, str]] = []
        self.receipts: dict[tuple[str, str], Requested] = {}
        self.cursor: str | None = None

    def enqueue(self, bodies: list[str], workspace_id: str) -> None:
        for body in bodies:
            envelope, events = unpack(body)
            self.queued += [(envelope.requestId, e["userId"]) for e in events]

    def received(self, workspace_id: str, requests: list[Requested]) -> None:
        for request in requests:
            self.receipts.setdefault((request.key, request.deleted_at), request)

    def of_entity(self, workspace_id: str, key: str) -> list[Receipt]:
        return [
            Receipt(workspace_id, k, at, r.received_at, r.source, r.request_id, "received")
            for (k, at), r in self.receipts.items()
            if k == key
        ]

    def save_regulations_cursor(self, workspace_id: str, cursor: str) -> None:
        if self.cursor is None or cursor > self.cursor:
            self.cursor = cursor


TYPES = ["SUPPRESS_WITH_DELETE", "DELETE_ONLY", "SUPPRESS_ONLY", "UNSUPPRESS", "DELETE_INTERNAL"]


@st.composite
def histories(draw: Any) -> tuple[list[Regulation], list[list[int]]]:
    """Regulations created over a few days, and runs: each run lists the regulations created by then
    (Segment keeps 90 days), in any order, some of them possibly missing from one listing."""
    count = draw(st.integers(1, 8))
    regulations = [
        Regulation(
            id=f"reg-{n}",
            subjectType=draw(st.sampled_from(["USER_ID", "USER_ID", "OBJECT_ID"])),
            subjects=draw(st.lists(st.sampled_from(["u1", "u2", "u3"]), min_size=1, max_size=3)),
            status=draw(st.sampled_from(["INITIALIZED", "RUNNING", "FINISHED", "INVALID"])),
            createdAt=(NOW - timedelta(hours=draw(st.integers(0, 72)))).isoformat().replace("+00:00", "Z"),
            regulationType=draw(st.sampled_from(TYPES)),
        )
        for n in range(count)
    ]
    runs = draw(st.lists(st.permutations(range(count)), min_size=1, max_size=4))
    return regulations, [list(run) for run in runs]


@settings(deadline=None)
@given(histories())
def test_every_deleting_regulation_is_queued_once_however_often_it_is_listed(history):
    regulations, runs = history
    fakes = Fakes()
    for run in [*runs, list(range(len(regulations)))]:  # a last listing of everything
        listed = iter([regulations[n] for n in run])
        poll(
            "ws",
            listed,
            fakes.cursor,
            queue=fakes,
            receipts=fakes,
            polls=fakes,
            max_bytes=262_144,
            now=NOW,
        )
    expected = sorted(
        (r.id, subject)
        for r in regulations
        if r.regulationType in ("SUPPRESS_WITH_DELETE", "DELETE_ONLY")
        and r.subjectType == "USER_ID"
        and r.status != "INVALID"
        for subject in dict.fromkeys(r.subjects)
    )
    # a subject named by two regulations at one createdAt is one delete (one request, one receipt)
    distinct = {(subject, r.createdAt) for r in regulations for rid, subject in expected if r.id == rid}
    assert len(fakes.queued) == len(distinct)
    assert set(fakes.queued) <= set(expected)
    assert len(fakes.receipts) == len(distinct)


def test_a_429_waits_for_what_its_body_says_else_its_reset_header_capped():
    body = b'{"errors":[{"type":"RequestError","message":"Too many requests","data":{"msBeforeNext":2500}}]}'
    assert wait_seconds(Answer(429, {}, body), NOW) == 2.5
    reset = {"x-ratelimit-reset": "Tue, 10 Mar 2026 12:00:07 GMT"}
    assert wait_seconds(Answer(429, reset, b"{}"), NOW) == 7.0
    assert wait_seconds(Answer(429, {"x-ratelimit-reset": "Tue, 10 Mar 2026 13:00:00 GMT"}, b""), NOW) == 60.0
    assert wait_seconds(Answer(429, {"retry-after": "3"}, b"not json"), NOW) == 3.0
