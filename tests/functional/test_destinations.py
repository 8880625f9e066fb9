"""Misbehaving destinations, on real local HTTP servers: stalled ones (accept, never answer), redirecting
ones, ones that echo the credentials, and ones the endpoint policy refuses. The EmitterFunction itself
runs on moto; what it parks is read back from the bucket's parked/."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from bridge_dev.segment_api import FakeSegment
from tests.conftest import SECONDS_LEFT
from tests.functional.conftest import WRITE_KEY, stream_lambda_event

REMAINING_SECONDS = 8.0
"""The invocations below have 8 s left; the emitter keeps 5 s in reserve, so 3 s to send."""


class StalledServer:
    """Accepts connections on 127.0.0.1 and never answers (nor closes them)."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.socket.settimeout(0.2)
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except (TimeoutError, OSError):
                continue
            self.held.append(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self.held:
            connection.close()
        self.socket.close()


class ScriptedServer:
    """Answers every request with `status`, `headers` and a body (which may echo the request's
    Authorization header, as a careless proxy would); records what it was asked."""

    def __init__(self, status: int, headers: dict[str, str] | None = None, echo: bool = False) -> None:
        self.requests: list[tuple[str, str]] = []
        self.hosts: list[str] = []

        def app(environ: Any, start_response: Any) -> Any:
            request = Request(environ)
            self.requests.append((request.method, request.path))
            self.hosts.append(request.host)
            body = f"you sent {request.headers.get('Authorization', '')} " * 200 if echo else "moved"
            return Response(body, status=status, headers=headers or {})(environ, start_response)

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def stalled() -> Iterator[list[StalledServer]]:
    servers: list[StalledServer] = []
    yield servers
    for server in servers:
        server.close()


def publish(aws, workspace_id: str, sk: str) -> None:
    boto3.resource("dynamodb").Table(aws.tables["OutboxTable"]).put_item(
        Item={"pk": f"WS#{workspace_id}", "sk": sk, "event": "Flow Completed", "userId": "user-42"}
    )


def parked_documents(store) -> list[dict[str, Any]]:
    return [item.document for item in store.parked.list_parked("emitter", 1000)]


@pytest.mark.parametrize("stalled_count", [2, 10])
def test_stalled_destinations_delay_no_one_and_no_invocation_passes_its_timeout(
    emitter, aws, workspaces, stalled, stalled_count, retry_queue
):
    # Given healthy workspaces and workspaces whose destination accepts and never answers
    with FakeSegment({WRITE_KEY}).start() as segment:
        healthy = [f"ws_ok_{n}" for n in range(3)]
        for workspace_id in healthy:
            workspaces.create_workspace(workspace_id, workspace_id=workspace_id)
            workspaces.set_segment_destination(workspace_id, WRITE_KEY, segment.url)
        for n in range(stalled_count):
            server = StalledServer()
            stalled.append(server)
            workspaces.create_workspace(f"stalled {n}", workspace_id=f"ws_stalled_{n}")
            workspaces.set_segment_destination(f"ws_stalled_{n}", WRITE_KEY, server.url)
        for n in range(stalled_count):  # the stalled workspaces come first in the batch
            publish(aws, f"ws_stalled_{n}", f"EVT#s{n}")
        for workspace_id in healthy:
            publish(aws, workspace_id, "EVT#1")
        event = stream_lambda_event(aws.tables["OutboxTable"])

        # When one invocation sends the batch
        started = time.monotonic()
        response = emitter.invoke(event, seconds_left=REMAINING_SECONDS)
        elapsed = time.monotonic() - started

        # Then it ends before its timeout, the healthy workspaces are delivered in it, and the stalled
        # workspaces' records are set aside for a retry (young: not parked), none handed back
        assert elapsed < REMAINING_SECONDS
        assert len(segment.events) == len(healthy)
        assert response == {"batchItemFailures": []}
        waiting = sorted(message["workspace_id"] for message in retry_queue.messages())
        assert waiting == sorted(f"ws_stalled_{n}" for n in range(stalled_count))
        assert parked_documents(workspaces) == []
        assert all(server.held for server in stalled)  # each stalled destination was tried


def test_a_destination_that_keeps_stalling_is_given_up_on_and_records_past_the_horizon_parked(
    aws, workspaces, stalled
):
    from segment_bridge.outbound.delivery import Sending, deliver, stream_changes
    from segment_bridge.outbound.egress import HttpSender

    server = StalledServer()
    stalled.append(server)
    workspaces.create_workspace("stalled", workspace_id="ws_stalled")
    workspaces.set_segment_destination("ws_stalled", WRITE_KEY, server.url)
    publish(aws, "ws_stalled", "EVT#1")
    event = stream_lambda_event(aws.tables["OutboxTable"])
    event["Records"][0]["dynamodb"]["ApproximateCreationDateTime"] = int(time.time()) - 73 * 3600
    started = time.monotonic()

    report = deliver(
        stream_changes(event, time.time),
        outbox_table=aws.tables["OutboxTable"],
        own_tables=frozenset(),
        sending=Sending(
            destination=workspaces.segment_destination,
            sender=HttpSender(timeout=(0.5, 0.5), policy="local"),
            parking=workspaces.parked,
            deadline=time.time() + 30,
            clock=time.time,
            sleep=time.sleep,
        ),
    )

    assert time.monotonic() - started < 10  # given up after two stalls, not after 30 s
    assert report.given_up == ["ws_stalled"]
    assert report.requests == 2
    (parked,) = parked_documents(workspaces)
    assert "no answer in time" in parked["reason"]


def test_the_deadline_is_checked_before_every_workspaces_first_attempt(aws, workspaces, stalled):
    from segment_bridge.outbound.delivery import Sending, deliver, stream_changes
    from segment_bridge.outbound.egress import HttpSender

    for n in range(3):
        server = StalledServer()
        stalled.append(server)
        workspaces.create_workspace(f"stalled {n}", workspace_id=f"ws_stalled_{n}")
        workspaces.set_segment_destination(f"ws_stalled_{n}", WRITE_KEY, server.url)
        publish(aws, f"ws_stalled_{n}", "EVT#1")
    started = time.monotonic()

    report = deliver(  # one workspace after the other: the first one uses all the time there is
        stream_changes(stream_lambda_event(aws.tables["OutboxTable"]), time.time),
        outbox_table=aws.tables["OutboxTable"],
        own_tables=frozenset(),
        sending=Sending(
            destination=workspaces.segment_destination,
            sender=HttpSender(policy="local"),
            parking=workspaces.parked,
            deadline=time.time() + 2,
            clock=time.time,
            sleep=time.sleep,
        ),
    )

    assert time.monotonic() - started < 3
    assert report.requests == 1  # no first attempt after the deadline
    assert len(report.pending) == 3  # not sent yet: without a retry queue, left where they are


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed_and_is_parked_with_the_answer(emitter, aws, workspaces, status):
    target = ScriptedServer(200)
    redirecting = ScriptedServer(status, {"Location": f"{target.url}/v1/batch"})
    try:
        workspaces.create_workspace("moved", workspace_id="ws_moved")
        workspaces.set_segment_destination("ws_moved", WRITE_KEY, redirecting.url)
        publish(aws, "ws_moved", "EVT#1")

        response = emitter.invoke(stream_lambda_event(aws.tables["OutboxTable"]), seconds_left=SECONDS_LEFT)

        assert response == {"batchItemFailures": []}
        assert redirecting.requests == [("POST", "/v1/batch")]
        assert target.requests == []  # not followed: no GET without a body counted as sent
        (parked,) = parked_documents(workspaces)
        assert parked["response"]["status"] == status
        assert "redirect" in parked["reason"]
        assert parked["record"]["event"] == "Flow Completed"
    finally:
        target.close()
        redirecting.close()


def test_the_answer_kept_when_parked_is_bounded_and_never_holds_the_write_key(emitter, aws, workspaces):
    echoing = ScriptedServer(400, echo=True)
    try:
        workspaces.create_workspace("echo", workspace_id="ws_echo")
        workspaces.set_segment_destination("ws_echo", WRITE_KEY, echoing.url)
        publish(aws, "ws_echo", "EVT#1")

        emitter.invoke(stream_lambda_event(aws.tables["OutboxTable"]), seconds_left=SECONDS_LEFT)

        (parked,) = parked_documents(workspaces)
        body = parked["response"]["body"]
        assert "you sent" in body
        assert len(body) <= 1024
        import base64

        for form in (WRITE_KEY, base64.b64encode(f"{WRITE_KEY}:".encode()).decode()):
            assert form not in body
    finally:
        echoing.close()


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("https://169.254.169.254", "metadata"),
        ("http://169.254.169.254", "https"),
        ("https://10.0.0.1", "private"),
        ("https://localhost:1", "private"),  # a name that resolves to loopback
        ("http://example.com", "https"),
    ],
)
def test_an_endpoint_the_policy_refuses_is_never_called_and_its_events_are_parked(
    emitter, aws, workspaces, monkeypatch, endpoint, why
):
    from segment_bridge.settings import get_settings

    # Given a stack with the default policy (public) and an endpoint stored before it (or by hand)
    monkeypatch.setenv("SEGMENT_ENDPOINTS", "public")
    get_settings.cache_clear()
    workspaces.create_workspace("refused", workspace_id="ws_refused")
    boto3.client("secretsmanager").create_secret(
        Name=f"{get_settings().secrets_prefix}/ws_refused/write-key", SecretString=WRITE_KEY
    )
    boto3.resource("dynamodb").Table(aws.tables["WorkspacesTable"]).update_item(
        Key={"pk": "WS#ws_refused", "sk": "WORKSPACE"},
        UpdateExpression="SET segment_endpoint = :endpoint",
        ExpressionAttributeValues={":endpoint": endpoint},
    )
    publish(aws, "ws_refused", "EVT#1")

    response = emitter.invoke(stream_lambda_event(aws.tables["OutboxTable"]), seconds_left=SECONDS_LEFT)

    assert response == {"batchItemFailures": []}
    (parked,) = parked_documents(workspaces)
    assert "refused" in parked["reason"]
    assert why in parked["reason"]


def test_setting_a_destination_refuses_what_the_policy_refuses(workspaces, monkeypatch):
    from segment_bridge.destinations import EndpointRefused
    from segment_bridge.settings import get_settings
    from segment_bridge.store import get_store

    monkeypatch.setenv("SEGMENT_ENDPOINTS", "public")
    get_settings.cache_clear()
    get_store.cache_clear()
    store = get_store()
    store.create_workspace("x", workspace_id="ws_x")
    for endpoint in ("http://127.0.0.1:9", "https://169.254.169.254", "https://api.segment.io/?#"):
        with pytest.raises(EndpointRefused):
            store.set_segment_destination("ws_x", WRITE_KEY, endpoint)
    store.set_segment_destination("ws_x", WRITE_KEY, "https://proxy.example.com")


class RebindingDns:
    """A resolver for one name that answers `first` once, then `then` (a DNS rebinding attack); IP
    literals resolve to themselves, as getaddrinfo does. Replaces socket.getaddrinfo for everyone."""

    def __init__(self, name: str, first: str, then: str) -> None:
        self.name, self.answers, self.then = name, [first], then
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != self.name:
            return self.real(host, port, *args, **kwargs)
        address = self.answers.pop(0) if self.answers else self.then
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]


@pytest.mark.parametrize("second", ["127.0.0.1", "169.254.169.254"])
def test_a_name_rebound_after_the_check_is_never_connected_to_at_its_second_address(
    monkeypatch, stalled, second
):
    from segment_bridge.outbound.egress import HttpSender, Unreachable

    # Given a name that resolves to a public address when checked, then to a loopback (where something
    # listens) or metadata address
    listener = StalledServer()
    stalled.append(listener)
    port = listener.socket.getsockname()[1]
    monkeypatch.setattr(socket, "getaddrinfo", RebindingDns("segment.example", "93.184.216.34", second))
    connected: list[str] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        connected.append(address[0])
        if address[0] == "93.184.216.34":  # no internet here: the public address refuses at once
            raise ConnectionRefusedError
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)

    # When the write key is sent there
    with pytest.raises(Unreachable):
        HttpSender(timeout=(0.5, 0.5), policy="public").send(
            f"https://segment.example:{port}/v1/batch", WRITE_KEY, b"{}", 1.0
        )

    # Then the only connection made is to the address that was checked
    assert connected == ["93.184.216.34"]
    time.sleep(0.3)
    assert listener.held == []


def test_the_checked_address_is_the_one_sent_to_with_the_name_kept_as_host(monkeypatch):
    from segment_bridge.outbound.egress import HttpSender

    server = ScriptedServer(200)
    try:
        port = server.url.rsplit(":", 1)[1]
        monkeypatch.setattr(socket, "getaddrinfo", RebindingDns("localhost", "127.0.0.1", "169.254.169.254"))

        answer = HttpSender(policy="local").send(f"http://localhost:{port}/v1/batch", WRITE_KEY, b"{}", 3.0)

        assert answer.status == 200
        assert server.requests == [("POST", "/v1/batch")]
        assert server.hosts == [f"localhost:{port}"]
    finally:
        server.close()


def test_tls_to_a_pinned_address_keeps_the_name_for_sni_and_the_certificate():
    import requests

    from segment_bridge.outbound.egress import pinned_adapter

    adapter = pinned_adapter()
    adapter.pinned = "52.0.0.1"
    request = requests.Request("POST", "https://api.segment.io/v1/batch").prepare()

    host, pool = adapter.build_connection_pool_key_attributes(request, True)

    assert host["host"] == "52.0.0.1"  # connected to; the name is never resolved again
    assert (pool["server_hostname"], pool["assert_hostname"]) == ("api.segment.io", "api.segment.io")
    adapter.pinned = None
    with pytest.raises(ValueError, match="not checked"):
        adapter.build_connection_pool_key_attributes(request, True)
