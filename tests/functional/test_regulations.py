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


def hourly(function, run_jobs, workspaces) -> dict[str, int]:
    """One hourly run as AWS runs it: the RegulationsFunction plans, the JobsFunction polls. The run's
    job's counts."""
    planned = function.invoke({})
    run_jobs()
    if planned["job_id"] is None:
        return {}
    return workspaces.jobs.job(planned["job_id"]).counters


def test_each_deleting_regulation_is_queued_once_across_pages_and_runs(
    local_endpoints, sb, sensitive, monkeypatch, queue, run_jobs, workspaces
):
    with standin() as api:
        opt_in(sb, sensitive, api, monkeypatch)
        function = lambda_function("RegulationsFunction")
        with_pages = __import__("segment_bridge.privacy.regulations", fromlist=["PAGE_COUNT"])
        monkeypatch.setattr(with_pages, "PAGE_COUNT", 2)  # three pages of the stand-in's six
        first = hourly(function, run_jobs, workspaces)
        assert queued_subjects(queue) == EXPECTED
        assert first["deletes_queued"] == 4
        assert first["regulations_listed"] == 6
        assert len(api.requests) == 3
        assert all(r["pagination.count"] == "2" for r in api.requests)

        again = hourly(function, run_jobs, workspaces)  # the same list again: nothing new
        assert again["deletes_queued"] == 0
        assert queue.messages() == []
        api.regulations.append(regulation("reg-7", ["user-7"], CREATED.format(7)))
        assert hourly(function, run_jobs, workspaces)["deletes_queued"] == 1
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
    local_endpoints, sb, sensitive, monkeypatch, queue, caplog, run_jobs, workspaces
):
    with standin() as api:
        opt_in(sb, sensitive, api, monkeypatch, token="sgp_wrong-token-000000000000000")
        refused = sb("deletions", "poll", WS)
        assert refused.status == 1
        assert refused.error["code"] == "public_api_token_refused"
        assert "deletions token" in refused.error["message"]

        function = lambda_function("RegulationsFunction")
        assert hourly(function, run_jobs, workspaces)["polls_refused"] == 1
        assert any(getattr(r, "workspace_id", None) == WS for r in caplog.records)
        with pytest.raises(Exception, match="refused 1 workspace token"):  # the next run fails: the alarm
            function.invoke({})
        assert api.refused_unauthorized == 2
        run_jobs()
        assert api.refused_unauthorized == 3  # and the workspace is polled again meanwhile
        assert queue.messages() == []


def test_unset_stops_the_polling_and_deletes_the_token(
    local_endpoints, sb, sensitive, monkeypatch, run_jobs, workspaces
):
    with standin() as api:
        opt_in(sb, sensitive, api, monkeypatch)
        assert sb("deletions", "token", WS, "--unset").json == {"workspace_id": WS, "polling": False}
        assert sb("deletions", "poll", WS).error["code"] == "not_found"
        assert lambda_function("RegulationsFunction").invoke({})["workspaces"] == 0
        assert run_jobs() == 0
        assert api.requests == []


def test_the_hourly_run_only_plans_and_a_slow_workspace_does_not_hold_up_the_others(
    local_endpoints, sb, sensitive, monkeypatch, queue, workspaces
):
    """The RegulationsFunction calls Segment not at all: it plans one poll task per polling workspace on
    the JobsQueue. A worker whose time runs out in the middle of a workspace's listing (three pages)
    stops before its next request and sends the task again; the other workspace is polled meanwhile by
    another worker, and when the slow one's task runs again it lists again and queues nothing twice.
    Each workspace's deletes are queued exactly once, and the job ends done with its tasks removed."""
    import json

    import boto3

    from bridge_dev.events import SIGNED_WORKSPACE_ID as OTHER
    from segment_bridge.jobs.engine import run_task
    from segment_bridge.jobs.fleet import FINISHERS, KINDS

    with standin() as api:
        opt_in(sb, sensitive, api, monkeypatch)
        monkeypatch.setattr("sys.stdin", __import__("io").StringIO(TOKEN + "\n"))
        assert sb("deletions", "token", OTHER, "--endpoint", api.url, "--token-stdin").status == 0
        monkeypatch.setattr("segment_bridge.privacy.regulations.PAGE_COUNT", 2)  # three pages each

        planned = lambda_function("RegulationsFunction").invoke({})
        assert api.requests == []  # nothing polled in the scheduled run
        assert planned["workspaces"] == 2
        job = workspaces.jobs.job(planned["job_id"])
        assert (job.kind, job.counters["tasks_total"]) == ("regulations", 2)

        sqs, url = boto3.client("sqs"), workspaces.jobs.queue_url
        runs: list[tuple[str, str]] = []
        for n in range(10):
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", [])
            if not got:
                break
            task = workspaces.jobs.task(job.job_id, json.loads(got[0]["Body"])["task"])
            limit = len(api.requests) + 2 if n == 0 else None  # the first worker: out of time after 2 pages

            def out_of_time(limit: int | None = limit) -> bool:
                return limit is not None and len(api.requests) >= limit

            outcome = run_task(
                got[0]["Body"],
                workspaces.jobs,
                workspaces,
                out_of_time,
                KINDS,
                FINISHERS,
            )
            runs.append((task.spec["workspace"] if task else "?", outcome.status))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])

    slow = runs[0][0]
    assert runs == [(slow, "continues"), (({WS, OTHER} - {slow}).pop(), "done"), (slow, "done")]
    per_workspace: dict[str, list[tuple[str, str]]] = {}
    for body in queue.messages():
        envelope, events = __import__("segment_bridge.envelope", fromlist=["unpack"]).unpack(body)
        per_workspace.setdefault(envelope.workspaceId, []).extend(
            (envelope.requestId, e["userId"]) for e in events
        )
    assert {ws: sorted(found) for ws, found in per_workspace.items()} == {WS: EXPECTED, OTHER: EXPECTED}
    record = workspaces.jobs.job(job.job_id)
    assert (record.state, record.counters["deletes_queued"]) == ("done", 8)
    assert workspaces.jobs.task(job.job_id, task_id_of_poll(slow)) is None  # the tasks are gone


def task_id_of_poll(workspace_id: str) -> str:
    from segment_bridge.jobs.engine import task_id_of

    return task_id_of("poll", workspace_id)


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
