"""Authentication: which workspace a request belongs to, and whether Segment really signed it.

Keys are random, high-entropy tokens. We store only their SHA-256 (a slow hash adds nothing for 256
bits of entropy), look them up by that hash in O(1) and compare digests in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

from segment_bridge.cache import TtlCache
from segment_bridge.errors import InvalidSignature, Unauthorized
from segment_bridge.keys import MAX_KEY_LENGTH, WorkspaceAuth, hash_key

SIGNATURE_HEADER = "x-signature"

_UNAUTHORIZED = "Missing or invalid credentials."


def credential_from_request(
    headers: Mapping[str, str], query: Mapping[str, str], body_write_key: object = None
) -> str | None:
    """The key a request carries, by the first of: Authorization (Bearer or Basic), ?writeKey=, body writeKey.

    Headers must be lower-cased (API Gateway HTTP APIs deliver them so). A malformed Authorization
    header is an error, not a fall-through: the caller meant to authenticate with it.
    """
    authorization = headers.get("authorization")
    if authorization:
        return _from_authorization(authorization)
    write_key = query.get("writeKey")
    if write_key:
        return _checked(write_key)
    if isinstance(body_write_key, str) and body_write_key:
        return _checked(body_write_key)
    return None


def needs_body_for_credentials(headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    return not headers.get("authorization") and not query.get("writeKey")


def _from_authorization(value: str) -> str:
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if not token:
        raise Unauthorized(_UNAUTHORIZED)
    if scheme.lower() == "bearer":
        return _checked(token)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
        except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8 once decoded
            raise Unauthorized(_UNAUTHORIZED) from None
        user, _, _password = decoded.partition(":")
        return _checked(user)
    raise Unauthorized(_UNAUTHORIZED)


def _checked(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Unauthorized(_UNAUTHORIZED)
    return key


def unauthorized() -> Unauthorized:
    """The one answer for every credential failure: it never tells which workspaces or keys exist."""
    return Unauthorized(_UNAUTHORIZED)


def sign(secret: str, signed_bytes: bytes) -> str:
    """What Segment puts in X-Signature: lowercase hex HMAC-SHA1."""
    return hmac.new(secret.encode("utf-8"), signed_bytes, hashlib.sha1).hexdigest()


def verify_signature(secret: str, signed_bytes: bytes, signature: str | None) -> None:
    """Check X-Signature against the bytes Segment signed (for a batch: the first element's raw bytes)."""
    if not signature:
        raise InvalidSignature("X-Signature is required for this workspace.")
    expected = sign(secret, signed_bytes)
    if not hmac.compare_digest(expected, signature.strip().lower()):
        raise InvalidSignature("X-Signature does not match the body.")


class CachedKeyDirectory:
    """Key -> workspace, remembered for `ttl` seconds per container so most requests cost no lookup.

    A revoked key stops working everywhere within `ttl` seconds. Unknown keys are not remembered.
    """

    def __init__(
        self,
        lookup: Callable[[str], WorkspaceAuth | None],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache: TtlCache[str, WorkspaceAuth] = TtlCache(lookup, ttl, clock)

    def workspace_for_key(self, key: str) -> WorkspaceAuth | None:
        return self._cache.get(hash_key(key))
