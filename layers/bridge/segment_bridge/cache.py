"""A small per-container cache: what a Lambda container remembers between invocations, for a while."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """`load(key)`, remembered for `ttl` seconds. None results are not remembered (an unknown key is
    looked up again next time); the cache empties itself when it reaches `max_entries`."""

    def __init__(
        self,
        load: Callable[[K], V | None],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = self._load(key)
        if value is not None and self._ttl > 0:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (now + self._ttl, value)
        return value

    def refresh(self, key: K) -> V | None:
        """`load(key)` now, whatever is remembered (a caller that knows the value changed)."""
        self._entries.pop(key, None)
        return self.get(key)
