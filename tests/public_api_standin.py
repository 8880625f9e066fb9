"""A strict stand-in for Segment's Public API `GET /regulations`, written from its reference
(docs.segmentapis.com: Pagination, Rate Limits, Deletion and Suppression; the public-api-sdk models), on
127.0.0.1 and a free port. What it holds clients to:

- `Authorization: Bearer <token>` with the one token it knows; anything else is 401 (Segment's error
  shape: {"errors": [{"type", "message"}]});
- `pagination.count` is required (1-200) and `pagination.cursor` must be one it handed out: 422 if not;
- pages: {"data": {"regulations": [...], "pagination": {"current", "next", "previous", "totalEntries"}}},
  `next` null on the last page;
- a rate-limit window of `limit` requests per `window_seconds`: every answer carries X-RateLimit-Consumed,
  X-RateLimit-Remaining and X-RateLimit-Reset (RFC 5322); past the limit, 429 with
  errors[0].data.msBeforeNext. A request during a window it refused counts as `ignored_limits`.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response


@dataclass
class PublicApiStandIn:
    token: str
    regulations: list[dict[str, Any]] = field(default_factory=list)
    limit: int = 1000
    window_seconds: float = 60.0
    requests: list[dict[str, str]] = field(default_factory=list)
    refused_unauthorized: int = 0
    rate_limited: int = 0
    ignored_limits: int = 0
    _window_start: float = 0.0
    _consumed: int = 0
    _limited_until: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _server: BaseWSGIServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> PublicApiStandIn:
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> PublicApiStandIn:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- the API --------------------------------------------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self._answer(request)(environ, start_response)

    def _answer(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(dict(request.args))
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                self.refused_unauthorized += 1
                return _json(401, {"errors": [{"type": "unauthorized", "message": "Unauthorized"}]})
            now = time.monotonic()
            if now < self._limited_until:
                self.ignored_limits += 1
            if now - self._window_start >= self.window_seconds:
                self._window_start, self._consumed = now, 0
            reset_in = self.window_seconds - (now - self._window_start)
            if self._consumed >= self.limit:
                self.rate_limited += 1
                self._limited_until = self._window_start + self.window_seconds
                body = {
                    "errors": [
                        {
                            "type": "RequestError",
                            "message": "Too many requests",
                            "data": {
                                "remainingPoints": 0,
                                "msBeforeNext": int(reset_in * 1000) + 1,
                                "consumedPoints": self._consumed,
                            },
                        }
                    ]
                }
                return _json(429, body, self._limit_headers(reset_in))
            self._consumed += 1
            headers = self._limit_headers(reset_in)
            if request.method != "GET" or request.path != "/regulations":
                return _json(
                    404, {"errors": [{"type": "not-found", "message": "Resource not found"}]}, headers
                )
            return self._page(request, headers)

    def _limit_headers(self, reset_in: float) -> dict[str, str]:
        reset = datetime.now(UTC) + timedelta(seconds=reset_in)
        return {
            "X-RateLimit-Consumed": str(self._consumed),
            "X-RateLimit-Remaining": str(max(0, self.limit - self._consumed)),
            "X-RateLimit-Reset": format_datetime(
                reset.replace(microsecond=0) + timedelta(seconds=1), usegmt=True
            ),
        }

    def _page(self, request: Request, headers: dict[str, str]) -> Response:
        count_text = request.args.get("pagination.count")
        if count_text is None or not count_text.isdigit() or not 1 <= int(count_text) <= 200:
            return _json(
                422, {"errors": [{"type": "validation", "message": "pagination.count: 1-200"}]}, headers
            )
        cursor = request.args.get("pagination.cursor")
        try:
            offset = int(base64.b64decode(cursor, validate=True)) if cursor else 0
        except ValueError:
            return _json(422, {"errors": [{"type": "validation", "message": "pagination.cursor"}]}, headers)
        if not 0 <= offset <= len(self.regulations):
            return _json(422, {"errors": [{"type": "validation", "message": "pagination.cursor"}]}, headers)
        count = int(count_text)
        after = offset + count
        body = {
            "data": {
                "regulations": self.regulations[offset:after],
                "pagination": {
                    "current": _cursor(offset),
                    "next": _cursor(after) if after < len(self.regulations) else None,
                    "previous": _cursor(max(0, offset - count)) if offset else None,
                    "totalEntries": len(self.regulations),
                },
            }
        }
        return _json(200, body, headers)


def _cursor(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode()


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, headers=headers or {}, content_type="application/vnd.segment.v1+json"
    )


def regulation(
    regulation_id: str,
    subjects: list[str],
    created_at: str,
    regulation_type: str = "SUPPRESS_WITH_DELETE",
    subject_type: str = "USER_ID",
    status: str = "INITIALIZED",
) -> dict[str, Any]:
    """A regulation as the Public API lists it (RegulationListEntryV1)."""
    return {
        "id": regulation_id,
        "subjectType": subject_type,
        "subjects": subjects,
        "status": status,
        "createdAt": created_at,
        "regulationType": regulation_type,
    }
