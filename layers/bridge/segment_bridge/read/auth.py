"""The read API's authentication: a workspace's read token, passed as Segment's Profile API takes its
access token (HTTP Basic, the token as the user name and no password; `Bearer <token>` works too).

Read tokens are not API keys: they are stored apart (store/credentials.py, `READ#<sha256>`), so ingest never
finds one and this API never finds a write key. Every failure (no token, a write key, another workspace's
token, a revoked or malformed one) is the same 401, which says nothing of what exists.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping

from segment_bridge.cache import TtlCache
from segment_bridge.errors import Unauthorized
from segment_bridge.keys import MAX_KEY_LENGTH, hash_key

UNAUTHORIZED = "Missing or invalid read token."


def unauthorized() -> Unauthorized:
    return Unauthorized(UNAUTHORIZED)


def token_from(headers: Mapping[str, str]) -> str:
    """The token of a request's Authorization header (headers lower-cased); Unauthorized without one."""
    scheme, _, credential = (headers.get("authorization") or "").strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credential, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise unauthorized() from None
        credential = decoded.partition(":")[0]
    elif scheme.lower() != "bearer":
        raise unauthorized()
    if not credential or len(credential) > MAX_KEY_LENGTH:
        raise unauthorized()
    return credential


class ReadTokens:
    """Token -> the workspace it reads, remembered for `ttl` seconds per container: a revoked token stops
    working everywhere within `ttl` (AUTH_CACHE_SECONDS). Unknown tokens are not remembered."""

    def __init__(
        self,
        lookup: Callable[[str], str | None],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache: TtlCache[str, str] = TtlCache(lookup, ttl, clock)

    def authorize(self, headers: Mapping[str, str], workspace_id: str) -> None:
        """Unauthorized unless the request carries a live read token of `workspace_id`."""
        found = self._cache.get(hash_key(token_from(headers)))
        if found is None or found != workspace_id:
            raise unauthorized()
