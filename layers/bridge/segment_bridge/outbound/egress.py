"""Egress: the one way the emitter reaches a destination — an HTTPS POST to /v1/batch, only to addresses
the endpoint policy allows (checked on what the host resolves to, at each send, and the connection made
to the address checked, never to a second answer of the resolver), no redirect followed,
bounded waits, and an answer kept bounded and without the write key in it."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from segment_bridge.destinations import EndpointRefused, address_refusal, endpoint_url
from segment_bridge.settings import EndpointPolicy

ATTEMPT_SECONDS = (3.0, 10.0)
"""The most one request may wait to connect, and then for each read of its answer."""
MAX_RESPONSE_KEPT = 1024
"""Characters of a destination's answer kept with what is parked."""
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


Resolve = Callable[[str, int], list[str]]
"""A host and port -> the addresses it resolves to (socket.getaddrinfo's; tests give their own)."""


def system_resolve(host: str, port: int) -> list[str]:
    import socket

    found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [str(sockaddr[0]).split("%")[0] for *_, sockaddr in found]


class HttpSender:
    """POST /v1/batch with Basic auth (the write key as user), gzip, bounded timeouts, no redirects
    followed, a bounded answer, and only to addresses the endpoint policy allows: the host is resolved
    once per send, every address checked, and the connection made to the first of them (a name cannot
    be re-pointed between the check and the connect: DNS rebinding); the name is kept for TLS (SNI and
    the certificate's check) and the Host header."""

    def __init__(
        self,
        timeout: tuple[float, float] = ATTEMPT_SECONDS,
        policy: EndpointPolicy = "public",
        resolve: Resolve = system_resolve,
    ) -> None:
        import requests

        self._requests = requests
        self._local = threading.local()
        self._timeout = timeout
        self._policy = policy
        self._resolve = resolve

    def _session(self) -> tuple[Any, PinnedAddresses]:
        """This thread's session and its adapter (sessions are not shared between threads)."""
        found = getattr(self._local, "session", None)
        if found is None:
            session = self._requests.Session()
            session.trust_env = False  # no proxy or .netrc from the environment: only the stored endpoint
            adapter = pinned_adapter()
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            found = self._local.session = (session, adapter)
        session, adapter = found
        return session, adapter

    def send(self, url: str, write_key: str, body: bytes, seconds_left: float) -> Answer:
        import urllib3

        address = check_resolved(url, self._policy, self._resolve)
        session, adapter = self._session()
        adapter.pinned = address  # this thread's request goes there, and nowhere else
        connect, read = self._timeout
        timeout = urllib3.Timeout(
            connect=min(connect, seconds_left), read=min(read, seconds_left), total=seconds_left
        )
        request = session.prepare_request(
            self._requests.Request(
                "POST",
                url,
                data=body,
                auth=(write_key, ""),
                headers={
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                    "User-Agent": "segment-bridge",
                },
            )
        )
        # The connection is to an address: the name it stands for is the Host (as requests prepared it)
        request.headers["Host"] = urlsplit(request.url).netloc
        try:
            with session.send(
                request,
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
        finally:
            adapter.pinned = None
        return Answer(
            status, headers, redacted(text.decode("utf-8", "replace"), write_key)[:MAX_RESPONSE_KEPT]
        )


class PinnedAddresses(Protocol):
    pinned: str | None


def pinned_adapter() -> Any:
    """A requests transport adapter that connects a request to the address checked for it (`pinned`,
    set by the sender for its one request: redirects are never followed) and to nothing else: urllib3's
    pool is keyed on that address, while the host name stays the TLS server name (SNI) and the name the
    certificate must match (requests' documented extension point,
    HTTPAdapter.build_connection_pool_key_attributes). With nothing pinned, no connection is made."""
    from requests.adapters import HTTPAdapter

    class PinnedAddressAdapter(HTTPAdapter):
        def __init__(self) -> None:
            super().__init__(max_retries=0)
            self.pinned: str | None = None

        def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
            host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
            host = str(host_params.get("host") or "")
            address = self.pinned
            if address is None:
                raise EndpointRefused("the destination's address was not checked before connecting")
            kwargs: dict[str, Any] = dict(pool_kwargs)
            if host_params.get("scheme") == "https" and host != address:
                kwargs |= {"server_hostname": host, "assert_hostname": host}
            return {**host_params, "host": address}, kwargs

    return PinnedAddressAdapter()


def check_resolved(url: str, policy: EndpointPolicy, resolve: Resolve = system_resolve) -> str:
    """The address to connect to: EndpointRefused unless the URL is valid under the policy and every
    address its host resolves to is one the policy allows (so a name cannot point the write key at a
    private or metadata address); then the first of them, which the connection must use."""
    import ipaddress

    endpoint_url(url, policy)
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        found = resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as error:
        raise Unreachable(f"the endpoint's name does not resolve ({type(error).__name__})") from None
    if not found:
        raise Unreachable("the endpoint's name does not resolve (no address)")
    for address in found:
        try:
            checked = ipaddress.ip_address(address)
        except ValueError:
            raise EndpointRefused("the endpoint's name resolved to something not an address") from None
        refusal = address_refusal(checked, policy)
        if refusal:
            raise EndpointRefused(refusal)
    return found[0]
