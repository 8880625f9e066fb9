"""Egress: the one way the emitter reaches a destination — an HTTPS POST to /v1/batch, only to addresses
the endpoint policy allows (checked on what the host resolves to, at each send), no redirect followed,
bounded waits, and an answer kept bounded and without the write key in it."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from typing import Any

from segment_bridge.outbound import EndpointRefused, address_refusal, endpoint_url
from segment_bridge.settings import EndpointPolicy

ATTEMPT_SECONDS = (3.0, 10.0)
"""The most one request may wait to connect, and then for each read of its answer."""
MAX_RESPONSE_KEPT = 1024
"""Characters of a destination's answer kept with what is parked."""
REDACTED = "[redacted]"
REDACTED = "[redacted]"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: str


class Unreachable(Exception):
    """A request that could not be answered: worth retrying. `stalled`: no answer in time (as opposed to
    a connection refused or reset)."""

    def __init__(self, reason: str, *, stalled: bool = False) -> None:
        super().__init__(reason)
        self.stalled = stalled


def redacted(text: str, write_key: str) -> str:
    """`text` without the write key in any form a server could echo it (as is, Basic-encoded, quoted)."""
    if not write_key:
        return text
    forms = {
        write_key,
        base64.b64encode(f"{write_key}:".encode()).decode(),
        base64.b64encode(f"{write_key}:".encode()).decode().rstrip("="),
        base64.b64encode(write_key.encode()).decode().rstrip("="),
        json.dumps(write_key)[1:-1],
    }
    for form in sorted(forms, key=len, reverse=True):
        if len(form) >= 4:
            text = text.replace(form, REDACTED)
    return text


class HttpSender:
    """POST /v1/batch with Basic auth (the write key as user), gzip, bounded timeouts, no redirects
    followed, a bounded answer, and only to addresses the endpoint policy allows (checked on the
    addresses the host resolves to, at each send)."""

    def __init__(
        self, timeout: tuple[float, float] = ATTEMPT_SECONDS, policy: EndpointPolicy = "public"
    ) -> None:
        import requests

        self._requests = requests
        self._local = threading.local()
        self._timeout = timeout
        self._policy = policy

    def _session(self) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._requests.Session()
            session.trust_env = False  # no proxy or .netrc from the environment: only the stored endpoint
        return session

    def send(self, url: str, write_key: str, body: bytes, seconds_left: float) -> Answer:
        import urllib3

        check_resolved(url, self._policy)
        connect, read = self._timeout
        timeout = urllib3.Timeout(
            connect=min(connect, seconds_left), read=min(read, seconds_left), total=seconds_left
        )
        try:
            with self._session().post(
                url,
                data=body,
                auth=(write_key, ""),
                headers={
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                    "User-Agent": "segment-bridge",
                },
                timeout=timeout,
                allow_redirects=False,
                stream=True,
            ) as response:
                text = response.raw.read(MAX_RESPONSE_KEPT * 4, decode_content=True) or b""
                headers = {name.lower(): value for name, value in response.headers.items()}
                status = response.status_code
        except self._requests.Timeout as error:
            raise Unreachable(type(error).__name__, stalled=True) from None
        except (self._requests.RequestException, urllib3.exceptions.HTTPError) as error:
            stalled = isinstance(error, urllib3.exceptions.TimeoutError)
            raise Unreachable(type(error).__name__, stalled=stalled) from None
        return Answer(
            status, headers, redacted(text.decode("utf-8", "replace"), write_key)[:MAX_RESPONSE_KEPT]
        )


def check_resolved(url: str, policy: EndpointPolicy) -> None:
    """EndpointRefused unless the URL is valid under the policy and every address its host resolves to
    is one the policy allows (so a name cannot point the write key at a private or metadata address)."""
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    endpoint_url(url, policy)
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        found = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as error:
        raise Unreachable(f"the endpoint's name does not resolve ({type(error).__name__})") from None
    for *_, sockaddr in found:
        refusal = address_refusal(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]), policy)
        if refusal:
            raise EndpointRefused(refusal)
