"""The read model against a model computed from the events alone: for any set of events the processor
applied, in any order and any messages (with the one order the README excludes left out, as in
test_convergence), what the read model answers for every id, as a user id and as an anonymous id, is
what the events say: which profile it answers for (resolved through the latest link the limit keeps),
its linked ids and refused links, its counts with its linked ids', and nothing for deleted users."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segment_bridge.mapping import event_name
from segment_bridge.processor.unit import apply_batch
from tests.functional.test_convergence import (
    MAPPING,
    PROTECTION,
    as_applied,
    deletion_times,
    numbered,
    respecting_the_exclusion,
    segment_event,
)


def owner(event: dict[str, Any]) -> str:
    return f"U#{event['userId']}" if "userId" in event else f"A#{event['anonymousId']}"


def modelled(events: list[dict[str, Any]]) -> dict[str, Any]:
    """id_type:id -> (entity answered for, linked ids, refused links, counts with linked), or None."""
    deleted = deletion_times(events)
    applied = as_applied(events)
    kept = [e for e in applied if e["type"] != "delete" and e["timestamp"] > deleted.get(owner(e), "")]
    present = {owner(e) for e in kept}
    counts: dict[str, Counter[str]] = {}
    for e in kept:
        if e["type"] in ("track", "page"):
            counts.setdefault(owner(e), Counter())[event_name(e)] += 1
    sightings: dict[str, dict[str, str]] = {}
    for e in kept:
        if "userId" not in e:
            continue
        seen = sightings.setdefault(owner(e), {})
        for value in [e.get("anonymousId"), e.get("previousId") if e["type"] == "alias" else None]:
            if value is not None and (value not in seen or e["timestamp"] < seen[value]):
                seen[value] = e["timestamp"]
    latest: dict[str, tuple[str, str, str]] = {}  # previousId -> (timestamp, messageId, user)
    for e in applied:
        previous = (
            e.get("anonymousId")
            if e["type"] == "identify"
            else e.get("previousId")
            if e["type"] == "alias"
            else None
        )
        if previous is None or "userId" not in e:
            continue
        stamp = (e["timestamp"], e["messageId"], e["userId"])
        latest[previous] = max(latest.get(previous, stamp), stamp)
    links = {
        previous: user
        for previous, (when, _, user) in latest.items()
        if all(when > deleted.get(key, "") for key in (f"U#{user}", f"A#{previous}", f"U#{previous}"))
    }

    def answer_for(key: str) -> tuple[str, list[str], list[str], dict[str, int]]:
        total = Counter(counts.get(key, Counter()))
        if key[0] == "A":
            return key, [], [], dict(total)
        user, seen = key[2:], sightings.get(key, {})
        stored = {previous for previous, to in links.items() if to == user}
        allowed = stored & PROTECTION.linked(seen)
        for previous in allowed:
            total += counts.get(f"A#{previous}", Counter())
            if previous != user:
                total += counts.get(f"U#{previous}", Counter())
        linked = sorted(allowed, key=lambda p: (seen.get(p, ""), p))
        return key, linked, sorted(stored - allowed), dict(total)

    answers: dict[str, Any] = {}
    ids = {e[name] for e in events for name in ("userId", "anonymousId", "previousId") if name in e}
    for value in sorted(ids):
        for id_type, kind in (("user_id", "U"), ("anonymous_id", "A")):
            own, target = f"{kind}#{value}", links.get(value)
            answer = None
            if target is not None and not (kind == "U" and target == value):
                if f"U#{target}" not in present:
                    answers[f"{id_type}:{value}"] = None
                    continue
                if value in PROTECTION.linked(sightings.get(f"U#{target}", {})):
                    answer = answer_for(f"U#{target}")
            if answer is None and own in present:
                answer = answer_for(own)
            answers[f"{id_type}:{value}"] = answer
    return answers


def read(workspace_id: str, ids: list[str]) -> dict[str, Any]:
    from segment_bridge.errors import NotFound
    from segment_bridge.read.model import Reader
    from segment_bridge.store import get_store

    reader = Reader(get_store().reading)
    reader._protection[workspace_id] = PROTECTION  # the mapping the property applies (not stored)
    answers: dict[str, Any] = {}
    for value in ids:
        for id_type in ("user_id", "anonymous_id"):
            try:
                user = reader.user(workspace_id, id_type, value)  # type: ignore[arg-type]
            except NotFound:
                answers[f"{id_type}:{value}"] = None
                continue
            answers[f"{id_type}:{value}"] = (user.key, user.linked, user.refused, user.counts_with_linked)
    return answers


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=st.lists(segment_event(), min_size=1, max_size=12), data=st.data())
def test_the_read_model_answers_what_the_events_alone_say(aws, events, data):
    from segment_bridge.store import get_store

    events = numbered(events)
    delivery = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events), max_size=4))))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(delivery) - 1)), max_size=4)))
    messages = respecting_the_exclusion(
        [delivery[a:b] for a, b in zip([0, *cuts], [*cuts, len(delivery)], strict=True) if delivery[a:b]]
    )
    workspace_id = f"read{uuid.uuid4().hex[:8]}"
    get_store().profiles.start_deleted_ids(workspace_id)
    for message in messages:
        apply_batch(workspace_id, [dict(e) for e in message], MAPPING, get_store())

    expected = modelled(events)
    assert read(workspace_id, sorted({k.split(":", 1)[1] for k in expected})) == expected
