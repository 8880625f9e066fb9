"""Delivery: outbox stream records -> Segment, and what Segment has not taken yet -> the retry schedule.

Each stream batch (`deliver`) and each batch of the retry queue (`deliver_retries`) is sent workspace by
workspace, at once for up to PARALLEL_WORKSPACES of them (sending.py: pacing, a 429 held for that
workspace, a refused batch halved to the event at fault), and each event then ends in one place:
- taken by Segment (2xx): counted `sent` once;
- refused for good (track.ANSWERS: 400 alone, 401, a redirect...), or not sendable as it is (invalid,
  over 32 KB, an unreadable record, a change rule that cannot be evaluated, a workspace without a write
  key, an endpoint the policy refuses): parked whole for an operator with why and Segment's answer,
  counted `parked` once;
- not taken yet for a retryable reason (5xx, 408, 410, 429, 460, no answer, no time or pace left): set
  aside on the OutboundRetryQueue (retries.py) with a growing, jittered pause, so the shard moves on
  and no record of it is ever handed again for another workspace's trouble; parked only once it is
  OutboundRetryHours (72 h) past when it was written.
A stream record goes back to the stream (a partial batch response) only when AWS itself fails (the retry
queue, the bucket or the workspace's configuration cannot be reached); a retry message goes back to its
queue the same way. Only a crash of the function leaves a batch to Lambda's on-failure pointer.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from segment_bridge.destinations import ChangeRule, Destination, InvalidRule
from segment_bridge.outbound.changes import Change, Unsent, prepare, stream_changes
from segment_bridge.outbound.retries import pause, read_retry, retry_messages
from segment_bridge.outbound.sending import (
    MAX_QUICK_WAIT,
    Outcome,
    Parking,
    Pending,
    Retries,
    Sender,
    Sending,
    send_workspace,
)
from segment_bridge.outbound.track import Outbound

__all__ = [
    "Change",
    "Parking",
    "Report",
    "Retries",
    "Sender",
    "Sending",
    "Unsent",
    "deliver",
    "deliver_retries",
    "prepare",
    "redeliver",
    "stream_changes",
]

PARALLEL_WORKSPACES = 16
"""How many workspaces the emitter sends to at once."""
MAX_DELAY_SECONDS = 900
"""SQS's longest DelaySeconds."""


@dataclass
class Report:
    sent: int = 0
    retried: int = 0
    parked: int = 0
    echoes: int = 0
    requests: int = 0
    deferred: int = 0
    """Events set aside on the retry queue (to be sent again after a pause)."""
    expired: int = 0
    """Events parked because Segment had not taken them OutboundRetryHours after they were written."""
    invalid_rules: int = 0
    """Records parked because a stored change rule of their table no longer validates."""
    failed: list[str] = field(default_factory=list)
    """Stream records (or retry messages) handed back: AWS failed to take what they hold."""
    given_up: list[str] = field(default_factory=list)
    """Workspaces whose destination stalled and was given up on for this invocation."""
    parked_keys: list[str] = field(default_factory=list)
    by_workspace: dict[str, dict[str, int]] = field(default_factory=dict)
    """sent and parked per workspace (its daily counts, stats.py)."""
    pending: list[Outbound] = field(default_factory=list)
    """What is still not taken when there is no retry queue (the CLI's re-drive leaves it parked)."""

    def count(self, workspace_id: str | None, name: str, value: int = 1) -> None:
        if workspace_id:
            counts = self.by_workspace.setdefault(workspace_id, {})
            counts[name] = counts.get(name, 0) + value

    def figures(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "retried": self.retried,
            "parked": self.parked,
            "deferred": self.deferred,
            "expired": self.expired,
            "echoes": self.echoes,
            "requests": self.requests,
            "parked_by_invalid_rules": self.invalid_rules,
            "returned": len(self.failed),
            "destinations_given_up": len(self.given_up),
        }

    def add(self, other: Report) -> None:
        for name in ("sent", "retried", "parked", "echoes", "requests", "deferred", "expired"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.invalid_rules += other.invalid_rules
        self.failed += other.failed
        self.given_up += other.given_up
        self.parked_keys += other.parked_keys
        self.pending += other.pending
        for workspace_id, counts in other.by_workspace.items():
            for name, value in counts.items():
                self.count(workspace_id, name, value)


def deliver(
    changes: Iterable[Change],
    *,
    outbox_table: str,
    own_tables: frozenset[str],
    sending: Sending,
    rules: Iterable[ChangeRule | InvalidRule] = (),
) -> Report:
    """Send every new outbox item, and every change that fires a rule, of the batch; returns what
    happened and which records to hand back. No single item can fail the batch."""
    report = Report()
    rules = list(rules)
    by_workspace: dict[str, list[Outbound]] = {}
    for change in changes:
        if change.table in own_tables:
            report.echoes += 1  # written by the processor from Segment data: never sent back
            continue
        for prepared in prepare(change, outbox_table, rules, sending.integration):
            if isinstance(prepared, Unsent):
                report.invalid_rules += prepared.invalid_rule
                _park(report, sending.parking, prepared.reason, prepared.record, None, prepared)
            else:
                by_workspace.setdefault(prepared.workspace_id, []).append(prepared)
    _send_all(by_workspace, {}, sending, report)
    return report


def deliver_retries(messages: Iterable[tuple[str, str]], sending: Sending) -> Report:
    """A batch of the retry queue, as (message id, body): each message's events sent again once it is
    due (one not due yet is put back until then); what is still not taken is set aside again with the
    next, longer pause, or parked once past the horizon."""
    report = Report()
    by_workspace: dict[str, list[Outbound]] = {}
    attempts: dict[str, int] = {}
    seen: set[str] = set()
    now = sending.clock()
    for message_id, body in messages:
        message = read_retry(body, message_id)
        if message is None:
            unsent = Unsent("an unreadable retry message", {"body": body[:200_000]}, None, message_id)
            _park(report, sending.parking, unsent.reason, unsent.record, None, unsent)
            continue
        if message.not_before > now + 1:  # a wait longer than SQS delays: back until it is due
            delay = min(MAX_DELAY_SECONDS, int(message.not_before - now) + 1)
            _defer(report, sending, [(body, delay)], [message_id])
            continue
        for event in message.events:
            key = str(event.payload.get("messageId", "")) or f"{message_id}:{len(seen)}"
            if key not in seen:  # the same event twice in one batch (SQS delivers at least once)
                seen.add(key)
                by_workspace.setdefault(message.workspace_id, []).append(event)
        attempts[message.workspace_id] = max(attempts.get(message.workspace_id, 0), message.attempt)
    _send_all(by_workspace, attempts, dataclasses.replace(sending, quick_retries=False), report)
    return report


def redeliver(parked: list[tuple[str, dict[str, Any]]], sending: Sending) -> Report:
    """Send parked track calls again, as (workspace id, payload) pairs, under their own messageIds (so
    Segment dedupes what it already has). What is refused is parked again with the new reason; what is
    still not taken is in `pending` (with `sending.retries`, set aside on the retry queue instead)."""
    report = Report()
    by_workspace: dict[str, list[Outbound]] = {}
    for workspace_id, payload in parked:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
        event = Outbound(str(payload.get("messageId", "")), workspace_id, payload, body, sending.clock())
        by_workspace.setdefault(workspace_id, []).append(event)
    _send_all(by_workspace, {}, sending, report, park_homeless=False)
    return report


def _send_all(
    by_workspace: dict[str, list[Outbound]],
    attempts: dict[str, int],
    sending: Sending,
    report: Report,
    *,
    park_homeless: bool = True,
) -> None:
    """Each workspace's events to its destination, `sending.parallel` workspaces at once. A workspace
    without one: its events are parked (`park_homeless`) or pending (left where they are)."""
    work: list[tuple[list[Outbound], Destination]] = []
    for workspace_id, events in by_workspace.items():
        try:
            target = sending.destination(workspace_id)
        except Exception:  # its configuration cannot be read now: handed back, retried by AWS
            report.failed += [event.record_id for event in events]
            continue
        if target is not None:
            work.append((events, target))
        elif park_homeless:
            reason = f"workspace {workspace_id} has no Segment write key"
            for event in events:
                _park(report, sending.parking, reason, event.payload, None, event)
        else:
            report.pending += events

    def one(job: tuple[list[Outbound], Destination]) -> Report:
        events, target = job
        each = Report()
        try:
            outcome = send_workspace(events, target, sending)
        except Exception:  # never lose a workspace's records to a bug: handed back
            each.failed += [event.record_id for event in events]
            return each
        _settle(outcome, attempts.get(outcome.workspace_id, 0), sending, each)
        return each

    if sending.parallel <= 1 or len(work) <= 1:
        for job in work:
            report.add(one(job))
        return
    with ThreadPoolExecutor(max_workers=min(sending.parallel, len(work))) as pool:
        for each in pool.map(one, work):
            report.add(each)


def _settle(outcome: Outcome, attempt: int, sending: Sending, report: Report) -> None:
    """Each event of a workspace's outcome in its one place: sent, parked, or set aside (the module's
    docstring)."""
    report.requests += outcome.requests
    report.retried += outcome.retried
    if outcome.given_up:
        report.given_up.append(outcome.workspace_id)
    if outcome.delivered:
        report.sent += len(outcome.delivered)
        report.count(outcome.workspace_id, "sent", len(outcome.delivered))
    for refused in outcome.refused:
        for event in refused.events:
            _park(report, sending.parking, refused.reason, event.payload, refused.response, event)
    if outcome.pending is not None and outcome.pending.events:
        _set_aside(outcome.pending, attempt, sending, report)


def _set_aside(pending: Pending, attempt: int, sending: Sending, report: Report) -> None:
    now = sending.clock()
    hours = sending.horizon_seconds / 3600
    live: list[Outbound] = []
    for event in pending.events:
        if now - event.created_at >= sending.horizon_seconds:
            reason = f"{pending.reason} for {hours:g} h after it was written (OutboundRetryHours)"
            if _park(report, sending.parking, reason, event.payload, pending.response, event):
                report.expired += 1
        else:
            live.append(event)
    if not live:
        return
    if sending.retries is None:
        report.pending += live
        return
    if pending.response is None and pending.wait > 0:  # not sent: held, due with what already waits
        wait = pending.wait
    else:
        wait = pause(attempt + 1, pending.wait if pending.wait > MAX_QUICK_WAIT else 0.0)
    bodies = retry_messages(
        live,
        attempt=attempt + 1,
        not_before=now + wait,
        reason=pending.reason,
        response=pending.response,
        max_bytes=sending.message_bytes,
    )
    delay = min(MAX_DELAY_SECONDS, int(wait + 0.999))
    if _defer(report, sending, [(body, delay) for body in bodies], [event.record_id for event in live]):
        report.deferred += len(live)
        if pending.response is not None:  # Segment answered a failure: what comes next waits with these
            sending.paced().hold(live[0].workspace_id, now + wait, pending.reason)


def _defer(report: Report, sending: Sending, messages: list[tuple[str, int]], record_ids: list[str]) -> bool:
    try:
        if sending.retries is None:
            raise RuntimeError("no retry queue")
        sending.retries.defer(messages)
    except Exception:  # the retry queue is down: handed back to the stream (or the queue), in order
        report.failed += [record_id for record_id in dict.fromkeys(record_ids)]
        return False
    return True


def _park(
    report: Report,
    parking: Parking,
    reason: str,
    record: dict[str, Any],
    response: dict[str, Any] | None,
    source: Outbound | Unsent,
) -> bool:
    workspace_id = source.workspace_id
    written_at = source.created_at if isinstance(source, Outbound) else source.written_at
    try:
        key = parking.park_outbound(reason, record, response, workspace_id, written_at)
    except Exception:  # parking is down: handed back, to be parked next time (under the same name)
        report.failed.append(source.record_id)
        return False
    report.parked += 1
    report.parked_keys.append(str(key))
    report.count(workspace_id, "parked")
    return True
