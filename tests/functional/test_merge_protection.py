"""Merge protection through the ProcessorFunction: placeholder ids never merge strangers, links beyond the
limit are refused, and `stats` counts both per workspace."""

from __future__ import annotations

from datetime import date

from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from tests.functional.conftest import event

T1, T2 = "2026-01-01T10:00:00.000Z", "2026-01-01T11:00:00.000Z"


def test_two_strangers_sent_as_user_null_stay_apart_and_are_counted(processor, workspaces):
    processor(
        [
            event(
                "identify", "i1", T1, user="null", anonymousId="anon-ada", traits={"email": "ada@example.com"}
            ),
            event(
                "identify", "i2", T2, user="null", anonymousId="anon-bob", traits={"email": "bob@example.com"}
            ),
            event("track", "t1", T2, user="undefined", event="Viewed"),  # no id left: kept with the reason
        ]
    )
    assert workspaces.read_profile(WS, "U", "null") is None
    assert workspaces.read_profile(WS, "A", "anon-ada").channels == {"email": {"ada@example.com": T1}}
    assert workspaces.read_profile(WS, "A", "anon-bob").channels == {"email": {"bob@example.com": T2}}
    assert workspaces.linked_ids(WS, "null") == []
    [unapplied] = list(workspaces.list_unapplied(WS, date(2026, 1, 1)))
    assert "merge protection" in unapplied["reason"]
    counts = workspaces.daily_counts(WS, date(2026, 1, 1), date(2026, 1, 1))["2026-01-01"]
    assert counts["blocked_ids"] == 3
    assert counts["unapplied"] == 1


def test_links_over_the_limit_are_applied_refused_and_counted(processor, workspaces):
    processor(
        [event("identify", f"i{n}", f"2026-01-01T1{n}:00:00.000Z", anonymousId=f"anon-{n}") for n in range(7)]
    )
    assert len(workspaces.linked_ids(WS, "user-1")) == 7  # stored (a delete reaches them), not followed
    assert len(workspaces.read_profile(WS, "U", "user-1").anonymous_ids) == 7
    counts = workspaces.daily_counts(WS, date(2026, 1, 1), date(2026, 1, 1))["2026-01-01"]
    assert counts["refused_links"] == 2
    assert counts["applied"] == 7
