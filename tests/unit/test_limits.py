"""DynamoDB's limits as we measure them, the budgets derived from them, the one timestamp parser and the
order-independent rule that bounds a profile."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segment_bridge.ingest.spec import InvalidEvent, validate_event
from segment_bridge.limits import (
    MAX_ID_BYTES,
    PARTITION_KEY_BYTES,
    PROFILE_BUDGET_BYTES,
    SORT_KEY_BYTES,
    item_size,
    valid_workspace_id,
)
from segment_bridge.mapping import FAILED, Mapping, search
from segment_bridge.profiles import (
    MAX_ANONYMOUS_IDS,
    MAX_CHANNEL_VALUE_BYTES,
    MAX_CHANNEL_VALUES,
    MAX_COUNTED_NAME_BYTES,
    MAX_COUNTED_NAMES,
    MAX_GROUPS,
    MAX_PENDING_BYTES,
    MAX_TRAIT_BYTES,
    MAX_TRAIT_NAME_BYTES,
    MAX_TRAITS,
    Profile,
    merge,
    pending_entry_bytes,
)
from segment_bridge.store.profiles import profile_item
from segment_bridge.timestamps import InvalidTimestamp, event_time, normalised

# --- item sizes, against AWS's documented rules ("DynamoDB item sizes and formats") -------------------


@pytest.mark.parametrize(
    ("item", "size"),
    [
        ({"name": "abc"}, 4 + 3),  # string: UTF-8 bytes of name and value
        ({"é": "€"}, 2 + 3),  # multi-byte characters count their UTF-8 bytes
        ({"n": 12345}, 1 + 3 + 1),  # number: 1 byte per two significant digits, plus 1
        ({"n": Decimal("1200.00")}, 1 + 1 + 1),  # leading and trailing zeros trimmed: "12"
        ({"n": 0.5}, 1 + 1 + 1),
        ({"b": b"\x00\x01\x02"}, 1 + 3),  # binary: raw bytes
        ({"t": True, "z": None}, 1 + 1),  # boolean 1 byte; a None value is not written at all
        ({"m": {}}, 1 + 3),  # an empty map or list: 3 bytes
        ({"l": ["ab", "c"]}, 1 + 3 + (2 + 1) + (1 + 1)),  # 3 + elements + 1 byte per element
        ({"m": {"k": "v"}}, 1 + 3 + (1 + 1 + 1)),  # a map element counts its name too
        ({"s": {"a", "bc"}}, 1 + 3),  # a set: its elements
    ],
)
def test_item_size_counts_names_and_values_as_aws_documents(item, size):
    assert item_size(item) == size


def test_every_id_within_the_budget_fits_every_key_it_becomes_with_the_longest_workspace_id():
    ws, one = "w" * 64, "\U0001f600" * (MAX_ID_BYTES // 4)  # astral characters: 4 bytes each
    for partition in (f"WS#{ws}#U#{one}", f"WS#{ws}#LINK#{one}", f"WS#{ws}#G#{one}"):
        assert len(partition.encode()) <= PARTITION_KEY_BYTES
    for sort in (f"MEMBER#U#{one}", f"MEMBER#A#{one}", f"GROUP#{one}", f"LINK#{one}"):
        assert len(sort.encode()) <= SORT_KEY_BYTES


def test_ids_longer_than_their_keys_allow_are_refused_by_the_spec():
    fits = "é" * (MAX_ID_BYTES // 2)
    validate_event({"type": "group", "userId": fits, "groupId": fits})
    for field in ("userId", "anonymousId", "groupId", "previousId"):
        event = {"type": "alias", "userId": "u", "previousId": "p", "groupId": "g"}
        event["type"] = "group" if field == "groupId" else "alias"
        event[field] = "\U0001f600" * 300  # 300 characters, 1,200 bytes
        with pytest.raises(InvalidEvent, match="bytes in UTF-8"):
            validate_event(event)


@pytest.mark.parametrize("good", ["ws_demo", "acme-1", "A" * 64])
def test_a_workspace_id_is_letters_digits_underscore_and_dash(good):
    assert valid_workspace_id(good)


@pytest.mark.parametrize("bad", ["", "acme#U#bob", "a" * 65, "acme bob", "acmé", "a/b"])
def test_a_workspace_id_with_a_hash_or_beyond_64_characters_is_refused(bad):
    assert not valid_workspace_id(bad)


# --- one timestamp parser ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        "2026-01-01T10:00:00Z",
        "2026-01-01t10:00:00z",
        "2026-01-01 10:00:00",
        "2026-01-01T11:00:00+01:00",
        "2026-01-01T10:00:00.000000Z",
        1767261600,
        1767261600000,
        "1767261600",
        1767261600.0,
    ],
)
def test_every_form_the_spec_accepts_is_read_by_the_one_parser_as_the_same_instant(form):
    validate_event({"type": "track", "userId": "u", "event": "e", "timestamp": form})
    assert normalised(form) == "2026-01-01T10:00:00.000Z"


@pytest.mark.parametrize("form", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "soon", True])
def test_a_timestamp_outside_utc_or_in_no_form_is_refused_by_the_spec_and_the_parser(form):
    with pytest.raises(InvalidEvent):
        validate_event({"type": "track", "userId": "u", "event": "e", "timestamp": form})
    with pytest.raises(InvalidTimestamp):
        normalised(form)


def test_a_timestamp_more_than_23_hours_after_receipt_counts_at_receipt_time():
    received = "2026-01-01T10:00:00.000Z"
    assert event_time("2026-01-02T08:59:59Z", received) == ("2026-01-02T08:59:59.000Z", False)
    assert event_time("9999-12-31T00:00:00Z", received) == (received, True)
    assert event_time(None, received) == (received, False)
    assert datetime.fromisoformat(event_time("0001-01-01T00:00:00Z", received)[0]).year == 1


# --- safe mapping paths ------------------------------------------------------------------------------


def test_a_mapping_path_that_fails_on_a_record_finds_nothing_and_is_counted():
    mapping = Mapping(channels={"email": "join(', ', email)"})
    assert search("join(', ', email)", {"email": "ada@example.com"}) is FAILED
    found = mapping.evaluate({"email": "ada@example.com"})
    assert (found.channels, found.failed_paths) == ({}, 1)
    assert mapping.evaluate({"email": ["a@x.io", "b@x.io"]}).channels == {"email": ["a@x.io, b@x.io"]}


# --- bounded profiles --------------------------------------------------------------------------------

T = "2026-01-01T10:00:00.000Z"


def test_a_profile_full_to_every_cap_with_the_largest_entries_stays_under_the_budget():
    def name(n: int, size: int) -> str:
        return f"{n:04}".ljust(size, "x")

    value = "v" * (MAX_TRAIT_BYTES - MAX_TRAIT_NAME_BYTES)
    stamp = (T, "m" * 100)
    profile = Profile(
        traits={name(n, MAX_TRAIT_NAME_BYTES): value for n in range(MAX_TRAITS)},
        trait_stamps={name(n, MAX_TRAIT_NAME_BYTES): stamp for n in range(MAX_TRAITS)},
        channels={
            f"channel_{c}": {name(n, MAX_CHANNEL_VALUE_BYTES): T for n in range(MAX_CHANNEL_VALUES)}
            for c in range(8)
        },
        preferences={"language": "en"},
        preference_stamps={"language": stamp},
        groups={name(n, MAX_ID_BYTES): T for n in range(MAX_GROUPS)},
        anonymous_ids={name(n, MAX_ID_BYTES): T for n in range(MAX_ANONYMOUS_IDS)},
        counts={name(n, MAX_COUNTED_NAME_BYTES): 10**12 for n in range(MAX_COUNTED_NAMES)},
        first_seen=T,
        last_seen=T,
    )
    largest = pending_entry_bytes("m" * (SORT_KEY_BYTES - 4), "n" * MAX_COUNTED_NAME_BYTES)
    pending = {
        name(n, SORT_KEY_BYTES - 4): "n" * MAX_COUNTED_NAME_BYTES for n in range(MAX_PENDING_BYTES // largest)
    }
    item = profile_item(
        "w" * 64, "U", "u" * MAX_ID_BYTES, profile, pending=pending, version=10**9, mapping_version=10**9
    )
    assert item_size(item) <= PROFILE_BUDGET_BYTES  # pending at its cap, the longest messageIds and names


SEEN = st.sampled_from(["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z", "2026-01-03T00:00:00.000Z"])


def contributions() -> st.SearchStrategy[Profile]:
    names = st.text(alphabet="abcdefghijklmnop", min_size=1, max_size=3)
    return st.builds(
        lambda traits, groups, anonymous, channel: Profile(
            traits={n: n for n in traits},
            trait_stamps={n: (T, n) for n in traits},
            groups=groups,
            anonymous_ids=anonymous,
            channels={"email": channel},
        ),
        st.lists(names, max_size=150),
        st.dictionaries(names, SEEN, max_size=40),
        st.dictionaries(names, SEEN, max_size=40),
        st.dictionaries(names, SEEN, max_size=15),
    )


@given(st.lists(contributions(), min_size=1, max_size=6), st.randoms())
def test_bounded_profiles_converge_whatever_the_order_events_arrive_in(changes, rng):
    def fold(order: list[Profile]) -> Profile:
        state = Profile()
        for change in order:
            state = merge(state, change)
        return state

    shuffled = list(changes)
    rng.shuffle(shuffled)
    first, second = fold(changes), fold(shuffled)
    assert first == second
    assert len(first.traits) <= MAX_TRAITS
    assert len(first.groups) <= MAX_GROUPS


def test_received_at_of_an_event_is_parsed_by_the_same_parser():
    assert normalised(datetime(2026, 1, 1, 10, tzinfo=UTC)) == T
