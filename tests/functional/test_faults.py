"""Faults at the processor's AWS boundary: each test ends with every event in DynamoDB exactly once.

Faults are injected with botocore's `before-call` hook on the store's own DynamoDB client (what AWS would
answer), never by editing the code under test. Concurrency is made deterministic by running the other
writer at the exact moment the first is about to write.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.awsrequest import AWSResponse

from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from segment_bridge.store import Store
from tests.functional.conftest import event
from tests.functional.helpers import aws_error, before_call, exactly_once

T1, T2, T3 = "2026-01-01T10:00:00.000Z", "2026-01-01T11:00:00.000Z", "2026-01-01T12:00:00.000Z"
WRITES = ("PutItem", "BatchWriteItem", "UpdateItem", "TransactWriteItems")


def test_sustained_throttling_fails_the_message_and_the_redelivery_applies_it_once(processor, workspaces):
    events = [event("identify", "i1", T1, traits={"email": "t@example.com"})] + [
        event("track", f"t{n}", T2, event="Clicked") for n in range(5)
    ]
    throttled = before_call(
        workspaces, WRITES, lambda op, body: aws_error("ProvisionedThroughputExceededException")
    )
    # Every record failed: Powertools fails the invocation, so the queue redelivers the message.
    with throttled, pytest.raises(BatchProcessingError):
        processor(events)
    assert workspaces.read_profile(WS, "U", "user-1") is None  # nothing half-applied

    assert processor(events) == {"batchItemFailures": []}
    exactly_once(workspaces, "user-1", {"Clicked": 5})
    assert workspaces.read_profile(WS, "U", "user-1").channels == {"email": {"t@example.com": T1}}  # type: ignore[union-attr]


def test_throttling_after_the_profile_write_is_finished_by_the_redelivery_without_double_counting(
    processor, workspaces
):
    events = [event("track", f"t{n}", T1, event="Clicked") for n in range(3)]
    throttled = before_call(
        workspaces, ("BatchWriteItem",), lambda op, body: aws_error("ThrottlingException")
    )
    with throttled, pytest.raises(BatchProcessingError):
        processor(events)
    assert processor(events) == {"batchItemFailures": []}
    processor(events)  # and any later duplicate changes nothing
    exactly_once(workspaces, "user-1", {"Clicked": 3})


@contextmanager
def another_invocation_first(store: Store, events: list[dict[str, Any]]) -> Iterator[list[str]]:
    """Just before the store's first profile write, a second container (its own Store and clients)
    applies `events`: the two invocations interleave at the worst moment. Yields what it intercepted."""
    from segment_bridge.mapping import Mapping
    from segment_bridge.processor.unit import apply_batch

    intercepted: list[str] = []

    def other_writer(operation: str, body: dict[str, Any]) -> None:
        if not intercepted and body.get("TableName") == store.settings.profiles_table:
            intercepted.append(operation)
            apply_batch(WS, events, Mapping(), Store(settings=store.settings))

    with before_call(store, ("PutItem",), other_writer):
        yield intercepted


def test_a_concurrent_writer_to_the_same_profile_makes_the_write_retry_and_both_count(processor, workspaces):
    """Two invocations (two messages of one user) interleave: the second writes between the first's read
    and its conditional write. The first's condition fails; it reads again and merges."""
    first = [event("track", "a1", T1, event="Opened"), event("identify", "a2", T1, traits={"plan": "free"})]
    second = [event("track", "b1", T2, event="Opened"), event("identify", "b2", T3, traits={"plan": "pro"})]
    with another_invocation_first(workspaces, second) as intercepted:
        assert processor(first, message_id="first") == {"batchItemFailures": []}
    assert intercepted == ["PutItem"]
    exactly_once(workspaces, "user-1", {"Opened": 2})
    assert workspaces.read_profile(WS, "U", "user-1").traits == {"plan": "pro"}  # type: ignore[union-attr]


def test_the_same_message_delivered_twice_concurrently_counts_once(processor, workspaces):
    """SQS delivers at least once: the same message can be in two invocations at the same time."""
    events = [event("track", f"d{n}", T1, event="Purchased") for n in range(4)]
    with another_invocation_first(workspaces, events) as intercepted:
        assert processor(events) == {"batchItemFailures": []}
    assert intercepted
    exactly_once(workspaces, "user-1", {"Purchased": 4})


def test_an_unavailable_archive_fails_the_message_before_anything_is_applied(processor, workspaces):
    """The raw archive is written first: if S3 fails, the message is retried and nothing is half-done."""
    events = [event("track", "s1", T1, event="Clicked")]
    client = workspaces.clients.s3

    def s3_down(model: Any, params: dict[str, Any], **_: Any) -> Any:
        return AWSResponse("https://s3.amazonaws.com/", 503, {}, None), {
            "Error": {"Code": "SlowDown", "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": 503},
        }

    client.meta.events.register("before-call.s3.PutObject", s3_down, unique_id="s3-fault")
    try:
        with pytest.raises(BatchProcessingError):
            processor(events)
    finally:
        client.meta.events.unregister("before-call.s3.PutObject", unique_id="s3-fault")
    assert workspaces.read_profile(WS, "U", "user-1") is None
    processor(events)
    exactly_once(workspaces, "user-1", {"Clicked": 1})
