"""Delivery: outbox stream records -> Segment, retried within the invocation's time, never lost.

- 2xx: delivered. Segment dedupes on messageId (ours are deterministic), so re-sending is harmless.
- 429 (its Retry-After honoured), 408, 5xx, timeouts, connection errors: retried with jittered backoff
  while the invocation has time; then the records go back to the stream (partial batch response, which
  keeps the shard's order) — unless they are older than PARK_AFTER_SECONDS, in which case they are parked.
- Other 4xx, oversized or invalid items, a workspace without a write key: parked at once, whole, with
  the reason and Segment's answer, in the EmitterDLQ (the CLI lists and re-drives it).
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from segment_bridge.outbound import (
    ChangeRule,
    Destination,
    Outbound,
    Unsendable,
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
MAX_RESPONSE_KEPT = 2048


@dataclass(frozen=True)
class Change:
    """One stream record, as the emitter needs it."""

    record_id: str
    event_name: str
    table: str
    keys: dict[str, Any]
    new_image: dict[str, Any] | None
    created_at: float
    old_image: dict[str, Any] | None = None


def stream_changes(event: dict[str, Any], now: Callable[[], float]) -> list[Change]:
    """The changes of a DynamoDB stream event as Lambda delivers it (`{"Records": [...]}`)."""
    from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent

    return [
        Change(
            record_id=record.dynamodb.sequence_number or "",
            event_name=str(record.event_name.name if record.event_name else ""),
            table=(record.event_source_arn or "").split(":table/")[-1].split("/")[0],
            keys=record.dynamodb.keys,
            new_image=record.dynamodb.new_image or None,
            old_image=record.dynamodb.old_image or None,
            created_at=float(record.dynamodb.approximate_creation_date_time or now()),
        )
        for record in DynamoDBStreamEvent(event).records
        if record.dynamodb is not None
    ]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: str


class Sender(Protocol):
    def send(self, url: str, write_key: str, body: bytes) -> Answer: ...


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
    failed: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "retried": self.retried,
            "parked": self.parked,
            "echoes": self.echoes,
            "requests": self.requests,
            "returned_to_stream": len(self.failed),
        }


@dataclass(frozen=True)
class Sending:
    """How a batch is sent: each workspace's destination, the HTTP sender, where what cannot be sent is
    parked, the time by which to stop (the invocation's), and the clock and sleep to keep it with."""

    destination: Callable[[str], Destination | None]
    sender: Sender
    parking: Parking
    deadline: float
    clock: Callable[[], float]
    sleep: Callable[[float], None]


class Unreachable(Exception):
    """A request that could not be answered (timeout, connection error): worth retrying."""


def deliver(
    changes: Iterable[Change],
    *,
    outbox_table: str,
    own_tables: frozenset[str],
    sending: Sending,
    rules: Iterable[ChangeRule] = (),
) -> Report:
    """Send every new outbox item, and every change that fires a rule, of the batch; returns what
    happened and which records to retry."""
    report = Report()
    by_workspace: dict[str, list[Outbound]] = {}
    for change in changes:
        if change.table in own_tables:
            report.echoes += 1  # written by the processor from Segment data: never sent back
            continue
        for item, keys in _items_of(change, outbox_table, rules):
            try:
                event = track_call(
                    item,
                    table=change.table,
                    keys=keys,
                    record_id=change.record_id,
                    created_at=change.created_at,
                )
            except Unsendable as error:
                sending.parking.park_outbound(str(error), item)
                report.parked += 1
                continue
            by_workspace.setdefault(event.workspace_id, []).append(event)

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


def _send_all(
    by_workspace: dict[str, list[Outbound]], sending: Sending, report: Report, *, park_homeless: bool
) -> None:
    """Each workspace's events to its destination. A workspace without one: its events are parked
    (`park_homeless`) or listed in `failed` (left where they are)."""
    for workspace_id, events in by_workspace.items():
        target = sending.destination(workspace_id)
        if target is not None:
            _send_workspace(events, target, sending, report)
        elif park_homeless:
            for event in events:
                sending.parking.park_outbound(
                    f"workspace {workspace_id} has no Segment write key", event.payload, None, workspace_id
                )
            report.parked += len(events)
        else:
            report.failed += [event.record_id for event in events]


def _items_of(
    change: Change, outbox_table: str, rules: Iterable[ChangeRule]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(outbox item, keys for its messageId) for what a change stands for: a new outbox item, or what
    the change rules of its table make of it (their messageIds also name the rule and the record)."""
    if change.table == outbox_table:
        if change.event_name == "INSERT" and change.new_image is not None:
            return [(change.new_image, change.keys)]
        return []
    document = {"eventName": change.event_name, "old": change.old_image or {}, "new": change.new_image or {}}
    return [
        (
            rule.outbox_item(document, change.record_id),
            {"rule": rule.name, "record": change.record_id, **change.keys},
        )
        for rule in rules
        if rule.table == change.table and rule.fires(document)
    ]


def _send_workspace(events: list[Outbound], target: Destination, sending: Sending, report: Report) -> None:
    sender, parking, deadline, clock, sleep = (
        sending.sender,
        sending.parking,
        sending.deadline,
        sending.clock,
        sending.sleep,
    )
    batches = requests_for(events)
    for index, batch in enumerate(batches):
        attempt = 0
        while True:
            body = gzip.compress(request_body(batch, datetime.now(UTC)), compresslevel=6, mtime=0)
            report.requests += 1
            try:
                answer = sender.send(target.url, target.write_key, body)
                outcome = verdict(answer.status)
            except Unreachable as error:
                answer, outcome = Answer(0, {}, str(error)), "retry"
            if outcome == "delivered":
                report.sent += len(batch)
                break
            if outcome == "permanent":
                _park(batch, f"Segment refused the request ({answer.status})", answer, parking, report)
                break
            wait = retry_after_seconds(answer.headers.get("retry-after"), datetime.now(UTC))
            if wait is None:
                jitter = 0.5 + random.random()  # noqa: S311  # nosec B311  # retry jitter, not a secret
                wait = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)] * jitter
            if clock() + wait < deadline:
                sleep(wait)
                attempt += 1
                report.retried += 1
                continue
            # Out of time: wait what is left (so retries are spaced even when Retry-After is long), then
            # this workspace slows down: what is old enough is parked, the rest goes back to the stream.
            sleep(max(0.0, min(wait, deadline - clock())))
            for rest in batches[index:]:
                old = [e for e in rest if clock() - e.created_at > PARK_AFTER_SECONDS]
                _park(old, f"Segment kept answering {answer.status or 'nothing'}", answer, parking, report)
                report.failed += [e.record_id for e in rest if e not in old]
            return


def _park(batch: list[Outbound], reason: str, answer: Answer, parking: Parking, report: Report) -> None:
    response = {"status": answer.status, "body": answer.body[:MAX_RESPONSE_KEPT]}
    for event in batch:
        parking.park_outbound(reason, event.payload, response, event.workspace_id)
    report.parked += len(batch)


class HttpSender:
    """POST /v1/batch with Basic auth (the write key as user), gzip, and bounded timeouts."""

    def __init__(self, timeout: tuple[float, float] = (3.0, 10.0)) -> None:
        import requests

        self._requests = requests
        self._session = requests.Session()
        self._timeout = timeout

    def send(self, url: str, write_key: str, body: bytes) -> Answer:
        try:
            response = self._session.post(
                url,
                data=body,
                auth=(write_key, ""),
                headers={
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                    "User-Agent": "segment-bridge",
                },
                timeout=self._timeout,
            )
        except self._requests.RequestException as error:
            raise Unreachable(type(error).__name__) from None
        headers = {name.lower(): value for name, value in response.headers.items()}
        return Answer(response.status_code, headers, response.text)
