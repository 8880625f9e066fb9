"""Pacing: each workspace's sends kept under a requests/s and an events/s rate, and a 429's wait held for
that workspace only.

Segment asks partner sources to stay at or below 50 requests/s and counts about 1,000 events/s per
workspace (template parameters SegmentRequestsPerSecond, SegmentEventsPerSecond). Each rate is a token
bucket holding one second's worth: a request may take the bucket below zero (a batch of 2,500 events at
1,000 events/s), and the next one waits until it is back above. A 429's Retry-After or X-RateLimit-Reset
holds the workspace until then; the other workspaces keep sending. So does a workspace's retry pause
(retries.py): while its Segment is failing, what the stream brings for it is set aside at once, due with
the retries already waiting (one request for all of them), instead of asking Segment again each time.

The pacer lives as long as the container (one per emitter process, shared by its threads): a workspace
sent to by several containers at once (shards, retry invocations) is paced by each of them, and a 429
tells each of them in turn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class Pacer:
    requests_per_second: float
    events_per_second: float
    clock: Callable[[], float]
    _requests: dict[str, _Bucket] = field(default_factory=dict, repr=False)
    _events: dict[str, _Bucket] = field(default_factory=dict, repr=False)
    _held: dict[str, float] = field(default_factory=dict, repr=False)
    _why: dict[str, str] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wait(self, workspace_id: str) -> float:
        """Seconds before this workspace may send its next request (0: now)."""
        with self._lock:
            now = self.clock()
            held = self._held.get(workspace_id, 0.0) - now
            requests = self._fill(self._requests, workspace_id, self.requests_per_second, now)
            events = self._fill(self._events, workspace_id, self.events_per_second, now)
            waits = [held]
            if requests.tokens < 1:
                waits.append((1 - requests.tokens) / self.requests_per_second)
            if events.tokens < 0:
                waits.append(-events.tokens / self.events_per_second)
            return max(0.0, *waits)

    def take(self, workspace_id: str, events: int) -> None:
        """A request of `events` events is being sent now."""
        with self._lock:
            now = self.clock()
            self._fill(self._requests, workspace_id, self.requests_per_second, now).tokens -= 1
            self._fill(self._events, workspace_id, self.events_per_second, now).tokens -= events

    def hold(self, workspace_id: str, until: float, why: str = "") -> None:
        """This workspace waits until `until` (a 429's headers, its retry pause), because `why`."""
        with self._lock:
            if until > self._held.get(workspace_id, 0.0):
                self._held[workspace_id] = until
                self._why[workspace_id] = why

    def held_until(self, workspace_id: str) -> float:
        with self._lock:
            return self._held.get(workspace_id, 0.0)

    def held_because(self, workspace_id: str) -> str:
        with self._lock:
            return self._why.get(workspace_id, "")

    @staticmethod
    def _fill(buckets: dict[str, _Bucket], workspace_id: str, rate: float, now: float) -> _Bucket:
        bucket = buckets.get(workspace_id)
        if bucket is None:
            bucket = buckets[workspace_id] = _Bucket(rate, now)
        if rate == float("inf"):
            bucket.tokens = rate
        elif now > bucket.at:
            bucket.tokens = min(rate, bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
        return bucket


def unpaced(clock: Callable[[], float]) -> Pacer:
    """A pacer that never waits but for a 429's hold (tests, the CLI's re-drive)."""
    return Pacer(float("inf"), float("inf"), clock)
