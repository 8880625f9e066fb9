"""Which of a workspace's entities may have a tombstone, known from one small read (`DeletedIds`).

The processor must know each entity's deletion time before it applies events (events at or before it
are not applied). Most entities were never deleted, and reading a missing tombstone is still billed a
read unit, as many as the profiles themselves. So each workspace keeps one index item: a short
fingerprint of every entity key a delete has tombstoned, and an epoch that every change of the index
raises. The processor reads it before its entity reads and asks for the tombstones of the keys whose
fingerprint it holds only (docs/privacy.md).

Why this is exact (processor/unit.py steps 2 and 6; docs/processing.md): a delete adds its keys to the
index *before* it writes their tombstones, and erases only after both. A processor reads the index
before its entity reads, and again after its writes (step 6): a key it held, it re-reads the tombstone
of, as before; a key it did not hold was added after its first read, so either the epoch it reads again
has risen (then it re-reads every tombstone it skipped) or the delete has not reached its erase yet,
which then sees this processor's writes. A fingerprint without a tombstone (a delete that stopped
between the two writes, or two keys sharing a fingerprint) only costs a read.

An index that would outgrow its item, or a workspace created before the index existed, is `unknown`:
every tombstone is read, as it was without it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

FINGERPRINT_BYTES = 6
"""Of blake2b over the entity key: two keys share one with odds of about n / 2^48 (a wasted read)."""
MAX_FINGERPRINTS = 50_000
"""300 KB of fingerprints, within DynamoDB's 400 KB item; past it the index is `unknown` for good."""


def fingerprint(key: str) -> bytes:
    """An entity key's fingerprint (`U#<id>`, `A#<id>`, `G#<id>`): not the id itself, which is personal."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=FINGERPRINT_BYTES).digest()


@dataclass(frozen=True)
class DeletedIds:
    """A workspace's index of tombstoned keys as read at one moment. `fingerprints` None: unknown."""

    epoch: int = 0
    fingerprints: frozenset[bytes] | None = None

    @property
    def known(self) -> bool:
        return self.fingerprints is not None

    def may_be_deleted(self, key: str) -> bool:
        """False only when the key has certainly no tombstone as of this read."""
        return self.fingerprints is None or fingerprint(key) in self.fingerprints

    def to_read(self, keys: Iterable[str]) -> list[str]:
        """The keys whose tombstones must be read (those it may hold), once each, in order."""
        return [key for key in dict.fromkeys(keys) if self.may_be_deleted(key)]

    def changed_since(self, earlier: DeletedIds) -> bool:
        """Whether a delete added keys to the index after `earlier` was read."""
        return self.epoch != earlier.epoch

    def adding(self, keys: Iterable[str]) -> DeletedIds | None:
        """The index with these keys added and its epoch raised; None if it already holds every one (or
        is unknown, which holds everything). Past MAX_FINGERPRINTS it becomes unknown."""
        if self.fingerprints is None:
            return None
        new = {fingerprint(key) for key in keys} - self.fingerprints
        if not new:
            return None
        merged = self.fingerprints | new
        return DeletedIds(self.epoch + 1, merged if len(merged) <= MAX_FINGERPRINTS else None)

    def encoded(self) -> bytes:
        """The fingerprints as one binary value, in a stable order (the item's `ids`)."""
        return b"".join(sorted(self.fingerprints or ()))


def decoded(epoch: int, ids: bytes | None) -> DeletedIds:
    """The index stored as `epoch` and `ids` (None: unknown)."""
    if ids is None:
        return DeletedIds(epoch, None)
    size = FINGERPRINT_BYTES
    return DeletedIds(epoch, frozenset(ids[n : n + size] for n in range(0, len(ids) - size + 1, size)))
