"""Segment's incidents ridden out on their own, in simulated time (bridge_dev/outage.py): the outbox
stream and Lambda's event sources, the retry queue's delays and a Segment stand-in on one injected clock.
"""

from __future__ import annotations

from bridge_dev.outage import Scenario, simulate

HOUR = 3600.0


def test_a_six_hour_segment_outage_is_ridden_out_exactly_once_with_no_operator_step() -> None:
    # Given one workspace's Segment down (503) for 6 hours, two others up, all three writing every 20 s
    scenario = Scenario(
        workspaces=("ws_down", "ws_b", "ws_c"),
        down={"wk-ws_down": (0.0, 6 * HOUR, 503, {})},
        every=20.0,
        writing=7 * HOUR,
        until=9 * HOUR,
    )

    # When the stream, the retry queue and Segment run for 9 simulated hours
    figures = simulate(scenario)

    # Then every outbox item is delivered exactly once, nothing is parked, nothing is left to an operator
    assert figures["written"] == 3 * 1260
    assert figures["delivered"] == figures["written"]
    assert (figures["parked_objects"], figures["parks"], figures["on_failure_records"]) == (0, 0, 0)
    assert figures["still_waiting"] == 0
    assert figures["over_timeout"] == 0
    assert figures["longest_invocation_s"] <= 60
    for workspace_id, each in figures["workspaces"].items():
        assert each["sent_more_than_once"] == 0, workspace_id
        assert each["counted_sent"] == each["written"], workspace_id  # counters count each event once
    # the outage's events arrive once Segment is back (within the longest pause: 15 minutes)
    assert figures["workspaces"]["ws_down"]["slowest_delivery_s"] <= 6 * HOUR + 16 * 60
    # and the other workspaces are not held up by it
    assert figures["workspaces"]["ws_b"]["slowest_delivery_s"] < 30
    assert figures["workspaces"]["ws_c"]["slowest_delivery_s"] < 30


def test_one_workspace_failing_for_20_stream_retries_sends_and_parks_its_shard_neighbours_once() -> None:
    # Given three workspaces on one shard: one whose Segment fails for 25 minutes (main handed its records
    # back to the stream 20 times and more), one healthy, one without a write key (parked: a person acts)
    scenario = Scenario(
        workspaces=("ws_down", "ws_ok", "ws_nokey"),
        keyless=("ws_nokey",),
        down={"wk-ws_down": (0.0, 25 * 60.0, 503, {})},
        every=20.0,
        writing=30 * 60.0,
        until=2 * HOUR,
    )

    figures = simulate(scenario)

    ok, nokey, down = (figures["workspaces"][w] for w in ("ws_ok", "ws_nokey", "ws_down"))
    assert figures["on_failure_records"] == 0
    # each healthy event sent once and counted once
    assert ok["delivered"] == ok["written"]
    assert ok["sent_more_than_once"] == 0
    assert ok["counted_sent"] == ok["written"]
    # each keyless event parked once (one object each), counted once
    assert nokey["parked_objects"] == nokey["written"] == nokey["counted_parked"]
    assert figures["parks"] == nokey["written"]
    # and the failing workspace's events all arrive once it is back, once each
    assert down["delivered"] == down["written"]
    assert down["sent_more_than_once"] == 0
    assert down["counted_sent"] == down["written"]
    assert down["parked_objects"] == 0


def test_past_the_retry_horizon_what_segment_never_took_is_parked_once_for_an_operator() -> None:
    scenario = Scenario(
        workspaces=("ws_down",),
        down={"wk-ws_down": (0.0, 100 * HOUR, 503, {})},
        every=600.0,
        writing=HOUR,
        until=74 * HOUR,
    )

    figures = simulate(scenario)

    down = figures["workspaces"]["ws_down"]
    assert down["delivered"] == 0
    assert down["parked_objects"] == down["written"] == down["counted_parked"] == 6
    assert figures["still_waiting"] == 0
    assert figures["over_timeout"] == 0
