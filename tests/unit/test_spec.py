import pytest

from segment_bridge.ingest.spec import InvalidEvent, validate_event


def event(kind: str, **fields):
    return {"type": kind, "userId": "u1", **fields}


@pytest.mark.parametrize(
    "raw",
    [
        event("identify", traits={"email": "a@example.com"}),
        event("track", event="Signed Up"),
        event("page", name="Home"),
        event("screen", name="Settings"),
        event("group", groupId="g1"),
        event("alias", previousId="anon-1"),
        event("delete"),
        {"type": "track", "anonymousId": "anon-1", "event": "Viewed"},
        {"type": "track", "userId": 42, "event": "Viewed"},
        event("track", event="Viewed", customField={"kept": True}),
    ],
)
def test_spec_accepts_every_call_type(raw):
    model = validate_event(raw)
    assert model.type == raw["type"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"type": "track", "event": "Viewed"}, "userId or anonymousId is required"),
        ({"type": "track", "userId": "", "anonymousId": "", "event": "Viewed"}, "userId"),
        (event("track"), "event: Field required"),
        (event("track", event=""), "event: String should have at least 1 character"),
        (event("group"), "groupId: Field required"),
        (event("alias"), "previousId: Field required"),
        ({"type": "alias", "anonymousId": "a", "previousId": "p"}, "alias needs the userId"),
        ({"userId": "u1"}, "type is required"),
        (event("purchase"), "unsupported type"),
        (["not", "an", "object"], "must be a JSON object, not an array"),
        ("text", "must be a JSON object, not a string"),
        (event("track", event="x", timestamp="yesterday"), "timestamp"),
        (event("track", event="x", messageId="m" * 101), "messageId"),
        (event("identify", traits=["not", "a", "map"]), "traits"),
    ],
)
def test_spec_rejects_with_a_reason(raw, reason):
    with pytest.raises(InvalidEvent) as caught:
        validate_event(raw)
    assert reason in caught.value.reason


def test_reasons_never_echo_the_values_sent():
    with pytest.raises(InvalidEvent) as caught:
        validate_event(event("track", event="x", timestamp="secret-user@example.com"))
    assert "secret-user@example.com" not in caught.value.reason


def test_numeric_ids_are_taken_as_strings():
    assert validate_event({"type": "group", "userId": 7, "groupId": 9}).groupId == "9"
