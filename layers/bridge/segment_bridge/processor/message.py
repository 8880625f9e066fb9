"""A queue message's fate: applied within the invocation's time, or deferred (docs/processing.md).

    Invocation.receive_or_defer  a message received if the invocation has time for it, or sent back to
                                 the queue (Deferred)
    receive_message              archive the message's events, apply them (unit.py) between its privacy
                                 requests' receipts (received, then erased: privacy/hooks.py), keep
                                 what cannot be applied, count the day (a workspace being deleted:
                                 dropped, refused)
    replay_message               a replay job's message: applied, not archived again, counted once
    TimeBudget                   whether the invocation has time left to start a message at all
    TimeShares                   each message's share of what is left: the deadline of its deletes

A message starts only if the invocation has time left to finish it (`TimeBudget`): one it cannot finish
goes back to the queue untouched, never half-applied.

Deferred is not failed (the IngestDLQ is for infrastructure failures only): a message unfinished for a
reason of time (the budget refused it, its delete's erase used its share, a hot profile was still
contended after WRITE_ATTEMPTS, or concurrent deletes kept changing the index of deleted ids) is sent
to the queue again as a fresh message, same body and workspace group, with a receive count of its own,
and the original is reported done. Redoing a message is safe by the algorithm (unit.py), so the copy and
the original, if SQS ever delivers it again, apply it once. Only when the copy cannot be sent does the
original fail.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from segment_bridge.envelope import Envelope, message_group, unpack
from segment_bridge.errors import BridgeError
from segment_bridge.mapping import Mapping
from segment_bridge.privacy.deletion import DeletionUnfinished
from segment_bridge.privacy.hooks import requests_erased, requests_received
from segment_bridge.processor.ports import MappingSource, Repositories, Requeue
from segment_bridge.processor.results import Applied
from segment_bridge.processor.unit import apply_batch
from segment_bridge.profiles import COUNTED_BEYOND_ARCHIVE_DAYS
from segment_bridge.retry import Contended
from segment_bridge.settings import get_settings
from segment_bridge.stats import count_day

CONTENDED_DELAY_SECONDS = 10
"""A message deferred because a profile kept changing comes back after a random 1 to this many seconds."""
MESSAGE_RESERVE_SECONDS = 2.0
"""Time an invocation keeps beyond its slowest message so far before starting another one."""


class NoTimeLeft(BridgeError):
    """Not enough of the invocation is left to apply a message: it goes back to the queue untouched."""


@dataclass(frozen=True)
class Deferred:
    """A message sent to the queue again, unfinished for a reason of time or contention (never of a
    failure)."""

    reason: str
    """"time budget" (not started), "delete unfinished" (its erase resumes on the next receive) or
    "profile contended" (a hot entity's writers outnumbered WRITE_ATTEMPTS; back after a pause) or
    "deletes contended" (concurrent deletes kept changing the index of deleted ids; likewise)."""


@dataclass
class TimeBudget:
    """Starts a message only if the invocation can finish it: what is left (Lambda's
    get_remaining_time_in_millis) must exceed the slowest message this environment has applied, plus
    MESSAGE_RESERVE_SECONDS. The template bounds the work per invocation so that this rarely refuses;
    it is the guard for what the bound did not foresee (a slow dependency, a cold start). The first
    message of an invocation is always started: it has all the time there is, and refusing it would
    defer it again and again without anything ever being done."""

    reserve_seconds: float = MESSAGE_RESERVE_SECONDS
    slowest_seconds: float = 0.0
    clock: Callable[[], float] = time.monotonic

    def receive(self, remaining_ms: int, receive: Callable[[], Applied], *, first: bool = False) -> Applied:
        """`receive()`, if there is time for it; NoTimeLeft (before anything is read or written) if not."""
        if not first and remaining_ms / 1000 < self.slowest_seconds + self.reserve_seconds:
            raise NoTimeLeft(
                f"{remaining_ms} ms left: not enough to apply a message; it goes back to the queue."
            )
        started = self.clock()
        try:
            return receive()
        finally:
            self.slowest_seconds = max(self.slowest_seconds, self.clock() - started)


class TimeShares:
    """Each message of an invocation gets an equal share of the time left (less `reserve_ms` for the
    answer), so a long privacy delete in one message never times the others out."""

    def __init__(self, remaining_ms: Callable[[], int], messages: int, reserve_ms: int = 5_000) -> None:
        self.remaining_ms, self.left, self.reserve_ms = remaining_ms, max(1, messages), reserve_ms
        self.first = True
        """No share given yet: the next message is the invocation's first."""

    def next(self) -> float:
        """The next message's share, as the deadline (time.monotonic()) its deletes check between chunks."""
        share = max(0.0, (self.remaining_ms() - self.reserve_ms) / 1000 / self.left)
        self.left, self.first = max(1, self.left - 1), False
        return time.monotonic() + share


@dataclass
class Invocation:
    """One invocation's messages, each received or deferred: the repositories, the queue a deferred
    message goes back to, the workspaces' mappings, the environment's TimeBudget and the invocation's
    TimeShares."""

    store: Repositories
    queue: Requeue
    mappings: MappingSource
    budget: TimeBudget
    shares: TimeShares

    def receive_or_defer(self, body: str) -> Applied | Deferred:
        """The message applied within the budget; or, if the budget refuses it, its privacy delete is
        still erasing at the end of its share, or a profile or the index of deleted ids stays contended,
        the message deferred: sent to the queue again (the module's docstring) so that it does not spend
        one of its maxReceiveCount receives on waiting. Raises, so the message fails, on anything else,
        and when the queue does not take the copy (ServiceUnavailable)."""
        first, remaining_ms = self.shares.first, self.shares.remaining_ms()
        deadline = self.shares.next()
        delay = 0
        try:
            return self.budget.receive(
                remaining_ms, lambda: receive_message(body, self.store, self.mappings, deadline), first=first
            )
        except NoTimeLeft:
            reason = "time budget"
        except DeletionUnfinished:
            reason = "delete unfinished"
        except Contended as contended:  # a hot profile, or deletes changing the index of deleted ids
            reason = contended.reason  # its writers spread out instead of meeting again at once
            delay = random.randint(1, CONTENDED_DELAY_SECONDS)  # noqa: S311  # nosec B311  # jitter
        # a replay's copy goes back into its replay group, where live traffic keeps its place
        self.queue.defer(body, message_group(Envelope.model_validate_json(body)), delay)
        return Deferred(reason)


def receive_message(body: str, store: Repositories, mappings: MappingSource, deadline: float) -> Applied:
    """One queue message: archive its events as received, then apply them under the workspace's current
    mapping, its privacy requests' receipts written before (received) and after (erased); events that
    cannot be applied are kept with their reason. Raises on anything retryable, so the message returns
    to the queue (and, after maxReceiveCount, to the dead-letter queue); a privacy delete past `deadline`
    raises DeletionUnfinished, its progress kept for the next receive (its receipt stays received).
    The archive's object is named after the body, not the SQS message: a redelivery, a deferred copy
    or a re-drive of the same message archives it once. A message of a workspace that is being deleted,
    or is gone, is dropped before anything is written (`refused`: jobs/offboard.py); a replay job's copy
    of archived events is applied by `replay_message`."""
    envelope, events = unpack(body)
    if not store.workspace_open(envelope.workspaceId):  # offboarding: its sweep must find nothing new
        return Applied(refused=1)
    if envelope.job is not None:  # a replay job's copy of archived events (jobs/replay.py)
        return replay_message(envelope, events, store, mappings, deadline)
    received_at = datetime.fromisoformat(envelope.receivedAt)
    name = f"{envelope.requestId}-{hashlib.sha256(body.encode()).hexdigest()[:32]}"
    store.archive.archive_raw(envelope.workspaceId, received_at, name, events)
    mapping = mappings.get(envelope.workspaceId) or Mapping()
    receipts = requests_received(envelope, events, store, mapping)
    counted_days = get_settings().archive_retention_days + COUNTED_BEYOND_ARCHIVE_DAYS
    applied = apply_batch(envelope.workspaceId, events, mapping, store, deadline, counted_days)
    requests_erased(receipts)
    if applied.unapplied:
        store.archive.keep_unapplied(envelope.workspaceId, received_at, name, applied.unapplied)
    count_day(
        store,
        envelope.workspaceId,
        received_at,
        applied=max(0, len(events) - len(applied.unapplied) - applied.duplicates - applied.skipped),
        duplicates=applied.duplicates,
        skipped=applied.skipped,
        unapplied=len(applied.unapplied),
        blocked_ids=applied.blocked_ids,
        refused_links=applied.refused_links,
    )
    return applied


def replay_message(
    envelope: Envelope,
    events: list[dict[str, Any]],
    store: Repositories,
    mappings: MappingSource,
    deadline: float,
) -> Applied:
    """A replay job's message: archived already and counted in the daily counts when it was received, so
    only applied (under the current mapping, or the job's if this container's is older); what it changed
    is added to the job once per message (a receipt per message name: a copy changes and counts nothing)."""
    mapping = mappings.get(envelope.workspaceId) or Mapping()  # the stored version, read per message
    applied = apply_batch(envelope.workspaceId, events, mapping, store, deadline)
    figures = {
        "messages_applied": 1,
        "profiles_changed": applied.changed,
        "history_written": applied.history_written,
    }
    if store.jobs.count_applied(str(envelope.job), envelope.requestId, figures):
        store.jobs.complete_if_applied(str(envelope.job))
    return applied
