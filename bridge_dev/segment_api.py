"""A local stand-in for Segment's HTTP Tracking API (/v1/batch), for tests and the local stack.

It enforces what Segment documents — Basic auth with a known write key, at most 500 KB and 2,500 events
per request, 32 KB per event — dedupes on messageId as Segment does, and can be told to answer the next
requests with 429 (and Retry-After), 500, 400, or to not answer in time; to answer one write key's
requests in a standing way (a workspace's outage: `answer_for`); or to refuse with a 400 every batch
holding a poisoned event (`refuse_events`), as Segment refuses a whole batch for one bad event.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

MAX_REQUEST_BYTES = 500 * 1024
MAX_REQUEST_EVENTS = 2500
MAX_EVENT_BYTES = 32 * 1024


@dataclass(frozen=True)
class Scripted:
    """An answer to give instead of the real one: a status (with headers), or a delay before answering."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    path: str
    write_key: str | None
    raw_bytes: int
    body_bytes: int
    events: int
    status: int
    body_write_key: str | None = None


class FakeSegment:
    def __init__(self, write_keys: set[str], log: Any = None) -> None:
        self.write_keys = set(write_keys)
        self.log = log
        self.events: dict[str, dict[str, Any]] = {}  # messageId -> event: what Segment would keep
        self.deliveries: dict[str, int] = {}  # messageId -> times received (before dedupe)
        self.received_at: dict[str, float] = {}  # messageId -> time.monotonic() it was first taken
        self.requests: list[Received] = []
        self.script: deque[Scripted] = deque()
        self.standing: dict[str, Scripted] = {}  # write key -> the answer to all its requests
        self.refuse_events: set[str] = set()  # messageIds whose batches are answered 400
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # --- control -------------------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeSegment:
        self._server = make_server("127.0.0.1", port, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-segment", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeSegment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer_next(self, *answers: Scripted) -> None:
        with self._lock:
            self.script.extend(answers)

    def answer_for(self, write_key: str, answer: Scripted | None) -> None:
        """Answer every request with this write key so (None: as usual again)."""
        with self._lock:
            if answer is None:
                self.standing.pop(write_key, None)
            else:
                self.standing[write_key] = answer

    # --- the API ---------------------------------------------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._handle(request)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        raw = request.get_data()
        arrived = time.monotonic()  # the whole request is in
        write_key = _basic_user(request.headers.get("Authorization"))
        with self._lock:
            scripted = self.script.popleft() if self.script else self.standing.get(write_key or "")
        if scripted is not None and scripted.delay:
            time.sleep(scripted.delay)
        if request.method != "POST" or request.path != "/v1/batch":
            return self._reply(request, raw, 0, 0, 404, {"code": "not_found", "message": "Not Found"})
        if write_key not in self.write_keys:
            return self._reply(
                request, raw, 0, 0, 401, {"code": "unauthorized", "message": "Invalid write key"}
            )
        body = gzip.decompress(raw) if request.headers.get("Content-Encoding") == "gzip" else raw
        try:
            document = json.loads(body)
            batch = document["batch"]
        except (ValueError, KeyError, TypeError):
            return self._reply(
                request, raw, len(body), 0, 400, {"code": "invalid_json", "message": "bad body"}
            )
        if len(body) > MAX_REQUEST_BYTES or len(batch) > MAX_REQUEST_EVENTS:
            return self._reply(
                request, raw, len(body), len(batch), 400, {"code": "too_large", "message": "batch"}
            )
        if any(len(json.dumps(event, separators=(",", ":")).encode()) > MAX_EVENT_BYTES for event in batch):
            return self._reply(
                request, raw, len(body), len(batch), 400, {"code": "too_large", "message": "event"}
            )
        if self.refuse_events and any(event.get("messageId") in self.refuse_events for event in batch):
            return self._reply(
                request,
                raw,
                len(body),
                len(batch),
                400,
                {"code": "invalid_event", "message": "an event of the batch is invalid"},
                body_write_key=document.get("writeKey"),
            )
        if scripted is not None and scripted.status != 200:
            return self._reply(
                request,
                raw,
                len(body),
                len(batch),
                scripted.status,
                {"code": "scripted", "message": "scripted answer"},
                scripted.headers,
                body_write_key=document.get("writeKey"),
            )
        with self._lock:
            for event in batch:
                self.deliveries[event["messageId"]] = self.deliveries.get(event["messageId"], 0) + 1
                self.events.setdefault(event["messageId"], event)
                self.received_at.setdefault(event["messageId"], arrived)
        if self.log is not None:
            names = ", ".join(f"{e.get('type')} {e.get('event', '')!r}" for e in batch[:3])
            self.log(f"Segment stand-in <- {len(batch)} event(s): {names}{' ...' if len(batch) > 3 else ''}")
        key = document.get("writeKey")
        return self._reply(request, raw, len(body), len(batch), 200, {"success": True}, body_write_key=key)

    def _reply(
        self,
        request: Request,
        raw: bytes,
        body_bytes: int,
        events: int,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
        *,
        body_write_key: Any = None,
    ) -> Response:
        with self._lock:
            self.requests.append(
                Received(
                    request.path,
                    _basic_user(request.headers.get("Authorization")),
                    len(raw),
                    body_bytes,
                    events,
                    status,
                    body_write_key if isinstance(body_write_key, str) else None,
                )
            )
        return Response(
            json.dumps(payload), status=status, headers=headers or {}, content_type="application/json"
        )


def _basic_user(header: str | None) -> str | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        return base64.b64decode(header[6:]).decode().partition(":")[0]
    except ValueError:
        return None
