"""Segment's regulations, opt-in (issue 25): the RegulationsFunction and `deletions poll` against a strict
stand-in of Segment's Public API (tests/public_api_standin.py) on 127.0.0.1, the rest on moto."""

from __future__ import annotations

import pytest

from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from segment_bridge.envelope import unpack
from tests.conftest import lambda_function
from tests.public_api_standin import PublicApiStandIn, regulation

TOKEN = "sgp_public-api-token-0123456789abcdef"
CREATED = "2026-03-0{}T12:00:00.000Z"


@pytest.fixture
def local_endpoints(monkeypatch):
    """SegmentEndpoints=local (what tests and the local stack run with): plain http to the stand-in."""
    from segment_bridge.settings import get_settings

    monkeypatch.setenv("SEGMENT_ENDPOINTS", "local")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def standin(**fields) -> PublicApiStandIn:
    regulations = [
        regulation("reg-1", ["user-1", "user-2"], CREATED.format(1)),
        regulation("reg-2", ["user-3"], CREATED.format(2), "DELETE_ONLY"),
        regulation("reg-3", ["user-4"], CREATED.format(3), "SUPPRESS_ONLY"),  # no delete
        regulation("reg-4", ["obj-1"], CREATED.format(4), "DELETE_ONLY", subject_type="OBJECT_ID"),
        regulation("reg-5", ["user-5"], CREATED.format(5), "DELETE_INTERNAL"),
        regulation("reg-6", ["user-6"], CREATED.format(6), status="FINISHED"),
    ]
    return PublicApiStandIn(TOKEN, regulations, **fields)


def opt_in(sb, sensitive, api: PublicApiStandIn, monkeypatch, token: str = TOKEN) -> None:
    sensitive.add(token)
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(token + "\n"))
    assert sb("deletions", "token", WS, "--endpoint", api.url, "--token-stdin").status == 0


def queued_subjects(queue) -> list[tuple[str, str]]:
    out = []
    for body in queue.messages():
        envelope, events = unpack(body)
        assert envelope.source == "regulation"
        out += [(envelope.requestId, e["userId"]) for e in events]
    return sorted(out)


EXPECTED = [("reg-1", "user-1"), ("reg-1", "user-2"), ("reg-2", "user-3"), ("reg-6", "user-6")]


def test_each_deleting_regulation_is_queued_once_across_pages_and_runs(
    local_endpoints, sb, sensitive, monkeypatch, queue
):
    with standin() as api:
        opt_in(sb, sensitive, api, monkeypatch)
        function = lambda_function("RegulationsFunction")
        with_pages = __import__("segment_bridge.privacy.regulations", fromlist=["PAGE_COUNT"])
        monkeypatch.setattr(with_pages, "PAGE_COUNT", 2)  # three pages of the stand-in's six
        first = function.invoke({})
        assert queued_subjects(queue) == EXPECTED
        assert first["deletes_queued"] == 4
        assert first["listed"] == 6
        assert len(api.requests) == 3
        assert all(r["pagination.count"] == "2" for r in api.requests)

        again = function.invoke({})  # the same list again: nothing new
        assert again["deletes_queued"] == 0
        assert queue.messages() == []
        api.regulations.append(regulation("reg-7", ["user-7"], CREATED.format(7)))
        assert function.invoke({})["deletes_queued"] == 1
        assert queued_subjects(queue) == [("reg-7", "user-7")]

    receipts = sb("deletions", "list", WS).json["receipts"]
    assert sorted((r["request_id"], r["id"], r["source"], r["state"]) for r in receipts) == [
        (reg, user, "regulation", "received") for reg, user in [*EXPECTED, ("reg-7", "user-7")]
    ]
    assert [r["deleted_at"] for r in receipts if r["id"] == "user-3"] == [CREATED.format(2)]


def test_a_cursor_lost_after_queueing_does_not_queue_a_regulation_twice(
    local_endpoints, sb, sensitive, monkeypatch, queue, workspaces
):
    with standin() as api:
        opt_in(sb, sensitive, api, monkeypatch)
        monkeypatch.setattr(type(workspaces.regulations), "save_regulations_cursor", lambda *args: None)
        assert sb("deletions", "poll", WS).json["deletes_queued"] == 4
        assert queued_subjects(queue) == EXPECTED
        again = sb("deletions", "poll", WS).json  # the cursor never moved: every regulation listed again
        assert (again["deletes_queued"], again["already_received"]) == (0, 4)


def test_a_429_is_waited_out_as_segment_says_and_every_page_is_read(
    local_endpoints, sb, sensitive, monkeypatch, queue
):
    with standin(limit=2, window_seconds=1.5) as api:
        opt_in(sb, sensitive, api, monkeypatch)
        monkeypatch.setattr("segment_bridge.privacy.regulations.PAGE_COUNT", 1)  # six pages
        done = sb("deletions", "poll", WS).json
        assert done["listed"] == 6
        assert done["deletes_queued"] == 4
        assert api.ignored_limits == 0  # never asked again before the window it was told to wait for


def test_a_refused_token_is_an_operator_visible_error_and_the_token_is_never_shown(
    local_endpoints, sb, sensitive, monkeypatch, queue, caplog
):
    with standin() as api:
        opt_in(sb, sensitive, api, monkeypatch, token="sgp_wrong-token-000000000000000")
        refused = sb("deletions", "poll", WS)
        assert refused.status == 1
        assert refused.error["code"] == "public_api_token_refused"
        assert "deletions token" in refused.error["message"]

        function = lambda_function("RegulationsFunction")
        with pytest.raises(Exception, match="refused the workspace's token"):
            function.invoke({})
        assert any(getattr(r, "workspace_id", None) == WS for r in caplog.records)
        assert api.refused_unauthorized == 2
        assert queue.messages() == []


def test_unset_stops_the_polling_and_deletes_the_token(local_endpoints, sb, sensitive, monkeypatch):
    with standin() as api:
        opt_in(sb, sensitive, api, monkeypatch)
        assert sb("deletions", "token", WS, "--unset").json == {"workspace_id": WS, "polling": False}
        assert sb("deletions", "poll", WS).error["code"] == "not_found"
        assert lambda_function("RegulationsFunction").invoke({})["workspaces"] == 0
        assert api.requests == []


def test_the_function_reports_the_age_of_the_oldest_unfinished_request(workspaces):
    from datetime import UTC, datetime, timedelta

    from segment_bridge.receipts import Requested
    from segment_bridge.timestamps import iso

    function = lambda_function("RegulationsFunction")
    assert function.invoke({})["oldest_unfinished_seconds"] == 0
    eight_days_ago = iso(datetime.now(UTC) - timedelta(days=8))
    workspaces.receipts.received(WS, [Requested("U#user-1", eight_days_ago, eight_days_ago, "api", "r-1")])
    workspaces.receipts.received(WS, [Requested("U#user-2", now_iso(), now_iso(), "api", "r-2")])
    age = function.invoke({})["oldest_unfinished_seconds"]
    assert 8 * 86400 - 60 <= age <= 8 * 86400 + 60  # past the OldestDeletionAlarm's 7 days
    workspaces.receipts.erased(WS, [Requested("U#user-1", eight_days_ago, eight_days_ago, "api", "r-1")])
    workspaces.receipts.purged(WS, {"U#user-1": eight_days_ago})
    assert function.invoke({})["oldest_unfinished_seconds"] < 60  # the purged one left the index


def now_iso() -> str:
    from datetime import UTC, datetime

    from segment_bridge.timestamps import iso

    return iso(datetime.now(UTC))
