"""ProcessorFunction on moto against its clock: a message it has no time left for goes back untouched."""

from __future__ import annotations

from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from bridge_dev.runtime import lambda_sqs_event
from tests.conftest import SECONDS_LEFT, lambda_function
from tests.functional.helpers import RunningOut, archived, messages_of_three_users

T1 = "2026-01-01T10:00:00.000Z"


def test_messages_the_invocation_has_no_time_for_are_not_touched_and_apply_once_when_received_again(
    aws, workspaces
):
    function = lambda_function("ProcessorFunction")
    messages = messages_of_three_users()
    queue = aws.queue_arns["IngestQueue"]

    # Given an invocation whose time runs out after its first message
    answer = function.handler(lambda_sqs_event(queue, messages), RunningOut())

    # Then the other two are deferred (tests/functional/test_deferral.py: back on the queue, not failed),
    # and nothing of them was read into the tables or archive
    assert answer["batchItemFailures"] == []
    assert workspaces.read_profile(WS, "U", "user-a").counts == {"Viewed": 3}
    assert workspaces.read_profile(WS, "U", "user-b") is None
    assert workspaces.read_profile(WS, "U", "user-c") is None
    assert len(archived(aws)) == 1

    # When they are received again by an invocation with time
    again = function.invoke(lambda_sqs_event(queue, messages[1:]), seconds_left=SECONDS_LEFT)

    # Then they are applied, once
    assert again["batchItemFailures"] == []
    for user in ("user-a", "user-b", "user-c"):
        assert workspaces.read_profile(WS, "U", user).counts == {"Viewed": 3}
        assert len(workspaces.read_history(WS, "U", user)) == 3
    assert len(archived(aws)) == 3
