import base64

import pytest

from segment_bridge.errors import InvalidSignature, Unauthorized
from segment_bridge.ingest.auth import CachedKeyDirectory, credential_from_request, sign, verify_signature
from segment_bridge.keys import KEY_BYTES, KEY_PREFIX, WorkspaceAuth, hash_key, new_api_key

KEY = "sbk_test_key_1234567890"


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("headers", "query", "body_key"),
    [
        ({"authorization": f"Bearer {KEY}"}, {}, None),
        ({"authorization": f"bearer   {KEY}  "}, {}, None),
        ({"authorization": basic(KEY)}, {}, None),
        ({"authorization": basic(KEY, "ignored")}, {}, None),
        ({}, {"writeKey": KEY}, None),
        ({}, {}, KEY),
        ({"authorization": f"Bearer {KEY}"}, {"writeKey": "other"}, "other"),
    ],
)
def test_every_credential_form_yields_the_key(headers, query, body_key):
    assert credential_from_request(headers, query, body_key) == KEY


def test_no_credentials_yields_none():
    assert credential_from_request({}, {}, None) is None
    assert credential_from_request({}, {}, 123) is None


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Token abc",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"\xff\xfe").decode(),
        "Bearer " + "k" * 300,
    ],
)
def test_malformed_authorization_is_refused(authorization):
    with pytest.raises(Unauthorized):
        credential_from_request({"authorization": authorization}, {"writeKey": KEY}, KEY)


def test_new_keys_are_long_and_distinct():
    keys = {new_api_key() for _ in range(100)}
    assert len(keys) == 100
    # 32 random bytes in unpadded URL-safe base64: 43 characters after the prefix, 47 in all
    assert all(
        key.startswith("sbk_") and len(key) == len(KEY_PREFIX) + -(-KEY_BYTES * 4 // 3) for key in keys
    )


def test_signature_is_lowercase_hex_hmac_sha1():
    # Known answer: HMAC-SHA1("key", "The quick brown fox jumps over the lazy dog")
    assert (
        sign("key", b"The quick brown fox jumps over the lazy dog")
        == "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"
    )


def test_signature_verification():
    body = b'{"type":"track"}'
    verify_signature("s3cret", body, sign("s3cret", body))
    verify_signature("s3cret", body, sign("s3cret", body).upper())
    with pytest.raises(InvalidSignature):
        verify_signature("s3cret", body + b" ", sign("s3cret", body))
    with pytest.raises(InvalidSignature):
        verify_signature("s3cret", body, None)


def test_key_cache_remembers_known_keys_for_its_ttl_only():
    calls = []
    now = [0.0]

    def lookup(key_hash):
        calls.append(key_hash)
        return WorkspaceAuth("ws1") if key_hash == hash_key(KEY) else None

    directory = CachedKeyDirectory(lookup, ttl=60, clock=lambda: now[0])
    assert directory.workspace_for_key(KEY) == WorkspaceAuth("ws1")
    assert directory.workspace_for_key(KEY) == WorkspaceAuth("ws1")
    assert len(calls) == 1
    assert directory.workspace_for_key("unknown") is None
    assert directory.workspace_for_key("unknown") is None
    assert len(calls) == 3  # unknown keys are looked up every time
    now[0] = 61
    directory.workspace_for_key(KEY)
    assert len(calls) == 4
