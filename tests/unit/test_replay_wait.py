"""How long a replay's page task waits for room in its window (jobs/replay.paced, wait_seconds): learnt
from what it finds when it comes back, never spinning, never past SQS's 900 s delay."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from segment_bridge.jobs.replay import FIRST_WAIT_SECONDS, paced, wait_seconds


def test_a_wait_grows_while_the_window_is_still_full_and_shrinks_when_it_had_drained():
    first = paced(None, full=True, empty=False)
    assert first == {"delay": FIRST_WAIT_SECONDS, "waited": True}
    still_full = paced(first | {"delay": 8.0}, full=True, empty=False)
    assert still_full["delay"] == 12.0  # came back too early
    drained = paced(still_full, full=False, empty=True)
    assert (drained["delay"], drained["waited"]) == (12.0 * 0.7, False)  # came back late
    room = paced(still_full, full=False, empty=False)
    assert room["delay"] == 12.0  # about right
    sent_then_full = paced(room, full=True, empty=False)
    assert sent_then_full["delay"] == 12.0  # a wait after sending starts from what was learnt


def test_a_window_that_never_drains_is_looked_at_no_more_than_every_900_s():
    look = None
    for _ in range(30):
        look = paced(look, full=True, empty=False)
    assert look["delay"] == 900
    assert wait_seconds(look, jitter=1.0) == 900


def test_the_jitter_adds_up_to_a_quarter():
    assert wait_seconds({"delay": 12.0}, jitter=0.0) == 12
    assert wait_seconds({"delay": 12.0}, jitter=1.0) == 15


@given(
    steps=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=60),
    jitter=st.floats(0, 1),
)
def test_every_wait_is_between_1_and_900_seconds(steps, jitter):
    """Whatever a page task finds at each look (full, drained, room), its next wait is an SQS delay."""
    look = None
    for full, empty in steps:
        look = paced(look, full=full, empty=empty and not full)
        assert 1 <= look["delay"] <= 900
        assert 1 <= wait_seconds(look, jitter) <= 900
