"""Any permutation of a set of events, with any of them duplicated and split into any messages, converges
to the same state as applying them once in order (property-based, on moto).

Drawn: identify, track, page, group, alias and delete, at three times, over two users and two anonymous
ids, with self-links (anonymousId == userId, previousId == userId) and ids shared between users (an
anonymous id linked to both, both deleted). `deletion_times` is docs/privacy.md's model of which ids a delete
reaches as of which time, a function of the set of events; the deliveries respect exactly the one order
docs/privacy.md excludes ("Order": an event of an id stamped after T applied in an earlier message
than the one that raises that id's deletion time to T), and nothing wider."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segment_bridge.identity import MergeProtection, screen
from segment_bridge.mapping import Mapping
from segment_bridge.processor.unit import apply_batch
from tests.functional.helpers import state

TIMES = ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z", "2026-01-03T00:00:00.000Z"]
BLOCKED = ["null", "0", "{{userId}}"]
"""Ids merge protection blocks (identity.py): drawn as userIds, anonymousIds and previousIds."""
USERS = ["u1", "u2", *BLOCKED[:2]]
ANONYMOUS = ["a1", "a2", "a3", BLOCKED[2]]
PROTECTION = MergeProtection(max_anonymous_ids=2)
"""Three anonymous ids and a limit of two: over-limit link sets are drawn."""
MAPPING = Mapping(merge_protection=PROTECTION)
GROUPS = ["g1", "g2"]
KINDS = ["identify", "identify", "track", "track", "page", "group", "alias", "delete"]
TRAIT_VALUES = st.sampled_from(
    ["free", "pro", "ada@example.com", "grace@example.com", "de", "xx", 3, 4.5, None]
)
TRAITS = st.dictionaries(
    st.sampled_from(["plan", "email", "language", "phone", "seats"]), TRAIT_VALUES, max_size=3
)


@st.composite
def identity(draw: st.DrawFn) -> dict[str, str]:
    choice = draw(st.sampled_from(["user", "anonymous", "both"]))
    ids: dict[str, str] = {}
    if choice in ("user", "both"):
        ids["userId"] = draw(st.sampled_from(USERS))
    if choice in ("anonymous", "both"):
        ids["anonymousId"] = draw(st.sampled_from(ANONYMOUS + ids.get("userId", "a1").split()))  # self-links
    return ids


@st.composite
def segment_event(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(["identify", "identify", "track", "track", "page", "group", "alias", "delete"])
    )
    timestamp = draw(st.sampled_from(TIMES))
    event: dict[str, Any] = {"type": kind, "timestamp": timestamp, "receivedAt": timestamp}
    if kind == "alias":
        user = draw(st.sampled_from(USERS))
        event |= {"userId": user, "previousId": draw(st.sampled_from([*ANONYMOUS, user]))}
    else:
        event |= draw(identity())
    if kind in ("identify", "group"):
        event["traits"] = draw(TRAITS)
    if kind == "track":
        event |= {
            "event": draw(st.sampled_from(["Signed Up", "Invited"])),
            "properties": {"n": draw(st.integers(0, 3))},
        }
    if kind == "page":
        event["name"] = draw(st.sampled_from(["Home", "Pricing"]))
    if kind == "group":
        event["groupId"] = draw(st.sampled_from(GROUPS))
    return event


def numbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event | {"messageId": f"m{n}"} for n, event in enumerate(events)]


def as_applied(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events as merge protection lets them be applied: blocked ids taken out, events left without
    an id (or an alias, a group call of a blocked id) not applied. A function of each event alone."""
    screened = [screen(event, PROTECTION) for event in events]
    return [each.event for each in screened if each.reason is None]


def connections(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(userId, connected id, timestamp): the anonymousId sent with a userId, an alias's previousId."""
    found = []
    for event in as_applied(events):
        if event["type"] == "delete" or "userId" not in event:
            continue
        for name in ("anonymousId", "previousId"):
            if name in event:
                found.append((event["userId"], event[name], event["timestamp"]))
    return found


def deletion_times(events: list[dict[str, Any]]) -> dict[str, str]:
    """The model (docs/privacy.md), a function of the SET of events: entity key -> the time it
    is deleted as of. A delete deletes its id; a user deleted as of T (by its own delete or as a connected
    id) deletes, as A# and U#, every id connected to it by an event stamped at or before T (transitive)."""
    deleted: dict[str, str] = {}
    for event in as_applied(events):
        if event["type"] == "delete":
            key = f"U#{event['userId']}" if "userId" in event else f"A#{event['anonymousId']}"
            deleted[key] = max(deleted.get(key, ""), event["timestamp"])
    linked = connections(events)
    changed = True
    while changed:
        changed = False
        for user, other, when in linked:
            at = deleted.get(f"U#{user}")
            for key in (f"A#{other}", f"U#{other}"):
                if at is not None and when <= at and deleted.get(key, "") < at:
                    deleted[key], changed = at, True
    return deleted


def owner(event: dict[str, Any]) -> str:
    """The entity whose profile an event changes (besides a group's); none for one not applied."""
    applied = as_applied([event])
    if not applied:
        return "-"
    event = applied[0]
    return f"U#{event['userId']}" if "userId" in event else f"A#{event['anonymousId']}"


def respecting_the_exclusion(messages: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """The messages with every event docs/privacy.md's one excluded order would apply early moved later: an
    event of an id, stamped after T, in an earlier message than the one that raises the id's deletion
    time to T (by the delete, or by the event connecting the id to a deleted user) goes into that
    message. Moves only go later, and can only push raises later, so this ends."""
    messages = [list(message) for message in messages]
    while True:
        raised: list[dict[str, str]] = []
        before: dict[str, str] = {}
        so_far: list[dict[str, Any]] = []
        for message in messages:
            so_far += message
            now = deletion_times(so_far)
            raised.append({key: at for key, at in now.items() if before.get(key, "") < at})
            before = now
        move = next(
            (
                (j, n, max(later))
                for j, message in enumerate(messages)
                for n, event in enumerate(message)
                if event["type"] != "delete"
                and (
                    later := [
                        i
                        for i in range(j + 1, len(messages))
                        if raised[i].get(owner(event), event["timestamp"]) < event["timestamp"]
                    ]
                )
            ),
            None,
        )
        if move is None:
            return messages
        j, n, i = move
        messages[i].append(messages[j].pop(n))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=st.lists(segment_event(), min_size=1, max_size=10), data=st.data())
def test_any_order_with_duplicates_in_any_messages_converges(aws, events, data):
    from segment_bridge.store import get_store

    store = get_store()
    mapping = MAPPING
    tables = [aws.tables["ProfilesTable"], aws.tables["EventsTable"]]
    events = numbered(events)

    reference = f"ref{uuid.uuid4().hex[:8]}"
    store.profiles.start_deleted_ids(reference)  # as for a new workspace: deletes go through the index
    apply_batch(reference, [dict(e) for e in events], mapping, store)

    shuffled = data.draw(st.permutations(events))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=6))
    delivery = data.draw(st.permutations(shuffled + repeats))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(delivery) - 1)), max_size=4)))
    messages = respecting_the_exclusion(
        [delivery[a:b] for a, b in zip([0, *cuts], [*cuts, len(delivery)], strict=True) if delivery[a:b]]
    )

    candidate = f"run{uuid.uuid4().hex[:8]}"
    store.profiles.start_deleted_ids(candidate)
    for message in messages:
        apply_batch(candidate, [dict(e) for e in message], mapping, store)

    assert state(candidate, tables) == state(reference, tables)
    assert read_model(candidate, events) == read_model(reference, events)
    assert not any(blocked in item for item in state(reference, tables) for blocked in BLOCKED_KEYS)


BLOCKED_KEYS = [f'#{kind}#{value}"' for kind in ("U", "A", "LINK") for value in BLOCKED]
"""No profile, link or history item is ever keyed by a blocked id."""


def read_model(workspace_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the read model answers for every id the events name (as user and anonymous id): linked ids,
    refused links and counts with linked, or not found."""
    from segment_bridge.errors import NotFound
    from segment_bridge.read.model import Reader
    from segment_bridge.store import get_store

    reader = Reader(get_store().reading)
    reader._protection[workspace_id] = PROTECTION  # the mapping the property applies (not stored)
    ids = {e[name] for e in events for name in ("userId", "anonymousId", "previousId") if name in e}
    answers: dict[str, Any] = {}
    for value in sorted(ids):
        for id_type in ("user_id", "anonymous_id"):
            try:
                user = reader.user(workspace_id, id_type, value)  # type: ignore[arg-type]
            except NotFound:
                answers[f"{id_type}:{value}"] = None
                continue
            answers[f"{id_type}:{value}"] = (user.key, user.linked, user.refused, user.counts_with_linked)
    return answers


def applied_in_messages(aws: Any, messages: list[list[dict[str, Any]]]) -> list[str]:
    """The state of a fresh workspace after applying the messages one after another."""
    from segment_bridge.store import get_store

    workspace_id = f"run{uuid.uuid4().hex[:8]}"
    get_store().profiles.start_deleted_ids(workspace_id)
    for message in messages:
        apply_batch(workspace_id, [dict(e) for e in message], Mapping(), get_store())
    return state(workspace_id, [aws.tables["ProfilesTable"], aws.tables["EventsTable"]])


def _event(kind: str, n: int, at: str, **ids: str) -> dict[str, Any]:
    return {"type": kind, "timestamp": at, "receivedAt": at, "messageId": f"m{n}", **ids}


def test_an_id_shared_by_two_deleted_users_ends_in_the_same_tables_in_every_order(aws):
    """The order hypothesis found before deletes converged: a1 linked to u1, then to u2 (so its stored
    link names u2), both users deleted; the tombstones (A# and U# of a1) and links end the same."""
    events = [
        _event("identify", 0, TIMES[0], userId="u1", anonymousId="a1"),
        _event("identify", 1, TIMES[1], userId="u2", anonymousId="a1"),
        _event("delete", 2, TIMES[1], userId="u1"),
        _event("delete", 3, TIMES[2], userId="u2"),
    ]
    reference = applied_in_messages(aws, [events])
    for order in ([0, 1, 2, 3], [2, 0, 1, 3], [3, 2, 1, 0], [1, 3, 0, 2]):
        assert applied_in_messages(aws, [[events[n]] for n in order]) == reference
    assert any('"pk": "WS#_#U#a1", "sk": "DELETED"' in item for item in reference)


def test_a_delete_reaches_the_ids_of_a_user_id_it_takes_whatever_the_order(aws):
    """Transitive: u1 was aliased to u2, a1 was u1's anonymous id; deleting u2 takes u1 and so a1."""
    events = [
        _event("alias", 0, TIMES[0], userId="u2", previousId="u1"),
        _event("track", 1, TIMES[0], userId="u1", anonymousId="a1", event="Signed Up"),
        _event("track", 2, TIMES[0], anonymousId="a1", event="Browsed"),
        _event("delete", 3, TIMES[1], userId="u2"),
    ]
    reference = applied_in_messages(aws, [events])
    assert set(deletion_times(events)) == {"U#u2", "A#u1", "U#u1", "A#a1", "U#a1"}
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 2, 3, 0], [3, 0, 1, 2]):
        assert applied_in_messages(aws, [[events[n]] for n in order]) == reference
    assert not any('"sk": "PROFILE"' in item for item in reference)  # all of it was at or before T
    assert any('"pk": "WS#_#A#a1", "sk": "DELETED"' in item for item in reference)


# --- a delete interleaved between a writer's steps (issue 21) -----------------------------------------

BOUNDARIES = ("put_link", "put_profile", "record")
"""The store calls that open a writer's steps 3 (links), 4 (profiles) and 5 (history and memberships): the
delete is applied by a second invocation just before the drawn one."""


def left_at_or_before(workspace_id: str, aws: Any, deleted: dict[str, str]) -> list[str]:
    """What the tables still hold of each deleted entity stamped at or before its deletion time: history
    items and counted markers, memberships of groups its profile does not keep as joined after it, links
    of its id made by then, and profile fields stamped by then."""
    dynamodb = boto3.resource("dynamodb")
    prefix = f"WS#{workspace_id}#"
    found: list[dict[str, Any]] = []
    for table in (aws.tables["ProfilesTable"], aws.tables["EventsTable"]):
        answer = dynamodb.Table(table).scan(FilterExpression=Attr("pk").begins_with(prefix))
        found += answer["Items"]
    profiles = {str(i["pk"]).removeprefix(prefix): i for i in found if i["sk"] == "PROFILE"}
    left = []
    for item in found:
        pk, sk = str(item["pk"]).removeprefix(prefix), str(item["sk"])
        if pk in deleted and "timestamp" in item and str(item["timestamp"]) <= deleted[pk]:
            left.append(f"{pk} {sk} stamped {item['timestamp']}")
        if sk.startswith("MEMBER#") and sk.removeprefix("MEMBER#") in deleted:
            member, group = sk.removeprefix("MEMBER#"), pk.removeprefix("G#")
            kept = profiles.get(member, {}).get("groups", {})
            if str(kept.get(group, "")) <= deleted[member]:
                left.append(f"{member} member of {group}")
        if pk.startswith("LINK#"):
            previous = pk.removeprefix("LINK#")
            for key in (f"A#{previous}", f"U#{previous}"):
                if key in deleted and str(item["stamp"])[:24] <= deleted[key]:
                    left.append(f"link of {previous} stamped {item['stamp']}")
    for key, profile in profiles.items():
        if key not in deleted:
            continue
        at = deleted[key]
        stamps = [str(s[0]) for s in profile.get("trait_stamps", {}).values()]
        stamps += [str(s[0]) for s in profile.get("preference_stamps", {}).values()]
        stamps += [str(v) for values in profile.get("channels", {}).values() for v in values.values()]
        stamps += [str(v) for v in profile.get("groups", {}).values()]
        stamps += [str(v) for v in profile.get("anonymous_ids", {}).values()]
        stamps += [str(profile[k]) for k in ("first_seen",) if profile.get(k)]
        left += [f"{key} profile stamped {s}" for s in stamps if s <= at]
    return left


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    events=st.lists(segment_event().filter(lambda e: e["type"] != "delete"), min_size=1, max_size=8),
    deleted=st.sampled_from([{"userId": u} for u in USERS] + [{"anonymousId": a} for a in ANONYMOUS]),
    at=st.sampled_from(TIMES),
    boundary=st.sampled_from(BOUNDARIES),
    nth=st.integers(0, 3),
    data=st.data(),
)
def test_a_delete_between_a_writers_steps_leaves_nothing_stamped_at_or_before_it(
    aws, events, deleted, at, boundary, nth, data
):
    """A delete applied by another invocation at a step boundary of a writer (before its n-th link,
    profile or history write): once both are done, nothing of any entity the delete reaches (the model,
    `deletion_times`, of every event) is stamped at or before its time anywhere in the tables."""
    from segment_bridge.store import get_store

    store = get_store()
    events = numbered(events)
    delete = {"type": "delete", "timestamp": at, "receivedAt": at, "messageId": "del", **deleted}
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(events) - 1)), max_size=3)))
    messages = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True) if events[a:b]]

    workspace_id = f"race{uuid.uuid4().hex[:8]}"
    store.profiles.start_deleted_ids(workspace_id)
    real = getattr(store.profiles, boundary)
    calls, done = [0], []

    def step(*args: Any, **kwargs: Any) -> Any:
        if not done and args[0] == workspace_id:
            if calls[0] == nth:
                done.append(True)
                apply_batch(workspace_id, [dict(delete)], Mapping(), store)
            calls[0] += 1
        return real(*args, **kwargs)

    setattr(store.profiles, boundary, step)
    try:
        for message in messages:
            apply_batch(workspace_id, [dict(e) for e in message], Mapping(), store)
    finally:
        delattr(store.profiles, boundary)
    if not done:  # the writer made fewer such calls: the delete comes after it
        apply_batch(workspace_id, [dict(delete)], Mapping(), store)

    model = deletion_times([*events, delete])
    assert left_at_or_before(workspace_id, aws, model) == []
