import pytest
from pydantic import ValidationError

from segment_bridge.mapping import Mapping, event_name


def test_defaults_map_suprsend_channels_and_language():
    mapping = Mapping()
    traits = {
        "email": "ada@example.com",
        "phone": "+15555550100",
        "whatsapp": "+15555550101",
        "slackEmail": "ada@corp.example",
        "slackUserID": "U123",
        "fcmAndroidpush": "fcm-token",
        "xiaomiAndroidpush": "mi-token",
        "apnsIospush": "apns-token",
        "language": "hi",
    }
    assert mapping.channel_values(traits) == {
        "email": ["ada@example.com"],
        "sms": ["+15555550100"],
        "whatsapp": ["+15555550101"],
        "slack_email": ["ada@corp.example"],
        "slack_user_id": ["U123"],
        "androidpush_fcm": ["fcm-token"],
        "androidpush_xiaomi": ["mi-token"],
        "iospush_apns": ["apns-token"],
    }
    assert mapping.preference_values(traits) == ({"language": "hi"}, 0)


@pytest.mark.parametrize("language", ["xx", "english", "en-US", 42, "", "EN "])
def test_language_is_accepted_only_as_an_iso_639_1_code(language):
    valid, ignored = Mapping().preference_values({"language": language})
    if language == "EN ":
        assert (valid, ignored) == ({"language": "en"}, 0)
    else:
        assert (valid, ignored) == ({}, 1)


def test_channel_paths_are_jmespath_and_take_lists():
    mapping = Mapping(channels={"email": "contact.emails", "sms": "phones[?primary].number"})
    traits = {
        "contact": {"emails": ["a@x.io", "b@x.io", 7, ""]},
        "phones": [{"number": "+1", "primary": True}, {"number": "+2", "primary": False}],
    }
    assert mapping.channel_values(traits) == {"email": ["a@x.io", "b@x.io"], "sms": ["+1"]}


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"channels": {"email": "traits[["}}, "channels.email"),
        ({"channels": {"fax": "fax"}}, "channels.fax"),
        ({"preferences": {"timezone": "tz"}}, "preferences.timezone"),
        ({"event_types": ["track", "purchase"]}, "event_types"),
        ({"history_days": 0}, "history_days"),
        ({"event_prefx": "segment : "}, "event_prefx"),
    ],
)
def test_an_invalid_mapping_is_refused_naming_the_field(config, field):
    with pytest.raises(ValidationError) as caught:
        Mapping.model_validate(config)
    assert field in str(caught.value)


def test_event_filters_apply_to_names_before_the_prefix():
    mapping = Mapping(
        include_events={"Signed Up", "Viewed Pricing Page"},
        exclude_events={"Viewed Pricing Page"},
        event_prefix="segment : ",
    )
    assert mapping.keeps_event("Signed Up")
    assert not mapping.keeps_event("Viewed Pricing Page")
    assert not mapping.keeps_event("Logged In")


@pytest.mark.parametrize(
    ("event", "name"),
    [
        ({"type": "track", "event": "Signed Up"}, "Signed Up"),
        ({"type": "page", "name": "Pricing"}, "Viewed Pricing Page"),
        ({"type": "page"}, "Loaded a Page"),
        ({"type": "screen", "name": "Settings"}, "Viewed Settings Screen"),
        ({"type": "screen", "name": ""}, "Loaded a Screen"),
    ],
)
def test_event_names_follow_segment_destination_conventions(event, name):
    assert event_name(event) == name
