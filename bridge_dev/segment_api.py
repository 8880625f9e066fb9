"""A local stand-in for Segment's HTTP Tracking API (/v1/batch), for tests and the local stack.

It enforces what Segment documents — Basic auth with a known write key, at most 500 KB and 2,500 events
per request, 32 KB per event — dedupes on messageId as Segment does, and can be told to answer the next
requests with 429 (and Retry-After), 500, 400, or to not answer in time.
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


class FakeSegment:
    def __init__(self, write_keys: set[str], log: Any = None) -> None:
        self.write_keys = set(write_keys)
        self.log = log
        self.events: dict[str, dict[str, Any]] = {}  # messageId -> event: what Segment would keep
        self.deliveries: dict[str, int] = {}  # messageId -> times received (before dedupe)
        self.received_at: dict[str, float] = {}  # messageId -> time.monotonic() it was first taken
        self.requests: list[Received] = []
        self.script: deque[Scripted] = deque()
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

    # --- the API ---------------------------------------------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._handle(request)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        raw = request.get_data()
        arrived = time.monotonic()  # the whole request is in
        with self._lock:
            scripted = self.script.popleft() if self.script else None
        if scripted is not None and scripted.delay:
            time.sleep(scripted.delay)
        if request.method != "POST" or request.path != "/v1/batch":
            return self._reply(request, raw, 0, 0, 404, {"code": "not_found", "message": "Not Found"})
        write_key = _basic_user(request.headers.get("Authorization"))
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
        if scripted is not None and scripted.status != 200:
            return self._reply(
                request,
                raw,
                len(body),
                len(batch),
                scripted.status,
                {"code": "scripted", "message": "scripted answer"},
                scripted.headers,
            )
        with self._lock:
            for event in batch:
                self.deliveries[event["messageId"]] = self.deliveries.get(event["messageId"], 0) + 1
                self.events.setdefault(event["messageId"], event)
                self.received_at.setdefault(event["messageId"], arrived)
        if self.log is not None:
            names = ", ".join(f"{e.get('type')} {e.get('event', '')!r}" for e in batch[:3])
            self.log(f"Segment stand-in <- {len(batch)} event(s): {names}{' ...' if len(batch) > 3 else ''}")
        return self._reply(request, raw, len(body), len(batch), 200, {"success": True})

    def _reply(
        self,
        request: Request,
        raw: bytes,
        body_bytes: int,
        events: int,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
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
