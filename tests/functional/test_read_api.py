"""The read API (docs/read-api.md), asked two ways with the same answers: over HTTP as API Gateway serves
the ReaderFunction (bridge_dev.apigw on the template's routes), and through the Python client over
DynamoDB (segment_bridge.read.client). Every test but the authentication ones runs both."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from bridge_dev.events import DEMO_API_KEY
from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from bridge_dev.events import SIGNED_WORKSPACE_ID as OTHER_WS
from tests.conftest import lambda_function
from tests.functional.conftest import event

T0, T1, T2, T3 = (
    "2026-01-01T09:00:00.000Z",
    "2026-01-01T10:00:00.000Z",
    "2026-01-02T10:00:00.000Z",
    "2026-01-03T10:00:00.000Z",
)
Reply = tuple[int, dict[str, Any]]


@pytest.fixture
def tokens(workspaces):
    """A live read token of each demo workspace."""
    from segment_bridge.keys import new_read_token

    return {ws: workspaces.issue_read_token(ws, new_read_token()).api_key for ws in (WS, OTHER_WS)}


@pytest.fixture
def http_api(aws, tokens):
    """GET on the template's read routes, as API Gateway serves them, with a Basic header of `token`."""
    from werkzeug.test import Client

    from bridge_dev.apigw import HttpApi, http_routes
    from bridge_dev.template import load_template

    function = lambda_function("ReaderFunction")
    routes = {r: function for r, lid in http_routes(load_template()).items() if lid == "ReaderFunction"}
    client = Client(HttpApi(routes))

    def get(path: str, params: dict[str, str] | None = None, authorization: str | None = None) -> Any:
        headers = {"Authorization": authorization} if authorization is not None else {}
        return client.get(path, query_string=params or {}, headers=headers)

    return get


def basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"{token}:".encode()).decode()


@pytest.fixture(params=["http", "client"])
def read(request, aws, tokens, http_api) -> Callable[..., Reply]:
    """read(external_id, facet, collection="users", workspace=WS, **params) -> (status, body)."""
    if request.param == "http":

        def over_http(
            external_id: str, facet: str, collection: str = "users", workspace: str = WS, **params: Any
        ) -> Reply:
            profile = quote(external_id, safe=":")
            path = f"/v1/spaces/{workspace}/collections/{collection}/profiles/{profile}/{facet}"
            answer = http_api(path, {k: str(v) for k, v in params.items()}, basic(tokens[workspace]))
            return answer.status_code, json.loads(answer.get_data())

        return over_http

    from segment_bridge.errors import BridgeError
    from segment_bridge.read.api import error_body
    from segment_bridge.read.client import ProfileClient

    client = ProfileClient(
        profiles_table=aws.tables["ProfilesTable"],
        events_table=aws.tables["EventsTable"],
        workspaces_table=aws.tables["WorkspacesTable"],
    )

    def through_client(
        external_id: str, facet: str, collection: str = "users", workspace: str = WS, **params: Any
    ) -> Reply:
        try:
            return 200, client.get(
                workspace, collection, external_id, facet, **{k: str(v) for k, v in params.items()}
            )
        except BridgeError as error:
            return error.status, error_body(error)

    return through_client


@pytest.fixture
def reader_story(processor):
    """user-1 browsed as anon-1 (T0), identified with it (T1), was aliased from anon-2 (T2), read twice
    and joined group g-1; anon-9 only browsed."""
    processor(
        [
            event("track", "v1", T0, user=None, anonymousId="anon-1", event="Visited"),
            event(
                "identify",
                "i1",
                T1,
                anonymousId="anon-1",
                traits={"plan": "pro", "email": "ada@example.com", "language": "de", "seats": 3},
            ),
            event("alias", "al", T2, previousId="anon-2"),
            event("track", "v2", T1, user=None, anonymousId="anon-2", event="Visited"),
            event("track", "r1", T2, event="Read", properties={"n": 1}),
            event("track", "r2", T3, event="Read", properties={"n": 2}),
            event("group", "g1", T2, groupId="g-1", traits={"name": "Readers"}),
            event("track", "x9", T1, user=None, anonymousId="anon-9", event="Visited"),
        ]
    )


# --- answers -----------------------------------------------------------------------------------------


def test_traits_answer_for_the_user_asked_by_its_user_id_or_a_linked_anonymous_id(read, reader_story):
    for asked in ("user_id:user-1", "anonymous_id:anon-1", "anonymous_id:anon-2"):
        status, body = read(asked, "traits", limit=200)
        assert status == 200, body
        assert body["traits"] == {"plan": "pro", "email": "ada@example.com", "language": "de", "seats": 3}
        assert body["cursor"]["has_more"] is False
    status, body = read("anonymous_id:anon-9", "traits")  # not linked: its own profile
    assert (status, body["traits"]) == (200, {})


def test_traits_page_by_cursor_filter_by_include_and_say_when_with_verbose(read, reader_story):
    seen: dict[str, Any] = {}
    status, body = read("user_id:user-1", "traits", limit=3)
    while True:
        assert status == 200
        assert len(body["traits"]) <= 3
        assert not set(body["traits"]) & set(seen)
        seen |= body["traits"]
        if not body["cursor"]["has_more"]:
            break
        status, body = read("user_id:user-1", "traits", limit=3, next=body["cursor"]["next"])
    assert set(seen) == {"plan", "email", "language", "seats"}

    status, body = read("user_id:user-1", "traits", include="plan,nope", verbose="true")
    assert body["traits"] == {
        "plan": {"value": "pro", "source_id": None, "updated_at": T1, "message_id": "i1"}
    }


def test_external_ids_list_the_user_its_linked_ids_and_its_channels(read, reader_story):
    status, body = read("anonymous_id:anon-1", "external_ids")
    assert status == 200
    assert [(e["type"], e["id"]) for e in body["data"]] == [
        ("user_id", "user-1"),
        ("anonymous_id", "anon-1"),
        ("email", "ada@example.com"),
        ("anonymous_id", "anon-2"),
    ]
    assert all(e["collection"] == "users" and e["encoding"] == "none" for e in body["data"])
    status, body = read("user_id:user-1", "external_ids", include="anonymous_id")
    assert [e["id"] for e in body["data"]] == ["anon-1", "anon-2"]


def test_events_are_newest_first_paged_by_cursor_with_linked_ids_history_on_request(read, reader_story):
    pages, status, body = [], *read("user_id:user-1", "events", limit=2)
    while True:
        assert status == 200, body
        pages.append([(e["message_id"], e["external_ids"][0]["id"]) for e in body["data"]])
        if not body["cursor"]["has_more"]:
            break
        status, body = read("user_id:user-1", "events", limit=2, next=body["cursor"]["next"])
    assert pages == [[("r2", "user-1"), ("r1", "user-1")], [("v2", "anon-2"), ("v1", "anon-1")]]

    status, body = read("user_id:user-1", "events", linked="false")
    assert [e["message_id"] for e in body["data"]] == ["r2", "r1"]
    status, body = read("user_id:user-1", "events", sort="asc", exclude="Read")
    assert [e["message_id"] for e in body["data"]] == ["v1", "v2"]
    status, body = read("user_id:user-1", "events", include="Read", limit=1)
    [only] = body["data"]
    assert (only["event"], only["type"], only["properties"], only["timestamp"]) == (
        "Read",
        "track",
        {"n": 2},
        T3,
    )


def test_metadata_counts_with_and_without_linked_ids_and_links_to_groups(read, reader_story):
    status, body = read("user_id:user-1", "metadata", verbose="true")
    assert status == 200
    metadata = body["metadata"]
    assert (metadata["created_at"], metadata["updated_at"]) == (T1, T3)
    assert metadata["counts"] == {"Read": 2}
    assert metadata["counts_with_linked"] == {"Read": 2, "Visited": 2}
    assert metadata["linked"] == {"anon-1": {"counts": {"Visited": 1}}, "anon-2": {"counts": {"Visited": 1}}}
    assert metadata["preferences"] == {"language": "de"}

    status, body = read("user_id:user-1", "links")
    assert [(link["to_collection"], link["external_ids"][0]["id"]) for link in body["data"]] == [
        ("accounts", "g-1")
    ]


def test_a_group_answers_its_traits_and_members(read, reader_story):
    status, body = read("group_id:g-1", "traits", collection="accounts")
    assert (status, body["traits"]) == (200, {"name": "Readers"})
    status, body = read("group_id:g-1", "links", collection="accounts")
    assert [
        (link["to_collection"], link["external_ids"][0]["type"], link["external_ids"][0]["id"])
        for link in body["data"]
    ] == [("users", "user_id", "user-1")]
    status, body = read("group_id:g-1", "external_ids", collection="accounts")
    assert [(e["type"], e["id"], e["collection"]) for e in body["data"]] == [("group_id", "g-1", "accounts")]


def test_a_deleted_user_and_its_linked_ids_are_not_found_and_one_who_came_back_is(
    read, reader_story, processor
):
    processor([event("delete", "del", T3)], message_id="delete")
    for asked in ("user_id:user-1", "anonymous_id:anon-1", "anonymous_id:anon-2"):
        status, body = read(asked, "traits")
        assert status == 404
        assert body["code"] == body["error"]["code"] == "not_found"
    processor(
        [event("identify", "back", "2026-01-04T10:00:00.000Z", traits={"plan": "free"})], message_id="back"
    )
    status, body = read("user_id:user-1", "traits")
    assert (status, body["traits"]) == (200, {"plan": "free"})
    status, body = read("user_id:user-1", "metadata")
    assert body["metadata"]["counts_with_linked"] == {}


def test_a_user_whose_erase_is_under_way_is_not_found(read, reader_story, aws):
    table = boto3.resource("dynamodb").Table(aws.tables["ProfilesTable"])
    table.put_item(Item={"pk": f"WS#{WS}#U#user-1", "sk": "DELETED", "deleted_at": T3, "status": "erasing"})
    assert read("user_id:user-1", "traits")[0] == 404
    assert read("anonymous_id:anon-1", "traits")[0] == 404  # its link leads to a user being erased
    assert read("anonymous_id:anon-9", "traits")[0] == 200


def test_bookkeeping_items_are_never_answered(read, reader_story, aws, processor):
    processor(
        [event("delete", "del", T3, user="user-2"), event("track", "u2", T2, user="user-2", event="X")],
        message_id="d2",
    )
    table = boto3.resource("dynamodb").Table(aws.tables["ProfilesTable"])
    table.put_item(
        Item={
            "pk": f"WS#{WS}#U#user-1",
            "sk": "IDGONE#gone-1",
            "gsi1pk": f"WS#{WS}#U#user-1",
            "gsi1sk": "IDGONE#gone-1",
        }
    )
    status, body = read("user_id:user-1", "external_ids", limit=100, verbose="true")
    assert status == 200
    assert "gone-1" not in json.dumps(body)
    for asked in ("user_id:DELETED_IDS", "user_id:PURGE", "anonymous_id:PURGE", "user_id:user-2"):
        assert read(asked, "traits")[0] == 404


def test_links_beyond_the_anonymous_ids_limit_are_refused_and_never_followed(read, processor):
    """Segment's default, 5 anonymous ids a week: the 6th and 7th identify link nothing."""
    processor(
        [
            event("identify", f"i{n}", f"2026-01-0{1 + n // 3}T1{n}:00:00.000Z", anonymousId=f"anon-{n}")
            for n in range(7)
        ]
        + [event("track", "late", T1, user=None, anonymousId="anon-6", event="Visited")]
    )
    status, body = read("user_id:user-1", "external_ids", include="anonymous_id", verbose="true")
    assert [(e["id"], e.get("refused", False)) for e in body["data"]] == [
        *[(f"anon-{n}", False) for n in range(5)],
        ("anon-5", True),
        ("anon-6", True),
    ]
    status, body = read("anonymous_id:anon-6", "metadata")  # its own profile, not user-1's
    assert body["metadata"]["counts"] == {"Visited": 1}
    status, body = read("user_id:user-1", "metadata")
    assert (status, body["metadata"]["counts_with_linked"]) == (200, {})


# --- bad requests --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("external_id", "facet", "params", "code"),
    [
        ("email:ada@example.com", "traits", {}, "invalid_id_type"),
        ("group_id:g-1", "traits", {}, "invalid_id_type"),
        ("user-1", "traits", {}, "invalid_external_id"),
        ("user_id:", "traits", {}, "invalid_external_id"),
        ("user_id:user-1", "traits", {"limit": "0"}, "invalid_limit"),
        ("user_id:user-1", "traits", {"limit": "201"}, "invalid_limit"),
        ("user_id:user-1", "events", {"limit": "ten"}, "invalid_limit"),
        ("user_id:user-1", "events", {"next": "not-a-cursor"}, "invalid_cursor"),
        ("user_id:user-1", "traits", {"next": base64.urlsafe_b64encode(b"[1,2]").decode()}, "invalid_cursor"),
        ("user_id:user-1", "events", {"sort": "up"}, "invalid_parameter"),
        ("user_id:user-1", "traits", {"verbose": "yes"}, "invalid_parameter"),
        ("user_id:user-1", "traits", {"class": "audience"}, "invalid_parameter"),
        ("user_id:user-1", "metadata", {"limit": "5"}, "invalid_parameter"),
    ],
)
def test_a_bad_request_gets_a_400_naming_what_is_wrong(read, reader_story, external_id, facet, params, code):
    status, body = read(external_id, facet, **params)
    assert status == 400
    assert body["code"] == code
    assert body["message"]
    assert body["error"] == {"code": code, "message": body["message"]}


# --- authentication (HTTP only) --------------------------------------------------------------------------

ROUTES = [
    (collection, facet)
    for collection in ("users", "accounts")
    for facet in ("traits", "external_ids", "events", "links", "metadata")
]


@pytest.fixture
def refusals(workspaces, tokens):
    from segment_bridge.keys import new_read_token

    revoked = workspaces.issue_read_token(WS, new_read_token())
    workspaces.revoke_read_token(WS, revoked.key_id)
    return {
        "no token": None,
        "a write key": basic(DEMO_API_KEY),
        "a write key as Bearer": f"Bearer {DEMO_API_KEY}",
        "another workspace's read token": basic(tokens[OTHER_WS]),
        "a revoked read token": basic(revoked.api_key),
        "not base64": "Basic !!!",
        "another scheme": f"Token {tokens[WS]}",
    }


@pytest.mark.parametrize(("collection", "facet"), ROUTES)
def test_every_route_refuses_every_wrong_credential_with_the_same_401(
    http_api, refusals, tokens, reader_story, collection, facet
):
    external_id = "group_id:g-1" if collection == "accounts" else "user_id:user-1"
    path = f"/v1/spaces/{WS}/collections/{collection}/profiles/{external_id}/{facet}"
    bodies = set()
    for name, authorization in refusals.items():
        answer = http_api(path, authorization=authorization)
        assert answer.status_code == 401, name
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
        bodies.add(answer.get_data())
    assert len(bodies) == 1
    assert json.loads(bodies.pop())["code"] == "unauthorized"
    assert http_api(path, authorization=basic(tokens[WS])).status_code == 200


def test_a_read_token_is_never_accepted_for_sending_events(ingest, tokens):
    from bridge_dev.events import http_event

    body = json.dumps({"batch": [{"type": "track", "userId": "u", "event": "E"}]})
    for authorization in (basic(tokens[WS]), f"Bearer {tokens[WS]}"):
        answer = ingest(http_event("/v1/batch", body, headers={"authorization": authorization}))
        assert answer.status == 401
    answer = ingest(http_event("/v1/batch", body, query={"writeKey": tokens[WS]}))
    assert answer.status == 401
