"""Sending: one workspace's events to its Segment source, request by request, within the invocation's time.

For each request (track.requests_for: at most 475,000 bytes and 2,500 events, writeKey included):
1. Wait for the workspace's pace (pacing.Pacer: requests/s, events/s, a 429's hold) if it fits in a
   short wait; else stop: the rest is pending, to be retried once the wait is over.
2. Send (egress: bounded waits, no redirect, only to allowed addresses).
3. The answer (track.ANSWERS): delivered; refused — a batch of more than one event refused with a 400 or
   413 is halved and each half sent again, so only what Segment refuses alone is refused; a retryable
   answer — a few quick retries with jittered, growing pauses (analytics-python's first pauses), a 429's
   wait held for this workspace, then the rest is pending with why and how long Segment asked to wait.
What is pending is the caller's to schedule (retries.py); nothing here parks or counts.
"""

from __future__ import annotations

import gzip
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from segment_bridge import PRODUCT_NAME
from segment_bridge.destinations import Destination, EndpointRefused
from segment_bridge.outbound.egress import MAX_RESPONSE_KEPT, Answer, Unreachable, redacted
from segment_bridge.outbound.pacing import Pacer, unpaced
from segment_bridge.outbound.track import (
    SPLIT_ON,
    Outbound,
    answer_rule,
    request_body,
    requested_wait,
    requests_for,
)

QUICK_PAUSES = (0.5, 1.0, 2.0)
"""Retries within an invocation before the rest is set aside for the retry schedule (each jittered)."""
MAX_QUICK_WAIT = 5.0
"""The longest pause (a pace, a Retry-After) waited for within an invocation; a longer one is scheduled."""
MIN_ATTEMPT_SECONDS = 0.5
"""No attempt starts with less time than this left before the deadline."""
STALLS_TOLERATED = 2
"""A destination that gave no answer in time this many times is given up on for the invocation."""
RETRY_HORIZON_SECONDS = 72 * 3600.0
"""Default of template parameter OutboundRetryHours: how long after it was written an event Segment has
not taken for a retryable reason is still retried (Segment retries its destinations 4 h, analytics-python
up to 12 h)."""


class Sender(Protocol):
    def send(self, url: str, write_key: str, body: bytes, seconds_left: float) -> Answer:
        """POST `body`; waits at most `seconds_left` in all. Raises Unreachable without an answer, and
        EndpointRefused when the URL resolves to an address the endpoint policy does not send to."""
        ...


class Parking(Protocol):
    def park_outbound(
        self,
        reason: str,
        record: dict[str, Any],
        response: dict[str, Any] | None = None,
        workspace_id: str | None = None,
        written_at: float | None = None,
    ) -> str:
        """Keep what a person must act on, named by what it holds; its key."""
        ...


class Retries(Protocol):
    def defer(self, messages: list[tuple[str, int]]) -> None:
        """Put each (body, delay in seconds, at most 900) on the retry queue; raises if it cannot."""
        ...


@dataclass(frozen=True)
class Sending:
    """How a batch is sent: each workspace's destination, the HTTP sender, where what a person must act on
    is parked, where what is retried later waits (None: back to the stream, as the CLI's re-drive has
    it), the time by which to stop (the invocation's), the clock and sleep to keep it with, the pacer,
    the integration name events carry, the retry horizon, and how many workspaces are sent to at once
    (1: one after the other, as tests with a fake clock need)."""

    destination: Callable[[str], Destination | None]
    sender: Sender
    parking: Parking
    deadline: float
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    parallel: int = 1
    retries: Retries | None = None
    pacer: Pacer | None = None
    integration: str = PRODUCT_NAME
    horizon_seconds: float = RETRY_HORIZON_SECONDS
    message_bytes: int = 262_144
    """The retry queue's message size (QUEUE_MESSAGE_BYTES: the template's Limits.Queue.MessageBytes)."""
    quick_retries: bool = True
    """Retry within the invocation (the stream's first attempt); the retry queue's attempts try once."""

    def paced(self) -> Pacer:
        return self.pacer if self.pacer is not None else unpaced(self.clock)


@dataclass
class Refused:
    events: list[Outbound]
    reason: str
    response: dict[str, Any] | None


@dataclass
class Pending:
    """What Segment has not taken yet for a retryable reason (or for want of time)."""

    events: list[Outbound]
    reason: str
    response: dict[str, Any] | None = None
    wait: float = 0.0
    """How long Segment (a 429) or the pace asked to wait before the next attempt."""


@dataclass
class Outcome:
    """One workspace's events after its send: each in exactly one of delivered, refused, pending."""

    workspace_id: str
    delivered: list[Outbound] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    pending: Pending | None = None
    requests: int = 0
    retried: int = 0
    given_up: bool = False


def send_workspace(events: list[Outbound], target: Destination, sending: Sending) -> Outcome:
    """The numbered steps of the module's docstring, for one workspace's events."""
    workspace_id = events[0].workspace_id
    outcome = Outcome(workspace_id)
    clock, pacer = sending.clock, sending.paced()
    queue = deque(requests_for(events, target.write_key))
    attempt = stalls = 0
    answer: Answer | None = None

    def pending(reason: str, wait: float = 0.0) -> Outcome:
        rest = [event for batch in queue for event in batch]
        response = _response(answer, target) if answer is not None else None
        outcome.pending = Pending(rest, reason, response, wait)
        return outcome

    while queue:
        batch = queue[0]
        if sending.deadline - clock() < MIN_ATTEMPT_SECONDS:
            return pending(_kept_answering(answer) if answer else "the invocation had no time left to send")
        wait = pacer.wait(workspace_id)  # 1. the workspace's pace, a 429's hold
        if wait > 0:
            if wait <= MAX_QUICK_WAIT and clock() + wait + MIN_ATTEMPT_SECONDS <= sending.deadline:
                sending.sleep(wait)
                continue
            why = _kept_answering(answer) if answer else pacer.held_because(workspace_id)
            return pending(why or "paced: sent later", wait)
        pacer.take(workspace_id, len(batch))
        left = sending.deadline - clock()
        body = gzip.compress(
            request_body(batch, datetime.fromtimestamp(clock(), UTC), target.write_key), mtime=0
        )
        outcome.requests += 1
        try:  # 2. send
            answer = sending.sender.send(target.url, target.write_key, body, left)
        except Unreachable as error:
            answer = Answer(0, {}, str(error))
            stalls += error.stalled
        except EndpointRefused as error:
            rest = [event for waiting in queue for event in waiting]
            outcome.refused.append(Refused(rest, f"the destination is refused: {error}", None))
            return outcome
        rule = answer_rule(answer.status) if answer.status else None
        if rule is not None and rule.verdict == "delivered":  # 3. the answer
            outcome.delivered += queue.popleft()
            attempt = 0
            continue
        if rule is not None and rule.verdict == "permanent":
            queue.popleft()
            if answer.status in SPLIT_ON and len(batch) > 1:  # halve until the event at fault is alone
                half = len(batch) // 2
                queue.extendleft([batch[half:], batch[:half]])
                continue
            kind = "a redirect, never followed" if 300 <= answer.status < 400 else rule.why
            reason = f"Segment answered {answer.status} ({kind})"
            outcome.refused.append(Refused(batch, reason, _response(answer, target)))
            continue
        asked = (
            requested_wait(answer.headers, datetime.fromtimestamp(clock(), UTC)) if answer.status else None
        )
        if asked is not None and asked > 0:  # a 429's (or a 503's) wait: this workspace only
            pacer.hold(workspace_id, clock() + asked)
        if stalls >= STALLS_TOLERATED:
            outcome.given_up = True
            return pending(f"Segment gave no answer in time {stalls} times")
        if attempt >= len(QUICK_PAUSES) or not sending.quick_retries:
            return pending(_kept_answering(answer), max(0.0, pacer.held_until(workspace_id) - clock()))
        if asked is not None and asked > 0:
            attempt += 1
            outcome.retried += 1
            continue  # step 1 waits for the hold, or sets the rest aside until then
        pause = QUICK_PAUSES[attempt] * (0.5 + random.random())  # noqa: S311  # nosec B311  # jitter
        if clock() + pause + MIN_ATTEMPT_SECONDS > sending.deadline:
            return pending(_kept_answering(answer))
        sending.sleep(pause)
        attempt += 1
        outcome.retried += 1
    return outcome


def _kept_answering(answer: Answer | None) -> str:
    return f"Segment kept answering {answer.status or 'nothing'}" if answer else "not sent yet"


def _response(answer: Answer, target: Destination) -> dict[str, Any]:
    return {"status": answer.status, "body": redacted(answer.body, target.write_key)[:MAX_RESPONSE_KEPT]}
