"""How long a replay's page task waits for room in its window (jobs/replay.wait_seconds): long enough for
the processor to apply what is in the way at the rate it was measured, never spinning, never past SQS's
900 s delay."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from segment_bridge.jobs.replay import FIRST_WAIT_SECONDS, wait_seconds


def test_the_first_wait_is_short_then_follows_the_rate_messages_were_applied_at():
    assert wait_seconds(10, applied=0, now=100.0, look=None, jitter=0.0) == FIRST_WAIT_SECONDS
    look = {"applied": 0, "at": 100.0, "delay": 1}
    # 20 messages applied in 10 s: 2 per second; 30 more in the way take 15 s
    assert wait_seconds(30, applied=20, now=110.0, look=look, jitter=0.0) == 15
    assert wait_seconds(30, applied=20, now=110.0, look=look, jitter=1.0) == 19  # + 25 % at most


def test_a_processor_that_applies_nothing_is_waited_for_twice_as_long_each_time_up_to_900_s():
    look = {"applied": 7, "at": 100.0, "delay": 8}
    assert wait_seconds(3, applied=7, now=110.0, look=look, jitter=0.0) == 16
    assert wait_seconds(3, applied=7, now=110.0, look=look | {"delay": 600}, jitter=0.0) == 900


@given(
    excess=st.integers(-5, 10_000),
    applied=st.integers(0, 10**7),
    drained=st.integers(-3, 10**6),
    elapsed=st.floats(-5, 10**5, allow_nan=False),
    delay=st.integers(1, 900),
    jitter=st.floats(0, 1),
    first=st.booleans(),
)
def test_every_wait_is_between_1_and_900_seconds(excess, applied, drained, elapsed, delay, jitter, first):
    """Whatever the job's counters did since the last wait (clocks of other containers, counters read
    in any order), the wait is an SQS delay: 1 to 900 s."""
    look = None if first else {"applied": applied - drained, "at": 1_000.0 - elapsed, "delay": delay}
    assert 1 <= wait_seconds(excess, applied, 1_000.0, look, jitter) <= 900
