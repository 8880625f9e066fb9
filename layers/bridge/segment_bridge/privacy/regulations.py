"""Segment's own regulations, opt-in (docs/privacy-receipts.md): a workspace that stores a Segment Public
API token has its regulations listed every hour (`GET /regulations`, Segment keeps 90 days of them) and
each new deletion queued as a `delete`, once.

What Segment's Public API reference says, and this follows (docs.segmentapis.com):
- `Authorization: Bearer <token>`; https://api.segmentapis.com (EU: https://eu1.api.segmentapis.com);
- list operations take `pagination.count` (1-200 on every list) and `pagination.cursor`, and answer
  `{"data": {"regulations": [...], "pagination": {"current", "next", "previous", "totalEntries"}}}`;
  no `next` (null or absent) on the last page;
- a regulation: id, subjectType (USER_ID | OBJECT_ID), subjects (up to 5,000 ids), status, createdAt,
  regulationType (DELETE_INTERNAL | DELETE_ONLY | SUPPRESS_ONLY | SUPPRESS_WITH_DELETE | UNSUPPRESS),
  finishedAt?;
- every answer carries X-RateLimit-Consumed, X-RateLimit-Remaining and X-RateLimit-Reset (an RFC 5322
  time); a rate-limited request fails with 429 and `errors[].data.msBeforeNext`;
- a bad token is refused with 401 (403 when it lacks the permission).

Exactly once: the workspace's cursor is the latest createdAt queued; each run takes the regulations
created since the cursor less OVERLAP (Segment's list is not promised to be in order, nor complete at
once), and skips a subject whose receipt for that regulation exists already (store/receipts.py). A
regulation is queued, then its receipts written, then the cursor moved: a crash in between queues it
again, a repeat of the same delete (same subject, same time), which changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from segment_bridge.destinations import endpoint_url
from segment_bridge.envelope import pack
from segment_bridge.errors import BridgeError, ServiceUnavailable
from segment_bridge.limits import id_fits
from segment_bridge.receipts import Receipt, Requested, requested_in
from segment_bridge.settings import EndpointPolicy
from segment_bridge.timestamps import InvalidTimestamp, iso, parse

PUBLIC_API = {"us": "https://api.segmentapis.com", "eu": "https://eu1.api.segmentapis.com"}
DELETING_TYPES = frozenset({"SUPPRESS_WITH_DELETE", "DELETE_ONLY"})
"""The regulations that delete a user's data; the others suppress or unsuppress collection only."""
PAGE_COUNT = 200
OVERLAP = timedelta(days=1)
RATE_LIMIT_ATTEMPTS = 5
MAX_WAIT_SECONDS = 60.0
TIMEOUT_SECONDS = 10.0
ACCEPT = "application/vnd.segment.v1+json"


class TokenRefused(BridgeError):
    """Segment refused the workspace's Public API token (401, or 403 without the permission)."""

    code = "public_api_token_refused"
    status = 401


class PollOutOfTime(Exception):  # a state, not a failure
    """The invocation's time is nearly over: the poll stops before its next request or wait (the cursor
    stays where it was; the next attempt lists again, and what this one queued has its receipts)."""


class PublicApiUnavailable(ServiceUnavailable):
    """Segment's Public API did not answer usefully (5xx, still rate-limited, unreadable): the next run
    retries."""


class Regulation(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    subjectType: str
    subjects: list[str]
    status: str
    createdAt: str
    regulationType: str | None = None
    finishedAt: str | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Http(Protocol):
    def get(self, url: str, params: dict[str, str], headers: dict[str, str]) -> Answer: ...


class RequestsHttp:
    """`requests` with a timeout, no redirects followed (the token never goes elsewhere)."""

    def get(self, url: str, params: dict[str, str], headers: dict[str, str]) -> Answer:
        import requests

        try:
            response = requests.get(
                url, params=params, headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False
            )
        except requests.RequestException:
            raise PublicApiUnavailable(
                "Segment's Public API could not be reached; the next run retries."
            ) from None
        return Answer(
            response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content
        )


def api_base(endpoint: str, policy: EndpointPolicy) -> str:
    """us, eu or a URL (a proxy; a loopback stand-in under the `local` policy), checked like the
    Tracking API's endpoints (EndpointRefused)."""
    if endpoint in PUBLIC_API:
        return PUBLIC_API[endpoint]
    endpoint_url(endpoint, policy)  # refuses what the policy does not send to
    return endpoint.rstrip("/")


def wait_seconds(answer: Answer, now: datetime) -> float:
    """How long a 429 says to wait: its body's msBeforeNext, else X-RateLimit-Reset (RFC 5322), else
    Retry-After (seconds); at most MAX_WAIT_SECONDS, at least a second."""
    try:
        errors = json.loads(answer.body).get("errors") or []
        ms = errors[0].get("data", {}).get("msBeforeNext")
        if isinstance(ms, int | float) and ms >= 0:
            return min(MAX_WAIT_SECONDS, max(1.0, ms / 1000))
    except (ValueError, AttributeError, IndexError, TypeError):
        pass
    reset = answer.headers.get("x-ratelimit-reset")
    if reset:
        try:
            return min(MAX_WAIT_SECONDS, max(1.0, (parsedate_to_datetime(reset) - now).total_seconds()))
        except (TypeError, ValueError):
            pass
    retry_after = answer.headers.get("retry-after", "")
    if retry_after.isdigit():
        return min(MAX_WAIT_SECONDS, max(1.0, float(retry_after)))
    return MAX_WAIT_SECONDS


@dataclass
class PublicApiClient:
    base_url: str
    token: str = field(repr=False)
    http: Http = field(default_factory=RequestsHttp)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    out_of_time: Callable[[], bool] = lambda: False

    def regulations(self) -> Iterator[Regulation]:
        """Every regulation the workspace lists, page by page."""
        cursor: str | None = None
        while True:
            params = {"pagination.count": str(PAGE_COUNT)}
            if cursor:
                params["pagination.cursor"] = cursor
            answer = self._get("/regulations", params)
            try:
                data = json.loads(answer.body)["data"]
                page = [Regulation.model_validate(entry) for entry in data["regulations"]]
                cursor = (data.get("pagination") or {}).get("next")
            except (ValueError, KeyError, TypeError, ValidationError):
                raise PublicApiUnavailable(
                    "Segment's Public API answered a list that cannot be read."
                ) from None
            yield from page
            if not cursor:
                return
            if answer.headers.get("x-ratelimit-remaining") == "0":  # the window is spent: wait for the next
                self._wait(wait_seconds(Answer(429, answer.headers, b""), self.clock()))

    def _wait(self, seconds: float) -> None:
        if self.out_of_time():
            raise PollOutOfTime
        self.sleep(seconds)

    def _get(self, path: str, params: dict[str, str]) -> Answer:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": ACCEPT}
        for _ in range(RATE_LIMIT_ATTEMPTS):
            if self.out_of_time():
                raise PollOutOfTime
            answer = self.http.get(self.base_url + path, params, headers)
            if answer.status == 429:
                self._wait(wait_seconds(answer, self.clock()))
                continue
            if answer.status in (401, 403):
                raise TokenRefused(
                    f"Segment's Public API refused the workspace's token ({answer.status}): store a valid "
                    "token with `segment-bridge deletions token WORKSPACE` (it needs the Workspace Owner "
                    "or a privacy-read role), or remove it with --unset."
                )
            if answer.status != 200:
                raise PublicApiUnavailable(
                    f"Segment's Public API answered {answer.status}; the next run retries."
                )
            return answer
        raise PublicApiUnavailable(
            "Segment's Public API kept rate-limiting the requests; the next run retries."
        )


# --- what a run queues -----------------------------------------------------------------------------


def _created(regulation: Regulation) -> str | None:
    try:
        return iso(parse(regulation.createdAt))
    except (InvalidTimestamp, ValueError, OverflowError):
        return None


def deletes_of(regulation: Regulation, received_at: str) -> list[dict[str, Any]]:
    """The regulation's deletes, one per user id, in intake's output shape (messageId, timestamp,
    receivedAt), stamped at the regulation's createdAt: the same regulation gives the same deletes."""
    created = _created(regulation)
    if (
        created is None
        or regulation.regulationType not in DELETING_TYPES
        or regulation.subjectType != "USER_ID"
        or regulation.status == "INVALID"
    ):
        return []
    events = []
    for subject in dict.fromkeys(regulation.subjects):
        if not subject or not id_fits(subject):
            continue
        digest = hashlib.blake2b(
            f"{regulation.id}\n{subject}".encode("utf-8", "surrogatepass"), digest_size=16
        )
        events.append(
            {
                "type": "delete",
                "userId": subject,
                "timestamp": created,
                "receivedAt": received_at,
                "messageId": f"sb-regulation-{digest.hexdigest()}",
            }
        )
    return events


class Queue(Protocol):
    def enqueue(self, bodies: list[str], workspace_id: str) -> None: ...


class ReceiptReads(Protocol):
    def received(self, workspace_id: str, requests: list[Requested]) -> None: ...
    def of_entity(self, workspace_id: str, key: str) -> list[Receipt]: ...


class Cursor(Protocol):
    def save_regulations_cursor(self, workspace_id: str, cursor: str) -> None: ...


@dataclass
class Polled:
    """What one run did for a workspace (counts only: never ids)."""

    listed: int = 0
    regulations_queued: int = 0
    deletes_queued: int = 0
    already_received: int = 0

    def figures(self) -> dict[str, int]:
        return {
            "listed": self.listed,
            "regulations_queued": self.regulations_queued,
            "deletes_queued": self.deletes_queued,
            "already_received": self.already_received,
        }


def poll(
    workspace_id: str,
    regulations: Iterator[Regulation],
    cursor: str | None,
    *,
    queue: Queue,
    receipts: ReceiptReads,
    polls: Cursor,
    max_bytes: int,
    now: datetime,
    done: Polled | None = None,
) -> Polled:
    """Queue the deletes of the regulations created since `cursor` (less OVERLAP) that have no receipt
    yet, write their receipts, then move the cursor to the latest createdAt listed. `done` (if given)
    is counted into as it goes, so a poll stopped part way says what it queued."""
    done = Polled() if done is None else done
    since = iso(parse(cursor) - OVERLAP) if cursor else None
    latest = cursor
    received_at = iso(now)
    for regulation in regulations:
        done.listed += 1
        created = _created(regulation)
        if created is None or (since is not None and created < since):
            continue
        events = deletes_of(regulation, received_at)
        requests = requested_in(
            events, received_at=received_at, source="regulation", request_id=regulation.id
        )
        fresh = [
            r
            for r in requests
            if not any(x.deleted_at == r.deleted_at for x in receipts.of_entity(workspace_id, r.key))
        ]
        done.already_received += len(requests) - len(fresh)
        keys = {r.key for r in fresh}
        events = [e for e in events if f"U#{e['userId']}" in keys]
        if events:
            bodies = pack(
                [json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode("utf-8") for e in events],
                workspace_id=workspace_id,
                request_id=regulation.id,
                received_at=received_at,
                max_bytes=max_bytes,
                source="regulation",
            )
            queue.enqueue(bodies, workspace_id)
            receipts.received(workspace_id, fresh)
            done.regulations_queued += 1
            done.deletes_queued += len(events)
        if latest is None or created > latest:
            latest = created
    if latest is not None and latest != cursor:
        polls.save_regulations_cursor(workspace_id, latest)
    return done


class RegulationSettings(Cursor, Protocol):
    """store.regulations: the opt-in's endpoint and cursor, and the token (a secret)."""

    def regulations_settings(self, workspace_id: str) -> dict[str, Any] | None: ...
    def regulations_token(self, workspace_id: str) -> str | None: ...


def poll_workspace(
    workspace_id: str,
    *,
    polls: RegulationSettings,
    queue: Queue,
    receipts: ReceiptReads,
    policy: EndpointPolicy,
    max_bytes: int,
    http: Http | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: datetime | None = None,
    out_of_time: Callable[[], bool] = lambda: False,
    done: Polled | None = None,
) -> Polled | None:
    """One workspace's run (a `regulations-poll` task's, jobs/regulations.py, or `segment-bridge
    deletions poll`); None if it has no token. Raises TokenRefused for a token Segment refuses,
    PublicApiUnavailable when its API does not answer, PollOutOfTime when `out_of_time` says so before a
    request or a wait (the cursor then stays where it was)."""
    settings = polls.regulations_settings(workspace_id)
    token = polls.regulations_token(workspace_id) if settings is not None else None
    if settings is None or not token:
        return None
    client = PublicApiClient(
        api_base(str(settings["endpoint"]), policy),
        token,
        http or RequestsHttp(),
        sleep,
        out_of_time=out_of_time,
    )
    return poll(
        workspace_id,
        client.regulations(),
        settings.get("cursor"),
        queue=queue,
        receipts=receipts,
        polls=polls,
        max_bytes=max_bytes,
        now=now or datetime.now(UTC),
        done=done,
    )


def oldest_age_seconds(oldest: Receipt | None, now: datetime) -> float:
    """How long the oldest unfinished request has waited since it was received (0 if none waits)."""
    if oldest is None:
        return 0.0
    try:
        return max(0.0, (now - parse(oldest.received_at)).total_seconds())
    except (InvalidTimestamp, ValueError, OverflowError):
        return 0.0
