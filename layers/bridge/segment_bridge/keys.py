"""Workspace API keys: how they are made, named and compared. We store only their SHA-256 (a slow hash
adds nothing for 256 bits of entropy), look them up by that hash in O(1) and compare digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_PREFIX = "sbk_"
READ_TOKEN_PREFIX = "sbr_"  # noqa: S105 - a prefix, not a secret
"""Read tokens (the read API's, read/auth.py) look unlike API keys, and are stored apart from them."""
KEY_BYTES = 32
MAX_KEY_LENGTH = 256


@dataclass(frozen=True, slots=True)
class WorkspaceAuth:
    """What authentication needs to know about a workspace."""

    workspace_id: str
    shared_secret: str | None = None


def new_api_key() -> str:
    """A new API key: 256 random bits, URL-safe, recognisable by its prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def new_read_token() -> str:
    """A new read token: 256 random bits, URL-safe, recognisable by its prefix."""
    return READ_TOKEN_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    """SHA-256 of the key's UTF-8 bytes. A lone surrogate (from a JSON escape in a body's writeKey) is
    hashed as its own bytes: the key is merely unknown, never an error."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_id(key_hash: str) -> str:
    """A short, non-secret name for a key (for listing and revoking), derived from its hash."""
    return key_hash[:12]


def hashes_match(key_hash: str, stored_hash: str) -> bool:
    return hmac.compare_digest(key_hash, stored_hash)
