"""Merge protection (identity.py): blocked ids and the anonymous ids limit, and how planning applies them
(profiles.plan): an event of a blocked userId is applied as if it had none, a blocked anonymousId or
previousId links nothing, an event left without an id is kept with the reason."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from segment_bridge.identity import DEFAULT_BLOCKED_VALUES, MergeProtection, screen
from segment_bridge.mapping import Mapping
from segment_bridge.planning import plan

T = "2026-01-01T10:00:00.000Z"
DEFAULTS = MergeProtection()


@pytest.mark.parametrize(
    "value",
    [
        *sorted(DEFAULT_BLOCKED_VALUES),
        "NULL",
        " Undefined ",
        "None",
        "NaN",
        "N/A",
        "[object Object]",
        "000",
        "--",
        "0-0",
        "   ",
        "{{userId}}",
        "user-{{ id }}",
        "${user.id}",
    ],
)
def test_the_defaults_block_placeholder_ids(value):
    assert DEFAULTS.blocks(value)


@pytest.mark.parametrize(
    "value", ["user-42", "10", "0a", "-2", "anonymous-7f3a", "guest@example.com", "nullable"]
)
def test_the_defaults_leave_real_ids_alone(value):
    assert not DEFAULTS.blocks(value)


def test_a_workspace_sets_its_own_values_and_patterns_and_bad_ones_are_refused():
    own = MergeProtection(blocked_values=frozenset({"void", "abc123"}), blocked_patterns=(r"^test-",))
    assert own.blocks("VOID")
    assert own.blocks("test-1")
    assert not own.blocks("null")
    with pytest.raises(ValidationError, match="regular expression"):
        MergeProtection(blocked_patterns=("([",))
    with pytest.raises(ValidationError):
        MergeProtection(max_anonymous_ids=33)  # a profile keeps at most 32 anonymous ids
    with pytest.raises(ValidationError):
        Mapping.model_validate({"merge_protection": {"blocked_value": ["x"]}})  # a typo is refused


def day(n: int, hour: int = 0) -> str:
    return f"2026-01-{n:02d}T{hour:02d}:00:00.000Z"


def test_the_limit_keeps_five_anonymous_ids_a_week_by_first_sighting():
    seen = {f"a{n}": day(1, n) for n in range(7)}
    assert DEFAULTS.linked(seen) == {f"a{n}" for n in range(5)}
    spread = {f"a{n}": day(1 + 8 * (n // 5), n % 5) for n in range(10)}  # two weeks apart
    assert DEFAULTS.linked(spread) == set(spread)
    ever = MergeProtection(max_anonymous_ids=2, anonymous_ids_window_days=None)
    assert ever.linked(spread) == {"a0", "a1"}


@given(
    st.dictionaries(
        st.sampled_from([f"a{n}" for n in range(12)]), st.sampled_from([day(d) for d in range(1, 29)])
    )
)
def test_the_limit_is_a_function_of_the_set_of_sightings_alone(seen):
    """Whatever order the sightings came in (dicts remember it), the same ids are kept, at most five
    within any week."""
    kept = DEFAULTS.linked(seen)
    assert kept == DEFAULTS.linked(dict(reversed(list(seen.items()))))
    assert kept <= set(seen)
    moments = sorted(datetime.fromisoformat(seen[k]) for k in kept)
    for n, start in enumerate(moments):
        assert len([m for m in moments[n:] if m - start < timedelta(days=7)]) <= 5
    refused = set(seen) - kept
    for value in refused:  # each refused id had five kept ids within the week before it
        moment = datetime.fromisoformat(seen[value])
        assert len([m for m in moments if timedelta(0) <= moment - m < timedelta(days=7)]) >= 5


def event(kind: str, **fields: object) -> dict[str, object]:
    return {"type": kind, "messageId": "m1", "timestamp": T, "receivedAt": T, **fields}


def test_an_event_of_a_blocked_user_id_is_applied_to_its_anonymous_id_only():
    planned = plan(
        [event("identify", userId="null", anonymousId="anon-1", traits={"plan": "pro"})], Mapping()
    )
    assert set(planned.entities) == {"A#anon-1"}
    assert planned.links == []
    assert planned.blocked_ids == 1
    assert planned.unapplied == []


def test_an_event_left_without_an_id_is_kept_with_the_reason():
    sent = event("track", userId="undefined", anonymousId="0", event="Viewed")
    planned = plan([sent], Mapping())
    assert planned.entities == {}
    [kept] = planned.unapplied
    assert kept["event"] == sent  # as received
    assert "blocked" in kept["reason"]
    assert "undefined" not in kept["reason"]  # the reason never quotes the ids
    assert planned.blocked_ids == 2


def test_a_blocked_anonymous_id_or_previous_id_links_nothing():
    planned = plan(
        [
            event("identify", userId="user-1", anonymousId="anonymous"),
            {**event("alias", userId="user-1", previousId="-1"), "messageId": "m2"},
        ],
        Mapping(),
    )
    assert planned.links == []
    assert set(planned.entities) == {"U#user-1"}
    [change] = [c.profile for c in planned.entities["U#user-1"].contributions]
    assert change.anonymous_ids == {}
    [kept] = planned.unapplied
    assert kept["event"]["type"] == "alias"


def test_screening_changes_nothing_of_an_event_without_blocked_ids():
    sent = event("group", userId="user-1", anonymousId="a-1", groupId="g-1")
    assert screen(sent, DEFAULTS).event is sent
    assert screen(event("group", userId="user-1", groupId="none"), DEFAULTS).reason
