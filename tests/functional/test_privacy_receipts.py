"""Privacy requests reach us from every door and each leaves a receipt until it is finished (issue 25;
docs/privacy-receipts.md), on moto with the template's resources."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from bridge_dev.events import DEMO_API_KEY, bearer, http_event
from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from bridge_dev.runtime import lambda_sqs_event
from segment_bridge.envelope import unpack
from tests.conftest import lambda_function
from tests.functional.conftest import event

T1 = "2020-01-01T10:00:00.000Z"
RECEIPT_ATTRIBUTES = {
    "pk",
    "sk",
    "workspace_id",
    "entity",
    "deleted_at",
    "received_at",
    "source",
    "request_id",
    "state",
    "erased_at",
    "purged_at",
    "updated_at",
    "gsi1pk",
    "gsi1sk",
}


@pytest.fixture
def drain(aws, workspaces):
    """Every message on the IngestQueue through the ProcessorFunction (as its event source mapping would
    deliver them); returns the bodies it applied."""
    function = lambda_function("ProcessorFunction")
    sqs = boto3.client("sqs")
    url = aws.queue_urls["IngestQueue"]

    def run() -> list[str]:
        bodies = []
        while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3).get("Messages", []):
            answer = function.invoke(lambda_sqs_event(aws.queue_arns["IngestQueue"], got))
            assert answer == {"batchItemFailures": []}
            for message in got:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                bodies.append(message["Body"])
        return bodies

    return run


@pytest.fixture
def processed(processor):
    """A user with a profile, history and a linked anonymous id."""
    processor(
        [
            event("identify", "i1", T1, anonymousId="anon-1", traits={"email": "gone@example.com"}),
            event("track", "t1", T1, event="Signed Up"),
        ],
        message_id="seed",
    )


def post(ingest, body: Any, path: str = "/v1/batch", agent: str = "python-requests/2.32") -> Any:
    return ingest(http_event(path, json.dumps(body), headers={**bearer(DEMO_API_KEY), "user-agent": agent}))


def receipt_items(aws) -> list[dict[str, Any]]:
    return boto3.resource("dynamodb").Table(aws.tables["DeletionsTable"]).scan()["Items"]


@pytest.fixture
def purge(sb, run_jobs):
    """`segment-bridge purge WS` as an operator runs it, its job run by the JobsFunction's workers: the
    job as `jobs show` gives it (None when nothing was listed)."""

    def run() -> Any:
        planned = sb("purge", WS, "--no-wait").json
        if planned["job_id"] is None:
            return None
        run_jobs()
        return sb("jobs", "show", planned["job_id"]).json

    return run


def test_the_products_backend_deletes_a_user_over_the_http_api_with_the_workspace_key(
    ingest, drain, processed, workspaces, sb
):
    answer = post(ingest, {"type": "delete", "userId": "user-1"})
    assert answer.status == 200
    assert answer.body["accepted"] == 1
    drain()

    assert workspaces.read_profile(WS, "U", "user-1") is None
    assert workspaces.read_history(WS, "U", "user-1") == []
    [receipt] = sb("deletions", "show", WS, "user-1").json
    assert (receipt["state"], receipt["source"], receipt["kind"]) == ("erased", "api", "user")
    assert receipt["erased_at"]
    assert receipt["purged_at"] is None


def test_a_webhook_delete_is_received_then_erased_then_purged_and_its_receipt_holds_ids_and_times_only(
    ingest, drain, processed, sb, aws, purge
):
    post(ingest, [{"type": "delete", "userId": "user-1", "timestamp": T1}], "/v1/segment", "Segment.io/1.0")
    drain()
    [erased] = sb("deletions", "list", WS, "--pending").json["receipts"]
    assert (erased["state"], erased["source"]) == ("erased", "segment")

    purged = purge()
    assert (purged["state"], purged["receipts_purged"]) == ("done", 1)
    [receipt] = sb("deletions", "show", WS, "user-1").json
    assert receipt["state"] == "purged"
    assert receipt["received_at"] <= receipt["erased_at"] <= receipt["purged_at"].replace("+00:00", "Z")
    assert sb("deletions", "list", WS, "--pending").json["receipts"] == []
    [item] = receipt_items(aws)
    assert set(item) == RECEIPT_ATTRIBUTES  # no trait, no email: the ids and the times
    assert "gone@example.com" not in json.dumps(item, default=str)


def test_a_delete_delivered_again_keeps_one_receipt_with_its_first_arrival(ingest, drain, processed, sb):
    body = [{"type": "delete", "userId": "user-1", "timestamp": T1, "messageId": "del-1"}]
    post(ingest, body, "/v1/segment", "Segment (Actions)")
    drain()
    first = sb("deletions", "show", WS, "user-1").json
    post(ingest, body, "/v1/segment", "Segment (Actions)")  # Segment's retry
    drain()
    assert sb("deletions", "show", WS, "user-1").json == first


def test_users_delete_queues_what_a_segment_delete_would_and_the_user_is_erased(
    drain, processed, sb, workspaces
):
    done = sb("users", "delete", WS, "user-1", "--anonymous-id", "anon-9").json
    assert done["queued"] == 2
    [body] = drain()
    envelope, events = unpack(body)
    assert (envelope.workspaceId, envelope.source) == (WS, "operator")
    assert [(e["type"], e.get("userId"), e.get("anonymousId")) for e in events] == [
        ("delete", "user-1", "anon-9"),
        ("delete", None, "anon-9"),
    ]
    assert all(e["messageId"] and e["receivedAt"] and e["timestamp"] for e in events)  # intake's enrichment
    assert workspaces.read_profile(WS, "U", "user-1") is None
    assert workspaces.read_profile(WS, "A", "anon-1") is None  # its linked id, by the tombstone rules
    [user] = sb("deletions", "show", WS, "user-1").json
    [anonymous] = sb("deletions", "show", WS, "anon-9", "--anonymous").json
    assert {user["source"], anonymous["source"]} == {"operator"}
    assert {user["state"], anonymous["state"]} == {"erased"}


def test_a_purge_between_the_erase_and_its_receipt_still_leaves_the_receipt_purged(
    ingest, drain, processed, sb, monkeypatch, purge
):
    """The purge takes the user off its list before the processor marks the receipt erased: the receipt
    is not purged by that run (its erase was not recorded), and the next purge finishes it."""
    from segment_bridge.privacy import receipts

    original = receipts.Receipts.erased
    purges: list[Any] = []

    def purge_first(self: Any) -> None:
        purges.append(purge())
        original(self)

    monkeypatch.setattr(receipts.Receipts, "erased", purge_first)
    post(ingest, {"type": "delete", "userId": "user-1"})
    drain()
    monkeypatch.setattr(receipts.Receipts, "erased", original)
    assert purges[0]["state"] == "done"  # a purge job of the user ran to its end
    assert purges[0]["receipts_purged"] == 0
    assert sb("deletions", "show", WS, "user-1").json[0]["state"] == "erased"

    assert purge()["receipts_purged"] == 1
    assert sb("deletions", "show", WS, "user-1").json[0]["state"] == "purged"


def _table_items(aws, names: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    client = boto3.client("dynamodb")
    return {
        name: [
            i
            for page in client.get_paginator("scan").paginate(TableName=aws.tables[name])
            for i in page["Items"]
        ]
        for name in names
    }


def _restore(aws, snapshot: dict[str, list[dict[str, Any]]]) -> None:
    """The tables as they were at `snapshot` (what a point-in-time restore gives): today's items gone, the
    snapshot's put back."""
    client = boto3.client("dynamodb")
    for name, items in _table_items(aws, tuple(snapshot)).items():
        for stored in items:
            client.delete_item(TableName=aws.tables[name], Key={"pk": stored["pk"], "sk": stored["sk"]})
    for name, items in snapshot.items():
        for stored in items:
            client.put_item(TableName=aws.tables[name], Item=stored)


def test_a_restore_to_before_a_delete_resurrects_the_user_and_reapply_erases_it_again(
    ingest, drain, processed, sb, workspaces, aws, purge
):
    data_tables = ("ProfilesTable", "EventsTable")
    before_delete = _table_items(aws, data_tables)
    post(ingest, {"type": "delete", "userId": "user-1"})
    drain()
    assert purge()["receipts_purged"] == 1
    assert workspaces.read_profile(WS, "U", "user-1") is None

    _restore(aws, before_delete)  # PITR of the data tables; the DeletionsTable is not restored
    assert workspaces.read_profile(WS, "U", "user-1") is not None  # resurrected, unseen but for receipts
    assert [h["name"] for h in workspaces.read_history(WS, "U", "user-1")] == ["Signed Up"]

    assert sb("deletions", "reapply", WS, "--since", "2000-01-01").json["reapplied"] == 1
    drain()
    assert workspaces.read_profile(WS, "U", "user-1") is None
    assert workspaces.read_history(WS, "U", "user-1") == []
    assert workspaces.read_profile(WS, "A", "anon-1") is None
    [receipt] = sb("deletions", "show", WS, "user-1").json
    assert receipt["reapplied_at"]
    assert receipt["state"] == "purged"

    again = workspaces.read_profile(WS, "U", "user-1")
    assert sb("deletions", "reapply", WS).json["reapplied"] == 1  # without a restore: a repeat, nothing
    drain()
    assert workspaces.read_profile(WS, "U", "user-1") == again


def test_deletions_of_an_unknown_workspace_or_subject_are_not_found(sb):
    assert sb("deletions", "list", "ws_nope").error["code"] == "not_found"
    assert sb("deletions", "show", WS, "nobody").error["code"] == "not_found"
    assert sb("users", "delete", "ws_nope", "user-1").error["code"] == "not_found"


HOSTILE_ID = "user-\x1b[2J\r\u202eevil\nline"
"""An id a terminal would act on (ESC's CSI, CR, a bidi override, a newline) if it were printed raw."""


def test_an_id_is_shown_escaped_by_users_delete_and_deletions_and_tables_keep_their_shape(
    drain, sb, workspaces
):
    queued = sb("users", "delete", WS, HOSTILE_ID, json_flag=False)
    drain()
    listed = sb("deletions", "list", WS, json_flag=False)
    shown = sb("deletions", "show", WS, HOSTILE_ID, json_flag=False)
    for run in (queued, listed, shown):
        assert run.status == 0
        assert not any(char in run.out for char in "\x1b\r\u202e"), run.out
        assert "user-\\x1b[2J\\x0d\\u202eevil\\x0aline" in run.out
    assert len(listed.out.rstrip("\n").split("\n")) == 2  # the header and the one receipt's line
    assert sb("deletions", "show", WS, HOSTILE_ID).json[0]["id"] == HOSTILE_ID  # JSON keeps it as it is


@pytest.fixture
def receipts_read(aws, boto_session):
    """The receipts DynamoDB answers from the DeletionsTable, each call's Limit beside them."""
    table = aws.tables["DeletionsTable"]
    read: list[dict[str, Any]] = []

    def asked(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") == table:
            context["receipts_limit"] = params.get("Limit")

    def answered(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if "receipts_limit" in context:
            read.append({"limit": context["receipts_limit"], "items": len(parsed.get("Items", []))})

    boto_session.events.register("provide-client-params.dynamodb.*", asked)
    boto_session.events.register("after-call.dynamodb.*", answered)
    yield read
    boto_session.events.unregister("provide-client-params.dynamodb.*", asked)
    boto_session.events.unregister("after-call.dynamodb.*", answered)


def test_deletions_list_pages_newest_first_reading_only_what_it_shows(workspaces, sb, receipts_read):
    """Given 120 receipts, `deletions list` shows the newest 50 by default and `--limit 7` the newest 7,
    each page reading the receipts it shows and one more (Limit on the Query, never the whole index);
    `--next` goes on where the page stopped, with no receipt twice and none left out, and the last page
    says nothing of more, in the text and in --json alike."""
    from segment_bridge.receipts import Requested

    received = [f"2026-03-01T00:{n // 60:02d}:{n % 60:02d}.000Z" for n in range(120)]
    workspaces.receipts.received(
        WS, [Requested(f"U#user-{n}", T1, at, "operator", f"r{n}") for n, at in enumerate(received)]
    )
    newest = sorted(received, reverse=True)

    page = sb("deletions", "list", WS).json
    assert [r["received_at"] for r in page["receipts"]] == newest[:50]
    assert receipts_read == [{"limit": 51, "items": 51}]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        receipts_read.clear()
        args = ["deletions", "list", WS, "--limit", "7", *(["--next", cursor] if cursor else [])]
        page = sb(*args).json
        text = sb(*args, json_flag=False).out
        seen += [r["received_at"] for r in page["receipts"]]
        assert sum(call["items"] for call in receipts_read) <= 2 * 8
        assert all(call["limit"] <= 8 for call in receipts_read)
        cursor, pages = page["next"], pages + 1
        if cursor is None:
            assert page["more"] is None
            assert "More:" not in text
            break
        assert page["more"] == f"segment-bridge deletions list {WS} --limit 7 --next {cursor}"
        assert text.rstrip("\n").endswith(f"More: {page['more']}")
    assert seen == newest
    assert pages == 18  # 17 pages of 7 and one of 1


def test_deletions_list_pending_pages_over_purged_receipts_and_a_bad_cursor_is_one_clear_line(workspaces, sb):
    """--pending shows only receipts not yet purged, a full page at a time even where purged ones lie
    between them; a --next that is not a cursor of this workspace's list is refused in one line."""
    from segment_bridge.receipts import Requested

    requests = [
        Requested(f"U#user-{n}", T1, f"2026-03-01T00:00:{n:02d}.000Z", "operator", f"r{n}") for n in range(12)
    ]
    workspaces.receipts.received(WS, requests)
    purged = {f"U#user-{n}" for n in range(12) if n % 3}
    workspaces.receipts.erased(WS, [r for r in requests if r.key in purged])
    assert workspaces.receipts.purged(WS, dict.fromkeys(purged, T1)) == 8

    first = sb("deletions", "list", WS, "--pending", "--limit", "3").json
    assert [r["id"] for r in first["receipts"]] == ["user-9", "user-6", "user-3"]
    rest = sb("deletions", "list", WS, "--pending", "--limit", "3", "--next", first["next"]).json
    assert ([r["id"] for r in rest["receipts"]], rest["next"]) == (["user-0"], None)

    for bad in ("nope", first["next"][:-3], "e30", "W10"):
        refused = sb("deletions", "list", WS, "--next", bad, json_flag=False)
        assert refused.status != 0
        assert "--next" in refused.err
        assert len(refused.err.strip().splitlines()) == 1
    other = sb("deletions", "list", "ws_signed", "--next", first["next"], json_flag=False)
    assert other.status != 0
    assert "--next" in other.err
