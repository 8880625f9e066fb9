"""Authentication under attack (issue #7): who can put events into a workspace, and what a refusal tells.

On moto with the real `lambda_handler`. The rules demonstrated here (docs/ingest.md, "Authentication"):
- One credential decides, the first present of: Authorization (Bearer or Basic), ?writeKey=, the body's
  writeKey. The others are never looked up: a wrong or malformed first credential is a 401 even when a
  later one is right, and a right one is never redirected to another workspace by a later one.
- Every credential failure gets the same 401 body: nothing tells a missing key from an unknown, malformed
  or revoked one, or from another workspace's.
- X-Signature (a workspace with a shared secret) is HMAC-SHA1 over the raw body for one event or a
  `{"batch": ...}` body, and over the raw bytes of the first element only for a JSON array (Segment's
  Webhooks (Actions) batches): elements 1..n of an array are not covered.
- Keys are looked up by their SHA-256 and stored hashes compared with hmac.compare_digest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest

from bridge_dev.events import (
    DEMO_API_KEY,
    DEMO_WORKSPACE_ID,
    SIGNED_API_KEY,
    SIGNED_SHARED_SECRET,
    SIGNED_WORKSPACE_ID,
    http_event,
)
from segment_bridge.ingest.auth import sign
from segment_bridge.keys import hash_key, new_api_key
from segment_bridge.store.credentials import CredentialRepository
from tests.conftest import lambda_function
from tests.functional.conftest import Delivery

OTHER_WORKSPACE_ID = "ws_other"
UNKNOWN_KEY = "sbk_" + "A" * 43
EVENT = {"type": "track", "userId": "user-9", "event": "Key Tried", "messageId": "attack-1"}


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request(
    authorization: str | None = None,
    query: str | None = None,
    body_key: str | None = None,
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """POST /v1/segment with credentials in any of the three places (or none)."""
    all_headers = dict(headers or {})
    if authorization is not None:
        all_headers["authorization"] = authorization
    if body is None:
        body = json.dumps({**EVENT, "writeKey": body_key} if body_key is not None else EVENT)
    return http_event("/v1/segment", body, headers=all_headers, query={"writeKey": query} if query else None)


@pytest.fixture
def other_key(workspaces, sensitive) -> str:
    """A third workspace and its key: another customer's."""
    key = new_api_key()
    workspaces.create_workspace("Other", workspace_id=OTHER_WORKSPACE_ID)
    workspaces.issue_key(OTHER_WORKSPACE_ID, key)
    return key


@pytest.fixture
def no_credentials(deliver) -> Delivery:
    """The answer to a request without any credential: every credential failure must look like it."""
    return deliver(request())


# --- who gets in -----------------------------------------------------------------------------------

REFUSED = [
    pytest.param({}, id="no-key"),
    pytest.param({"authorization": f"Bearer {UNKNOWN_KEY}"}, id="wrong-key-bearer"),
    pytest.param({"authorization": basic(UNKNOWN_KEY)}, id="wrong-key-basic"),
    pytest.param({"query": UNKNOWN_KEY}, id="wrong-key-query"),
    pytest.param({"body_key": UNKNOWN_KEY}, id="wrong-key-body"),
    pytest.param({"authorization": f"Bearer {DEMO_API_KEY[:-1]}"}, id="right-key-minus-its-last-character"),
    pytest.param({"authorization": f"Bearer {DEMO_API_KEY}x"}, id="right-key-plus-a-character"),
    pytest.param({"authorization": f"Bearer {DEMO_API_KEY.upper()}"}, id="right-key-other-case"),
    pytest.param({"authorization": f"Bearer {hash_key(DEMO_API_KEY)}"}, id="the-stored-hash-as-key"),
    pytest.param({"authorization": "Bearer " + "k" * 10_000}, id="10k-character-key"),
    pytest.param({"authorization": "Bearer"}, id="bearer-without-token"),
    pytest.param({"authorization": "Bearer    "}, id="bearer-blank-token"),
    pytest.param({"authorization": f"Token {DEMO_API_KEY}"}, id="right-key-unknown-scheme"),
    pytest.param({"authorization": DEMO_API_KEY}, id="right-key-no-scheme"),
    pytest.param({"authorization": "Basic %%%not-base64"}, id="basic-bad-base64"),
    pytest.param({"authorization": "Basic " + base64.b64encode(b"\xff\xfe:").decode()}, id="basic-not-utf8"),
    pytest.param(
        {"authorization": "Basic " + base64.b64encode(UNKNOWN_KEY.encode()).decode()}, id="basic-no-colon"
    ),
    pytest.param({"authorization": "Basic "}, id="basic-empty"),
    pytest.param({"authorization": basic("")}, id="basic-empty-user"),
    pytest.param({"authorization": basic("", DEMO_API_KEY)}, id="basic-right-key-as-password"),
    pytest.param({"body_key": 42}, id="body-key-a-number"),
    pytest.param({"body_key": ""}, id="body-key-empty"),
    # the first credential decides: a right one later on never rescues a wrong or malformed first one
    pytest.param(
        {"authorization": f"Bearer {UNKNOWN_KEY}", "query": DEMO_API_KEY}, id="wrong-header-right-query"
    ),
    pytest.param(
        {"authorization": f"Bearer {UNKNOWN_KEY}", "body_key": DEMO_API_KEY}, id="wrong-header-right-body"
    ),
    pytest.param({"authorization": "Basic %%%", "body_key": DEMO_API_KEY}, id="malformed-header-right-body"),
    pytest.param({"query": UNKNOWN_KEY, "body_key": DEMO_API_KEY}, id="wrong-query-right-body"),
]


@pytest.mark.parametrize("credentials", REFUSED)
def test_credential_failures_are_one_identical_401_and_store_nothing(deliver, no_credentials, credentials):
    delivery = deliver(request(**credentials))
    assert (delivery.status, delivery.code) == (401, "unauthorized")
    assert delivery.answer.body == no_credentials.answer.body  # no oracle: one body for every failure
    assert delivery.answer.headers == no_credentials.answer.headers
    assert (delivery.queued, delivery.kept) == ([], [])


def test_the_401_body_names_no_workspace_key_or_reason(no_credentials):
    assert no_credentials.answer.body == {
        "code": "unauthorized",
        "message": "Missing or invalid credentials.",
    }


def test_a_revoked_key_is_401_once_the_auth_cache_expires(deliver, workspaces, monkeypatch):
    from segment_bridge.settings import get_settings

    monkeypatch.setenv("AUTH_CACHE_SECONDS", "0")  # every request looks the key up
    get_settings.cache_clear()
    assert deliver(request(f"Bearer {DEMO_API_KEY}")).status == 200
    (key_id,) = workspaces.get_workspace(DEMO_WORKSPACE_ID).key_ids
    workspaces.revoke_key(DEMO_WORKSPACE_ID, key_id)
    delivery = deliver(request(f"Bearer {DEMO_API_KEY}"))
    assert (delivery.status, delivery.code) == (401, "unauthorized")
    assert delivery.answer.body == deliver(request()).answer.body


def test_a_revoked_key_keeps_working_in_a_warm_container_until_the_cache_expires(deliver, workspaces):
    """The documented window (AuthCacheSeconds, 60 s by default): the price of no lookup per request."""
    assert deliver(request(f"Bearer {DEMO_API_KEY}")).status == 200
    (key_id,) = workspaces.get_workspace(DEMO_WORKSPACE_ID).key_ids
    workspaces.revoke_key(DEMO_WORKSPACE_ID, key_id)
    assert deliver(request(f"Bearer {DEMO_API_KEY}")).status == 200  # same container, within 60 s
    fresh = lambda_function("IngestFunction")  # a new container: nothing cached
    assert fresh.invoke(request(f"Bearer {DEMO_API_KEY}"))["statusCode"] == 401


LANDS = [
    pytest.param({"authorization": "other"}, OTHER_WORKSPACE_ID, id="other-workspace-key"),
    pytest.param({"authorization": "demo", "body_key": "other"}, DEMO_WORKSPACE_ID, id="header-beats-body"),
    pytest.param({"authorization": "demo", "query": "other"}, DEMO_WORKSPACE_ID, id="header-beats-query"),
    pytest.param(
        {"authorization": "other", "body_key": "demo"}, OTHER_WORKSPACE_ID, id="header-beats-body-2"
    ),
    pytest.param({"query": "other", "body_key": "demo"}, OTHER_WORKSPACE_ID, id="query-beats-body"),
    pytest.param({"body_key": "other"}, OTHER_WORKSPACE_ID, id="body-key-alone"),
    pytest.param(
        {"authorization": "demo", "body_key": UNKNOWN_KEY}, DEMO_WORKSPACE_ID, id="wrong-body-ignored"
    ),
]


@pytest.mark.parametrize(("where", "workspace"), LANDS)
def test_events_land_in_the_workspace_of_the_deciding_key_and_nowhere_else(
    deliver, other_key, where, workspace
):
    keys = {"demo": DEMO_API_KEY, "other": other_key}
    credentials = {place: keys.get(name, name) for place, name in where.items()}
    if "authorization" in credentials:
        credentials["authorization"] = f"Bearer {credentials['authorization']}"
    delivery = deliver(request(**credentials))
    assert delivery.status == 200
    assert delivery.workspaces == {workspace}
    assert [e["messageId"] for e in delivery.queued] == ["attack-1"]
    assert all("writeKey" not in e for e in delivery.queued)  # no key travels further


def test_each_workspaces_key_fills_only_its_own_workspace(deliver, other_key):
    mine = deliver(request(basic(DEMO_API_KEY)))
    theirs = deliver(request(basic(other_key)))
    assert (mine.workspaces, theirs.workspaces) == ({DEMO_WORKSPACE_ID}, {OTHER_WORKSPACE_ID})


def test_the_right_key_as_basic_user_without_a_colon_is_accepted(deliver):
    """RFC 7617 wants `user:password`; the colon carries no secret, so its absence is tolerated."""
    token = base64.b64encode(DEMO_API_KEY.encode()).decode()
    assert deliver(request(f"Basic {token}")).workspaces == {DEMO_WORKSPACE_ID}


# --- what X-Signature covers -----------------------------------------------------------------------

SIGNED = {"authorization": f"Bearer {SIGNED_API_KEY}"}


def events(n: int, tag: str = "orig") -> list[dict[str, Any]]:
    return [{**EVENT, "messageId": f"{tag}-{i}", "properties": {"i": i}} for i in range(n)]


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def signed(body: str, signed_part: str | bytes, secret: str = SIGNED_SHARED_SECRET) -> dict[str, Any]:
    part = signed_part.encode() if isinstance(signed_part, str) else signed_part
    return http_event("/v1/segment", body, headers={**SIGNED, "x-signature": sign(secret, part)})


def first_element_signed(batch: list[dict[str, Any]]) -> str:
    return sign(SIGNED_SHARED_SECRET, compact(batch[0]).encode())


@pytest.fixture
def signature_refused(deliver) -> Callable[[dict[str, Any]], Delivery]:
    def send(event: dict[str, Any]) -> Delivery:
        delivery = deliver(event)
        assert (delivery.status, delivery.code) == (401, "invalid_signature")
        assert (delivery.queued, delivery.kept) == ([], [])
        return delivery

    return send


def test_an_array_signature_covers_exactly_the_first_elements_raw_bytes(deliver, signature_refused):
    original = events(4)
    signature = first_element_signed(original)

    def send(batch: list[Any], text: str | None = None) -> Delivery:
        body = text if text is not None else compact(batch)
        return deliver(http_event("/v1/segment", body, headers={**SIGNED, "x-signature": signature}))

    assert send(original).status == 200

    # NOT covered: elements 1..n. Swapped for others, dropped, reordered or added to: still 200, and the
    # swapped-in events are what is queued. This is Segment's own limit (it signs the first event).
    swapped = [original[0], *events(3, tag="swapped")]
    delivery = send(swapped)
    assert delivery.workspaces == {SIGNED_WORKSPACE_ID}
    assert [e["messageId"] for e in delivery.queued] == ["orig-0", "swapped-0", "swapped-1", "swapped-2"]
    assert send(original[:1]).status == 200
    assert send([original[0], original[3], original[2], original[1]]).status == 200
    assert send([*original, *events(50, tag="added")]).answer.body["accepted"] == 54
    assert send(original, text=" [ \n" + compact(original)[1:]).status == 200  # whitespace before it

    # covered: the first element, byte for byte
    signature_refused(
        http_event(
            "/v1/segment", compact([original[1], original[0]]), headers={**SIGNED, "x-signature": signature}
        )
    )
    tampered = [{**original[0], "event": "Key Tried!"}, *original[1:]]
    signature_refused(
        http_event("/v1/segment", compact(tampered), headers={**SIGNED, "x-signature": signature})
    )
    spaced = "[" + json.dumps(original[0]) + "," + compact(original[1:])[1:]  # same JSON, other bytes
    signature_refused(http_event("/v1/segment", spaced, headers={**SIGNED, "x-signature": signature}))


def test_a_single_event_or_batch_object_signature_covers_the_whole_body(deliver, signature_refused):
    single = compact(EVENT)
    assert deliver(signed(single, single)).status == 200
    signature_refused(signed(compact({**EVENT, "event": "Other"}), single))

    batch = compact({"batch": events(3), "sentAt": "2026-01-01T00:00:00Z"})
    assert deliver(signed(batch, batch)).status == 200
    changed_last = compact(
        {"batch": [*events(2), *events(1, tag="swapped")], "sentAt": "2026-01-01T00:00:00Z"}
    )
    signature_refused(signed(changed_last, batch))


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(lambda body: sign(SIGNED_SHARED_SECRET, body + b" "), id="for-a-different-body"),
        pytest.param(lambda body: sign("not-the-secret", body), id="wrong-secret"),
        pytest.param(lambda body: sign(SIGNED_SHARED_SECRET[:-1], body), id="secret-minus-a-character"),
        pytest.param(
            lambda body: hmac.new(SIGNED_SHARED_SECRET.encode(), body, hashlib.sha256).hexdigest(),
            id="sha256",
        ),
        pytest.param(
            lambda body: base64.b64encode(
                hmac.new(SIGNED_SHARED_SECRET.encode(), body, hashlib.sha1).digest()
            ).decode(),
            id="base64-instead-of-hex",
        ),
        pytest.param(lambda body: sign(SIGNED_SHARED_SECRET, body)[:-1], id="truncated"),
        pytest.param(lambda body: "", id="empty"),
        pytest.param(lambda body: "0" * 40, id="zeros"),
    ],
)
def test_a_wrong_signature_is_401_and_the_answer_reveals_nothing_of_the_expected_one(
    signature_refused, signature
):
    body = compact(EVENT).encode()
    event = http_event("/v1/segment", body.decode(), headers={**SIGNED, "x-signature": signature(body)})
    delivery = signature_refused(event)
    expected = sign(SIGNED_SHARED_SECRET, body)
    assert expected not in json.dumps(delivery.answer.body)
    assert expected[:8] not in json.dumps(delivery.answer.body)


def test_every_mismatched_signature_gets_the_same_body_and_a_missing_one_is_named(deliver, signature_refused):
    body = compact(EVENT)
    answers = [
        signature_refused(http_event("/v1/segment", body, headers={**SIGNED, "x-signature": s})).answer.body
        for s in ("0" * 40, sign("x", body.encode()), sign(SIGNED_SHARED_SECRET, b"other"))
    ]
    assert answers[0] == answers[1] == answers[2]
    missing = signature_refused(http_event("/v1/segment", body, headers=SIGNED)).answer.body
    assert missing["message"] != answers[0]["message"]  # it tells the sender to sign, nothing more


def test_upper_case_hex_and_surrounding_spaces_are_the_same_signature(deliver):
    body = compact(EVENT)
    signature = sign(SIGNED_SHARED_SECRET, body.encode())
    for variant in (signature.upper(), f"  {signature} "):
        event = http_event("/v1/segment", body, headers={**SIGNED, "x-signature": variant})
        assert deliver(event).status == 200


def test_a_signature_is_only_reachable_with_a_valid_key(deliver, no_credentials):
    """A bad signature with a bad key is the key's 401: signature checks cannot probe for keys."""
    body = compact(EVENT)
    event = http_event(
        "/v1/segment",
        body,
        headers={"authorization": f"Bearer {UNKNOWN_KEY}", "x-signature": sign("guess", body.encode())},
    )
    assert deliver(event).answer.body == no_credentials.answer.body


def test_a_signature_for_another_workspaces_secret_does_not_open_this_one(deliver, signature_refused):
    """The key decides the workspace, and with it the secret the signature is checked against."""
    body = compact(EVENT)
    event = http_event(
        "/v1/segment",
        body,
        headers={**SIGNED, "x-signature": sign(SIGNED_SHARED_SECRET + "-other", body.encode())},
    )
    signature_refused(event)


def test_a_workspace_without_a_secret_ignores_x_signature(deliver):
    event = http_event(
        "/v1/segment",
        compact(EVENT),
        headers={"authorization": f"Bearer {DEMO_API_KEY}", "x-signature": "junk"},
    )
    assert deliver(event).workspaces == {DEMO_WORKSPACE_ID}


# --- how keys are compared -------------------------------------------------------------------------


@pytest.fixture
def lookups(workspaces, monkeypatch) -> list[tuple[str, Any]]:
    """Every step of authentication that touches key material: the store lookups (by what) and every
    hmac.compare_digest call (on what)."""
    from segment_bridge.settings import get_settings

    monkeypatch.setenv("AUTH_CACHE_SECONDS", "0")
    get_settings.cache_clear()
    calls: list[tuple[str, Any]] = []
    lookup, compare = CredentialRepository.workspace_for_key_hash, hmac.compare_digest

    def recording_lookup(self: Any, key_hash: str) -> Any:
        calls.append(("lookup", key_hash))
        return lookup(self, key_hash)

    def recording_compare(a: Any, b: Any) -> bool:
        calls.append(("compare_digest", (a, b)))
        return compare(a, b)

    monkeypatch.setattr(CredentialRepository, "workspace_for_key_hash", recording_lookup)
    monkeypatch.setattr(hmac, "compare_digest", recording_compare)
    return calls


def test_unknown_keys_take_one_path_whatever_prefix_they_share_with_a_real_one(deliver, lookups):
    """Timing, structurally: the raw key is never compared with anything. It is hashed, looked up by its
    hash (one read, whatever its prefix), and an unknown hash ends there; a shared prefix with a real key
    changes nothing in what runs."""
    candidates = {
        "same-prefix-last-char-differs": DEMO_API_KEY[:-1] + ("A" if DEMO_API_KEY[-1] != "A" else "B"),
        "same-first-half": DEMO_API_KEY[: len(DEMO_API_KEY) // 2] + "A" * (len(DEMO_API_KEY) // 2 + 1),
        "no-prefix-in-common": "z" * len(DEMO_API_KEY),
        "shorter": "sbk_x",
    }
    paths = {}
    for name, key in candidates.items():
        lookups.clear()
        assert deliver(request(f"Bearer {key}")).status == 401
        assert lookups == [("lookup", hashlib.sha256(key.encode()).hexdigest())], name
        paths[name] = [step for step, _ in lookups]
    assert len({tuple(path) for path in paths.values()}) == 1


def test_a_known_key_is_matched_by_comparing_digests_in_constant_time(deliver, lookups):
    assert deliver(request(f"Bearer {DEMO_API_KEY}")).status == 200
    digest = hash_key(DEMO_API_KEY)
    assert lookups == [("lookup", digest), ("compare_digest", (digest, digest))]
    assert all(DEMO_API_KEY not in json.dumps(arguments) for _, arguments in lookups)


def test_signatures_are_compared_in_constant_time(deliver, lookups):
    body = compact(EVENT)
    event = http_event("/v1/segment", body, headers={**SIGNED, "x-signature": "0" * 40})
    assert deliver(event).status == 401
    expected = sign(SIGNED_SHARED_SECRET, body.encode())
    assert ("compare_digest", (expected, "0" * 40)) in lookups
