"""Delivery: outbox stream records -> Segment, retried within the invocation's time, never lost.

- 2xx: delivered. Segment dedupes on messageId (ours are deterministic), so re-sending is harmless.
- 429 (its Retry-After honoured), 408, 5xx, connection errors: retried with jittered backoff while the
  invocation has time; then the records go back to the stream (partial batch response, which keeps the
  shard's order) — unless they are older than PARK_AFTER_SECONDS, in which case they are parked.
- No answer in time: each attempt waits at most ATTEMPT_SECONDS and never past the deadline; a
  destination that gave no answer STALLS_TOLERATED times is given up on for this invocation (its records
  go back to the stream, or are parked when old). Workspaces are sent in parallel, so a stalled
  destination delays no other.
- Other answers (4xx, a redirect, which is never followed), an endpoint the policy refuses, an item that
  cannot be sent as it is (invalid, oversized, a timestamp out of range, a change rule that cannot be
  evaluated on the record, an unreadable stream record), a workspace without a write key: parked at
  once, whole, with the reason and the (bounded, credential-free) answer. Parking keeps the item in the
  archive bucket (parked/) and signals it on the EmitterDLQ; the CLI lists and re-drives it.
Only a crash of the function itself leaves a batch to Lambda's on-failure pointer.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from segment_bridge.destinations import ChangeRule, Destination, EndpointRefused, InvalidRule, Unsendable
from segment_bridge.outbound.egress import MAX_RESPONSE_KEPT, Answer, Unreachable, redacted
from segment_bridge.outbound.track import (
    Outbound,
    request_body,
    requests_for,
    retry_after_seconds,
    track_call,
    verdict,
)

PARK_AFTER_SECONDS = 600
"""A record still not deliverable 10 minutes after it was written is parked, so one long Segment outage
never blocks a shard for hours nor lets the stream's retries run out (its on-failure destination keeps
only pointers that expire in 24 h). Each attempt spends up to its invocation's time waiting, so the
template's 20 stream retries outlast this."""
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
MIN_ATTEMPT_SECONDS = 0.5
"""No attempt starts with less time than this left before the deadline."""
STALLS_TOLERATED = 2
"""A destination that gave no answer in time this many times is given up on for the invocation."""
PARALLEL_WORKSPACES = 16
"""How many workspaces the emitter sends to at once."""


@dataclass(frozen=True)
class Change:
    """One stream record, as the emitter needs it. `unreadable` says why a record could not be read (it
    is then parked as `raw`, the record as the stream gave it)."""

    record_id: str
    event_name: str
    table: str
    keys: dict[str, Any]
    new_image: dict[str, Any] | None
    created_at: float
    old_image: dict[str, Any] | None = None
    unreadable: str | None = None
    raw: dict[str, Any] | None = None


def stream_changes(event: dict[str, Any], now: Callable[[], float]) -> list[Change]:
    """The changes of a DynamoDB stream event as Lambda delivers it (`{"Records": [...]}`); a record
    that cannot be read becomes an `unreadable` change (parked whole), never an exception."""
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

    changes: list[Change] = []
    for raw in event.get("Records") or []:
        record = DynamoDBRecord(raw)
        try:
            if record.dynamodb is None:
                continue
            changes.append(
                Change(
                    record_id=record.dynamodb.sequence_number or "",
                    event_name=str(record.event_name.name if record.event_name else ""),
                    table=(record.event_source_arn or "").split(":table/")[-1].split("/")[0],
                    keys=record.dynamodb.keys,
                    new_image=record.dynamodb.new_image or None,
                    old_image=record.dynamodb.old_image or None,
                    created_at=float(record.dynamodb.approximate_creation_date_time or now()),
                )
            )
        except Exception as error:  # a record of any shape: parked, never a crash of the batch
            sequence = raw.get("dynamodb", {}).get("SequenceNumber") if isinstance(raw, dict) else None
            changes.append(
                Change(
                    record_id=str(sequence or ""),
                    event_name="",
                    table="",
                    keys={},
                    new_image=None,
                    created_at=now(),
                    unreadable=f"the stream record cannot be read ({type(error).__name__})",
                    raw=raw if isinstance(raw, dict) else {"record": repr(raw)},
                )
            )
    return changes


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
    ) -> None: ...


@dataclass
class Report:
    sent: int = 0
    retried: int = 0
    parked: int = 0
    echoes: int = 0
    requests: int = 0
    invalid_rules: int = 0
    """Records parked because a stored change rule of their table no longer validates."""
    failed: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    """Workspaces whose destination stalled and was given up on for this invocation."""
    by_workspace: dict[str, dict[str, int]] = field(default_factory=dict)
    """sent and parked per workspace (its daily counts, stats.py)."""

    def count(self, workspace_id: str | None, name: str, value: int = 1) -> None:
        if workspace_id:
            counts = self.by_workspace.setdefault(workspace_id, {})
            counts[name] = counts.get(name, 0) + value

    def figures(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "retried": self.retried,
            "parked": self.parked,
            "echoes": self.echoes,
            "requests": self.requests,
            "parked_by_invalid_rules": self.invalid_rules,
            "returned_to_stream": len(self.failed),
            "destinations_given_up": len(self.given_up),
        }

    def add(self, other: Report) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.parked += other.parked
        self.echoes += other.echoes
        self.requests += other.requests
        self.invalid_rules += other.invalid_rules
        self.failed += other.failed
        self.given_up += other.given_up
        for workspace_id, counts in other.by_workspace.items():
            for name, value in counts.items():
                self.count(workspace_id, name, value)


@dataclass(frozen=True)
class Sending:
    """How a batch is sent: each workspace's destination, the HTTP sender, where what cannot be sent is
    parked, the time by which to stop (the invocation's), the clock and sleep to keep it with, and how
    many workspaces are sent to at once (1: one after the other, as tests with a fake clock need)."""

    destination: Callable[[str], Destination | None]
    sender: Sender
    parking: Parking
    deadline: float
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    parallel: int = 1


@dataclass(frozen=True)
class Unsent:
    """What cannot be sent as it is: parked whole with the reason."""

    reason: str
    record: dict[str, Any]
    workspace_id: str | None
    record_id: str
    invalid_rule: bool = False


def deliver(
    changes: Iterable[Change],
    *,
    outbox_table: str,
    own_tables: frozenset[str],
    sending: Sending,
    rules: Iterable[ChangeRule | InvalidRule] = (),
) -> Report:
    """Send every new outbox item, and every change that fires a rule, of the batch; returns what
    happened and which records to retry. No single item can fail the batch: what cannot be sent is parked
    whole with the reason (or, if parking itself fails, returned to the stream)."""
    report = Report()
    rules = list(rules)
    by_workspace: dict[str, list[Outbound]] = {}
    for change in changes:
        if change.table in own_tables:
            report.echoes += 1  # written by the processor from Segment data: never sent back
            continue
        for prepared in prepare(change, outbox_table, rules):
            if isinstance(prepared, Unsent):
                report.invalid_rules += prepared.invalid_rule
                _park_unsent(prepared, sending.parking, report)
            else:
                by_workspace.setdefault(prepared.workspace_id, []).append(prepared)

    _send_all(by_workspace, sending, report, park_homeless=True)
    return report


def redeliver(parked: list[tuple[str, dict[str, Any]]], sending: Sending) -> Report:
    """Send parked track calls again, as (workspace id, payload) pairs, under their own messageIds (so
    Segment dedupes what it already has). What fails for good is parked again with the new reason; what
    is still worth retrying after `deadline` is listed in `failed` by messageId."""
    report = Report()
    by_workspace: dict[str, list[Outbound]] = {}
    for workspace_id, payload in parked:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
        event = Outbound(str(payload.get("messageId", "")), workspace_id, payload, body, sending.clock())
        by_workspace.setdefault(workspace_id, []).append(event)
    _send_all(by_workspace, sending, report, park_homeless=False)
    return report


def prepare(
    change: Change, outbox_table: str, rules: list[ChangeRule | InvalidRule]
) -> Iterator[Outbound | Unsent]:
    """What a change stands for: a new outbox item's track call, or what the change rules of its table
    make of it (their messageIds also name the rule and the record); Unsent for what cannot be sent,
    including the record whole for each stored rule of its table that no longer validates."""
    if change.unreadable is not None:
        yield Unsent(change.unreadable, change.raw or {}, None, change.record_id)
        return
    if change.table == outbox_table:
        if change.event_name == "INSERT" and change.new_image is not None:
            yield _track(change.new_image, change.keys, change)
        return
    document = {"eventName": change.event_name, "old": change.old_image or {}, "new": change.new_image or {}}
    for rule in rules:
        if isinstance(rule, InvalidRule):
            if rule.table in (None, change.table):
                record = {"rule": rule.name, "change": document}
                yield Unsent(rule.reason, record, None, change.record_id, invalid_rule=True)
            continue
        if rule.table != change.table:
            continue
        try:
            if not rule.fires(document):
                continue
            item = rule.outbox_item(document, change.record_id)
        except Unsendable as error:
            yield Unsent(str(error), {"rule": rule.name, "change": document}, None, change.record_id)
            continue
        except Exception as error:  # a rule of any shape over a record of any shape: parked, not a crash
            reason = f"change rule {rule.name} failed on this record ({type(error).__name__})"
            yield Unsent(reason, {"rule": rule.name, "change": document}, None, change.record_id)
            continue
        yield _track(item, {"rule": rule.name, "record": change.record_id, **change.keys}, change)


def _track(item: dict[str, Any], keys: dict[str, Any], change: Change) -> Outbound | Unsent:
    pk = item.get("pk")
    workspace_id = pk.removeprefix("WS#") or None if isinstance(pk, str) and pk.startswith("WS#") else None
    try:
        return track_call(
            item, table=change.table, keys=keys, record_id=change.record_id, created_at=change.created_at
        )
    except Unsendable as error:
        return Unsent(str(error), item, workspace_id, change.record_id)
    except Exception as error:  # values of any type and size: parked whole, never a crash of the batch
        reason = f"the outbox item cannot be made a track call ({type(error).__name__})"
        return Unsent(reason, item, workspace_id, change.record_id)


def _park_unsent(unsent: Unsent, parking: Parking, report: Report) -> None:
    try:
        parking.park_outbound(unsent.reason, unsent.record, None, unsent.workspace_id)
    except Exception:  # parking is down: the record goes back to the stream, to be parked next time
        report.failed.append(unsent.record_id)
    else:
        report.parked += 1
        report.count(unsent.workspace_id, "parked")


def _send_all(
    by_workspace: dict[str, list[Outbound]], sending: Sending, report: Report, *, park_homeless: bool
) -> None:
    """Each workspace's events to its destination, `sending.parallel` workspaces at once. A workspace
    without one: its events are parked (`park_homeless`) or listed in `failed` (left where they are)."""
    work: list[tuple[list[Outbound], Destination]] = []
    for workspace_id, events in by_workspace.items():
        try:
            target = sending.destination(workspace_id)
        except Exception:  # its configuration cannot be read now: retried with the stream
            report.failed += [event.record_id for event in events]
            continue
        if target is not None:
            work.append((events, target))
        elif park_homeless:
            reason = f"workspace {workspace_id} has no Segment write key"
            for event in events:
                _park_unsent(
                    Unsent(reason, event.payload, workspace_id, event.record_id), sending.parking, report
                )
        else:
            report.failed += [event.record_id for event in events]
    if sending.parallel <= 1 or len(work) <= 1:
        for events, target in work:
            _send_workspace(events, target, sending, report)
        return
    with ThreadPoolExecutor(max_workers=min(sending.parallel, len(work))) as pool:
        for each in pool.map(lambda job: _workspace_report(job, sending), work):
            report.add(each)


def _workspace_report(job: tuple[list[Outbound], Destination], sending: Sending) -> Report:
    events, target = job
    report = Report()
    try:
        _send_workspace(events, target, sending, report)
    except Exception:  # never lose a workspace's records to a bug in another thread: back to the stream
        report.failed += [event.record_id for event in events]
    return report


def _send_workspace(events: list[Outbound], target: Destination, sending: Sending, report: Report) -> None:
    """One workspace's events, request by request. Before every attempt (the first included) there must
    be MIN_ATTEMPT_SECONDS left; each attempt waits at most what is left."""
    clock, deadline = sending.clock, sending.deadline
    batches = requests_for(events)
    stalls = tried = 0
    for index, batch in enumerate(batches):
        attempt = 0
        answer = Answer(0, {}, "")
        while True:
            left = deadline - clock()
            if left < MIN_ATTEMPT_SECONDS:
                reason = (
                    f"Segment kept answering {answer.status or 'nothing'}"
                    if tried
                    else "the invocation had no time left to send"
                )
                _slow_down(batches[index:], reason, answer, sending, report)
                return
            body = gzip.compress(request_body(batch, datetime.now(UTC)), compresslevel=6, mtime=0)
            report.requests += 1
            tried += 1
            try:
                answer = sending.sender.send(target.url, target.write_key, body, left)
                outcome = verdict(answer.status)
            except Unreachable as error:
                answer, outcome = Answer(0, {}, str(error)), "retry"
                stalls += error.stalled
            except EndpointRefused as error:
                for rest in batches[index:]:
                    _park(rest, f"the destination is refused: {error}", None, sending, report, target)
                return
            if outcome == "delivered":
                report.sent += len(batch)
                report.count(events[0].workspace_id, "sent", len(batch))
                break
            if outcome == "permanent":
                kind = "a redirect, never followed" if 300 <= answer.status < 400 else "refused the request"
                _park(batch, f"Segment answered {answer.status} ({kind})", answer, sending, report, target)
                break
            if stalls >= STALLS_TOLERATED:  # given up on for this invocation: the other workspaces go on
                report.given_up.append(events[0].workspace_id)
                reason = f"Segment gave no answer in time {stalls} times"
                _slow_down(batches[index:], reason, answer, sending, report)
                return
            wait = retry_after_seconds(answer.headers.get("retry-after"), datetime.now(UTC))
            if wait is None:
                jitter = 0.5 + random.random()  # noqa: S311  # nosec B311  # retry jitter, not a secret
                wait = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)] * jitter
            if clock() + wait + MIN_ATTEMPT_SECONDS <= deadline:
                sending.sleep(wait)
                attempt += 1
                report.retried += 1
                continue
            # Out of time: wait what is left (so retries are spaced even when Retry-After is long), then
            # this workspace slows down: what is old enough is parked, the rest goes back to the stream.
            sending.sleep(max(0.0, min(wait, deadline - clock())))
            _slow_down(
                batches[index:],
                f"Segment kept answering {answer.status or 'nothing'}",
                answer,
                sending,
                report,
            )
            return


def _slow_down(
    batches: list[list[Outbound]], reason: str, answer: Answer, sending: Sending, report: Report
) -> None:
    """What could not be sent yet: parked when older than PARK_AFTER_SECONDS, else back to the stream."""
    now = sending.clock()
    for rest in batches:
        old = [e for e in rest if now - e.created_at > PARK_AFTER_SECONDS]
        _park(old, reason, answer, sending, report)
        report.failed += [e.record_id for e in rest if e not in old]


def _park(
    batch: list[Outbound],
    reason: str,
    answer: Answer | None,
    sending: Sending,
    report: Report,
    target: Destination | None = None,
) -> None:
    response = None
    if answer is not None:
        body = redacted(answer.body, target.write_key) if target is not None else answer.body
        response = {"status": answer.status, "body": body[:MAX_RESPONSE_KEPT]}
    for event in batch:
        _park_event(event, reason, response, sending.parking, report)


def _park_event(
    event: Outbound, reason: str, response: dict[str, Any] | None, parking: Parking, report: Report
) -> None:
    try:
        parking.park_outbound(reason, event.payload, response, event.workspace_id)
    except Exception:  # parking is down: back to the stream (Segment dedupes a later re-send)
        report.failed.append(event.record_id)
    else:
        report.parked += 1
        report.count(event.workspace_id, "parked")
