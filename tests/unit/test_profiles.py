import itertools

from segment_bridge.mapping import Mapping
from segment_bridge.planning import plan
from segment_bridge.profiles import Profile, merge


def identify(mid, ts, user="u1", **traits):
    return {
        "type": "identify",
        "userId": user,
        "messageId": mid,
        "timestamp": ts,
        "receivedAt": ts,
        "traits": traits,
    }


def track(mid, ts, name="Signed Up", user="u1", **extra):
    return {
        "type": "track",
        "userId": user,
        "event": name,
        "messageId": mid,
        "timestamp": ts,
        "receivedAt": ts,
        **extra,
    }


def profile_of(events, mapping=None):
    result = plan(events, mapping or Mapping())
    change, _, _ = result.entities["U#u1"].changes()
    return change


def test_newest_trait_wins_and_older_events_still_fill_missing_traits():
    newer = identify("m2", "2026-01-02T00:00:00.000Z", plan="premium")
    older = identify("m1", "2026-01-01T00:00:00.000Z", plan="free", company="Acme")
    for order in ([newer, older], [older, newer]):
        assert profile_of(order).traits == {"plan": "premium", "company": "Acme"}


def test_equal_timestamps_are_broken_by_message_id_so_every_order_agrees():
    a = identify("m-a", "2026-01-01T00:00:00.000Z", plan="a")
    b = identify("m-b", "2026-01-01T00:00:00.000Z", plan="b")
    assert profile_of([a, b]).traits == profile_of([b, a]).traits == {"plan": "b"}


def test_channels_only_grow_and_remember_when_each_value_was_first_seen():
    first = identify("m1", "2026-01-01T00:00:00.000Z", email="old@example.com")
    second = identify("m2", "2026-02-01T00:00:00.000Z", email="new@example.com")
    again = identify("m3", "2026-03-01T00:00:00.000Z", email="old@example.com")
    change = profile_of([again, second, first])
    assert change.channels == {
        "email": {
            "old@example.com": "2026-01-01T00:00:00.000Z",
            "new@example.com": "2026-02-01T00:00:00.000Z",
        }
    }
    assert change.traits["email"] == "old@example.com"


def test_merge_is_commutative_associative_and_idempotent():
    parts = [
        profile_of([identify("m1", "2026-01-01T00:00:00.000Z", plan="free", email="a@x.io")]),
        profile_of([identify("m2", "2026-01-03T00:00:00.000Z", plan="pro", language="de")]),
        profile_of([identify("m3", "2026-01-02T00:00:00.000Z", email="b@x.io", company="Acme")]),
    ]
    results = []
    for order in itertools.permutations(parts):
        state = Profile()
        for part in order:
            state = merge(merge(state, part), part)
        results.append(state)
    assert all(result == results[0] for result in results)
    assert results[0].first_seen == "2026-01-01T00:00:00.000Z"
    assert results[0].last_seen == "2026-01-03T00:00:00.000Z"


def test_rudder_style_traits_in_context_are_read():
    event = {
        "type": "identify",
        "userId": "u1",
        "messageId": "m",
        "timestamp": "2026-01-01T00:00:00Z",
        "receivedAt": "2026-01-01T00:00:00Z",
        "context": {"traits": {"email": "r@x.io"}},
    }
    change = profile_of([event])
    assert change.traits == {"email": "r@x.io"}
    assert change.channels == {"email": {"r@x.io": "2026-01-01T00:00:00.000Z"}}


def test_history_records_carry_the_prefixed_name_and_retention():
    result = plan([track("m1", "2026-01-01T00:00:00Z")], Mapping(event_prefix="segment : ", history_days=30))
    _, history, _ = result.entities["U#u1"].changes()
    assert history[0].name == "segment : Signed Up"
    assert history[0].expires_at == 1767225600 + 30 * 86400


def test_filtered_types_and_names_are_skipped():
    mapping = Mapping(event_types={"identify"}, exclude_events={"Signed Up"})
    result = plan(
        [track("m1", "2026-01-01T00:00:00Z"), identify("m2", "2026-01-01T00:00:00Z", plan="x")], mapping
    )
    assert result.skipped == 1
    assert list(result.entities) == ["U#u1"]


def test_identify_with_both_ids_links_the_anonymous_id():
    event = identify("m1", "2026-01-01T00:00:00Z", plan="x") | {"anonymousId": "anon-1"}
    result = plan([event], Mapping())
    assert [(link.previous_id, link.user_id) for link in result.links] == [("anon-1", "u1")]


def test_events_older_than_a_deletion_are_dropped():
    result = plan([track("m1", "2026-01-01T00:00:00Z"), track("m2", "2026-03-01T00:00:00Z")], Mapping())
    _, history, dropped = result.entities["U#u1"].changes(deleted_at="2026-02-01T00:00:00.000Z")
    assert [record.message_id for record in history] == ["m2"]
    assert len(dropped) == 1
