"""The events route's pages, read from the EventsTable's `by_time` index (docs/read-api.md, "Events"):
for any timestamps across a user and its linked ids (equal ones included) and any arrival order, the
pages are newest first (or oldest first), each within its limit, together every history item exactly
once; events arriving while a reader pages never repeat one or break the order, and a deleted user's
history leaves the index with it."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segment_bridge.identity import MergeProtection
from segment_bridge.mapping import Mapping
from segment_bridge.processor.unit import apply_batch
from tests.functional.conftest import event

MAPPING = Mapping(merge_protection=MergeProtection(max_anonymous_ids=8))
TIMES = [f"2026-03-0{day}T10:00:0{second}.000Z" for day in (1, 2) for second in (0, 1, 2)]
"""Few distinct timestamps: equal ones across ids are common."""


def page_through(workspace_id: str, asked: str, limit: int, sort: str, between: Any = None) -> list[Any]:
    """Every page of `asked`'s events, as the API answers them: [(timestamp, messageId, id)] per page."""
    from segment_bridge.read.api import answer, parse
    from segment_bridge.read.model import Reader
    from segment_bridge.store import get_store

    pages, cursor = [], None
    while True:
        query = {"limit": str(limit), "sort": sort} | ({"next": cursor} if cursor else {})
        request = parse(workspace_id, "users", asked, "events", query)
        reader = Reader(get_store().reading)
        reader._protection[workspace_id] = MAPPING.merge_protection
        body = answer(request, reader)
        pages.append([(e["timestamp"], e["message_id"], e["external_ids"][0]["id"]) for e in body["data"]])
        if between is not None and len(pages) == 1:
            between()
        if not body["cursor"]["has_more"]:
            return pages
        cursor = body["cursor"]["next"]
        assert len(pages) < 200, "paging never ends"


def history_of(draw: Any, users: list[str], anonymous: list[str]) -> list[dict[str, Any]]:
    """Identify calls linking each anonymous id to the user, and track calls under any of the ids (a
    messageId at most once per id)."""
    user = users[0]
    links = [event("identify", "hello", TIMES[0], user=user)]  # the user exists, whatever follows
    links += [
        event("identify", f"link-{n}", TIMES[0], user=user, anonymousId=anon)
        for n, anon in enumerate(anonymous)
    ]
    owners = [{"userId": user}] + [{"anonymousId": anon} for anon in anonymous]
    tracks, taken = [], set()
    for n in range(draw(st.integers(0, 14))):
        owner = draw(st.sampled_from(owners))
        # a messageId may repeat under another id (its own history item there): equal time keys
        message_id = draw(st.sampled_from([f"m{k}" for k in range(6)]))
        if (str(owner), message_id) in taken:
            continue
        taken.add((str(owner), message_id))
        when = draw(st.sampled_from(TIMES))
        tracks.append(event("track", message_id, when, user=None, event=f"E{n % 3}", **owner))
    return links + tracks


def key_of(e: dict[str, Any]) -> tuple[str, str, str]:
    owner = e.get("userId") or e["anonymousId"]
    return (e["timestamp"], e["messageId"], owner)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_event_pages_are_in_time_order_complete_and_never_overlap_for_any_timestamps_and_arrival(aws, data):
    from segment_bridge.store import get_store

    store = get_store()
    workspace_id = f"pages{uuid.uuid4().hex[:8]}"
    store.profiles.start_deleted_ids(workspace_id)
    anonymous = [f"anon-{n}" for n in range(data.draw(st.integers(0, 4), label="linked ids"))]
    events = history_of(data.draw, ["user-1"], anonymous)
    links, tracks = events[: len(anonymous) + 1], events[len(anonymous) + 1 :]
    arrival = data.draw(st.permutations(tracks), label="arrival")
    late = data.draw(st.integers(0, len(arrival)), label="arriving while paging")
    before, during = arrival[: len(arrival) - late], arrival[len(arrival) - late :]
    for chunk in (links, *[before[n : n + 3] for n in range(0, len(before), 3)]):
        if chunk:
            apply_batch(workspace_id, [dict(e) for e in chunk], MAPPING, store)
    limit = data.draw(st.integers(1, 4), label="limit")
    sort = data.draw(st.sampled_from(["desc", "asc"]), label="sort")
    asked = data.draw(st.sampled_from(["user_id:user-1", *[f"anonymous_id:{a}" for a in anonymous]]))

    def arrive() -> None:
        if during:
            apply_batch(workspace_id, [dict(e) for e in during], MAPPING, store)

    pages = page_through(workspace_id, asked, limit, sort, arrive)

    read = [entry for page in pages for entry in page]
    assert all(len(page) <= limit for page in pages)
    assert len(read) == len(set(read)), "an event was answered twice"
    ordered = sorted(read, reverse=sort == "desc")
    assert read == ordered, "pages are not in time order"
    assert {key_of(e) for e in before} <= set(read), "an event stored before paging was skipped"
    assert set(read) <= {key_of(e) for e in tracks}
    if not during:  # nothing arrived: every page full but the last, and every event once
        assert sorted(read) == sorted(key_of(e) for e in tracks)
        assert all(len(page) == limit for page in pages[:-1])


def by_time_entries(workspace_id: str, key: str) -> list[dict[str, Any]]:
    import boto3

    from segment_bridge.store import get_store

    table = boto3.resource("dynamodb").Table(get_store().settings.events_table)
    return table.query(
        IndexName="by_time",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": f"WS#{workspace_id}#{key}"},
    )["Items"]


def test_a_deleted_users_history_and_its_linked_ids_leave_the_time_index(aws, workspaces):
    from segment_bridge.store import get_store

    store = get_store()
    workspace_id = f"gone{uuid.uuid4().hex[:8]}"
    store.profiles.start_deleted_ids(workspace_id)
    history = [
        event("identify", "link", TIMES[0], anonymousId="anon-1"),
        event("track", "own", TIMES[1], event="Own"),
        event("track", "anon", TIMES[2], user=None, anonymousId="anon-1", event="Anonymous"),
    ]
    apply_batch(workspace_id, history, MAPPING, store)
    assert [e["name"] for e in by_time_entries(workspace_id, "U#user-1")] == ["Own"]
    assert [e["name"] for e in by_time_entries(workspace_id, "A#anon-1")] == ["Anonymous"]

    apply_batch(workspace_id, [event("delete", "del", TIMES[3])], MAPPING, store)
    assert by_time_entries(workspace_id, "U#user-1") == []
    assert by_time_entries(workspace_id, "A#anon-1") == []

    apply_batch(workspace_id, [event("track", "back", TIMES[4], event="Came Back")], MAPPING, store)
    assert [e["time_key"] for e in by_time_entries(workspace_id, "U#user-1")] == [f"{TIMES[4]}#back"]
    assert page_through(workspace_id, "user_id:user-1", 10, "desc") == [[(TIMES[4], "back", "user-1")]]
