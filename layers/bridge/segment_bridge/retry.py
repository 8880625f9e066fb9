"""One conditional write, retried: every read-decide-conditional-put loop of the layer (a profile's write,
its take-back, its erase, a delete's write of the index of deleted ids) goes through `conditionally`.

An attempt reads what it decides on, decides, and puts on a condition (the version or epoch it read); it
returns None when another writer got there first. Before each attempt after the first, a random pause
of up to `pause_seconds` x 2^(n-1), at most `cap_seconds` ("full jitter"), so that writers of one hot
item spread out instead of colliding again. When every attempt lost, `Contended` says so: not a failure
of AWS nor of the message, which is deferred after a pause (processor/message.py), never failed, so
waiting never spends one of its maxReceiveCount receives.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from segment_bridge.errors import ServiceUnavailable

T = TypeVar("T")

WRITE_ATTEMPTS = 12
"""Conditional profile writes tried (a write, a take-back, an erase) before the message is deferred,
measured with bench_throughput's hot-key section (30 invocations writing one user, 2 messages each):
40 of the 60 message receives exhausted 12 attempts; failed, as they were, they came back after the
visibility timeout (up to 3 receives, near the DLQ's 5; at 100 writers and 6 attempts 144 of 200
reached it). Deferred, exhausting costs a 1-10 s pause and no receive, so more attempts would only
keep an invocation spinning on one hot profile (its longest was 113 s of 150 s); with the capped
backoff below, 12 attempts wait about 4 s at most in all. Counts stayed exact either way."""
CONFLICT_PAUSE_SECONDS = 0.02
"""After the n-th lost write of a profile, wait a random time up to this x 2^n (at most
CONFLICT_PAUSE_CAP_SECONDS) before reading it again."""
CONFLICT_PAUSE_CAP_SECONDS = 1.0


class Contended(ServiceUnavailable):
    """Other writers kept changing an item past the attempts: the message is deferred, after a pause.
    `reason` names what was contended (Deferred.reason)."""

    reason = "contended"


class ProfileContended(Contended):
    """A profile kept changing while being written, its counts taken back, or erased (other invocations
    writing the same entity) past WRITE_ATTEMPTS."""

    reason = "profile contended"


def conditionally(
    attempt: Callable[[int], T | None],
    contended: Callable[[], Contended],
    *,
    attempts: int | None = None,
    pause_seconds: float | None = None,
    cap_seconds: float | None = None,
) -> T:
    """`attempt(n)` for n = 0, 1, ... until it returns something other than None (it won, or had nothing
    to write), pausing before each retry; `contended()` raised when `attempts` (default WRITE_ATTEMPTS)
    all lost. The pause defaults are the profiles' (CONFLICT_PAUSE_SECONDS, CONFLICT_PAUSE_CAP_SECONDS);
    defaults are read at each call, so a test or benchmark may set them."""
    attempts = WRITE_ATTEMPTS if attempts is None else attempts
    base = CONFLICT_PAUSE_SECONDS if pause_seconds is None else pause_seconds
    cap = CONFLICT_PAUSE_CAP_SECONDS if cap_seconds is None else cap_seconds
    for n in range(attempts):
        if n:
            pause = min(cap, base * 2 ** (n - 1))
            time.sleep(random.uniform(0, pause))  # noqa: S311  # nosec B311  # jitter, not a secret
        done = attempt(n)
        if done is not None:
            return done
    raise contended()
