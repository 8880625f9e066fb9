"""Mappings as a whole, through the operator's commands (`mapping set` / `mapping show`, the store's
set_mapping / get_mapping): any document either validates and round-trips exactly, or is refused with a
clear one-line error naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge_dev.events import DEMO_WORKSPACE_ID as WS
from segment_bridge.mapping import ALL_EVENT_TYPES, DEFAULT_CHANNELS

FIELDS = (
    "event_types",
    "include_events",
    "exclude_events",
    "event_prefix",
    "channels",
    "preferences",
    "history_days",
    "merge_protection",
)
PROTECTION_FIELDS = ("blocked_values", "blocked_patterns", "max_anonymous_ids", "anonymous_ids_window_days")

texts = st.text(max_size=40) | st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
hostile = st.sampled_from(
    ["\x1b[2J", "\r", "\u202eevil", "line\nbreak", "\x85", "\u2028", "'\"\\", "é", "😀"]
)
huge = st.sampled_from([("x", 140_000), ("é", 210_000), ("😀", 105_000)]).map(lambda c: c[0] * c[1])
"""140 to 420 KB of UTF-8: past DynamoDB's 400 KB item alone or a few together."""
strings = texts | hostile | st.builds(lambda s, n: s * n, texts, st.integers(1, 20_000)) | huge
scalars = st.none() | st.booleans() | st.integers(-(10**40), 10**40) | st.floats(allow_nan=False) | strings
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
names = st.lists(strings, max_size=6) | st.lists(
    st.sampled_from(["Signed Up", "Order Completed"]), max_size=3
)
paths = st.sampled_from(["email", "phone", "contact.email", "emails[0]", "[email, alt]", "length(@)", "a ||"])


def good_value(field: str) -> st.SearchStrategy[Any]:
    return {
        "event_types": st.lists(st.sampled_from(sorted(ALL_EVENT_TYPES)), max_size=7),
        "include_events": st.none() | names,
        "exclude_events": names,
        "event_prefix": st.text(max_size=64) | hostile,
        "channels": st.dictionaries(st.sampled_from(sorted(DEFAULT_CHANNELS)), paths, max_size=4),
        "preferences": st.dictionaries(st.just("language"), paths, max_size=1),
        "history_days": st.integers(-5, 4000),
        "merge_protection": st.fixed_dictionaries(
            {},
            optional={
                "blocked_values": st.lists(strings, max_size=5),
                "blocked_patterns": st.lists(
                    st.sampled_from(["^test", "(", "[0-9]{3}", "x" * 600]), max_size=3
                ),
                "max_anonymous_ids": st.integers(-1, 10**6),
                "anonymous_ids_window_days": st.none() | st.integers(-1, 4000),
                **{name: anything for name in ("bogus",)},
            },
        ),
    }[field]


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """Mostly mapping-shaped documents: each field well typed, of a wrong type, or left out; now and then
    an unknown key, a nested value anywhere, or not an object at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(anything)
    document: dict[str, Any] = {}
    for field in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=len(FIELDS))):
        document[field] = draw(good_value(field) if draw(st.integers(0, 3)) else anything)
    if draw(st.integers(0, 5)) == 0:
        document[draw(texts.filter(lambda key: key not in FIELDS and key != "version"))] = draw(anything)
    return document


@pytest.fixture
def mapping_file(tmp_path: Path):
    def write(document: Any, name: str, ascii_only: bool) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(document, ensure_ascii=ascii_only), encoding="utf-8")
        return path

    return write


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents(), ascii_only=st.booleans())
def test_any_mapping_document_round_trips_exactly_or_is_refused_in_one_line_naming_the_field(
    document, ascii_only, sb, workspaces, mapping_file
):
    from segment_bridge.mapping import Mapping

    path = mapping_file(document, "mapping.json", ascii_only)
    before = workspaces.get_mapping(WS)
    applied = sb("mapping", "set", WS, str(path))
    if applied.status != 0:
        assert applied.out == ""
        error = json.loads(applied.err)  # one JSON line: {"code", "message"}
        assert applied.err.count("\n") == 1
        assert error["code"] in ("invalid", "invalid_payload")
        assert "Traceback" not in error["message"]
        if isinstance(document, dict):
            assert any(
                f"{field}:" in error["message"] or f"{field}." in error["message"] for field in document
            ), error
        assert workspaces.get_mapping(WS) == before  # nothing stored
        text = sb("mapping", "set", WS, str(path), json_flag=False)
        assert text.status == 1
        assert text.err.startswith("error: ")
        assert text.err.count("\n") == 1
        assert not any(char in text.err for char in "\x1b\r\u202e\x85\u2028")
        return

    stored = workspaces.get_mapping(WS)
    assert stored.version == before.version + 1
    expected = Mapping.model_validate({k: v for k, v in document.items() if k != "version"})
    assert stored.model_copy(update={"version": 0}) == expected.model_copy(update={"version": 0})

    shown = sb("mapping", "show", WS).json
    again = sb("mapping", "set", WS, str(mapping_file(shown, "shown.json", ascii_only)))
    assert again.status == 0, again.err
    assert sb("mapping", "show", WS).json == {**shown, "version": stored.version + 1}

    as_text = sb("mapping", "show", WS, json_flag=False)  # what an operator copies from the terminal
    assert not any(char in as_text.out for char in "\x1b\r\u202e\x85\u2028")
    (path.parent / "shown.yaml").write_text(as_text.out, encoding="utf-8")
    assert sb("mapping", "set", WS, str(path.parent / "shown.yaml")).status == 0
    assert sb("mapping", "show", WS).json == {**shown, "version": stored.version + 2}


def test_a_json_mapping_with_a_lone_surrogate_escape_is_refused_naming_the_field(sb, tmp_path):
    """JSON allows the escape "\\ud800" alone; no text is that: refused in one line naming where, never
    stored (DynamoDB could not encode it) and never a crash."""
    path = tmp_path / "mapping.json"
    path.write_text('{"exclude_events": ["ok", "bad \\ud800"]}', encoding="utf-8")
    refused = sb("mapping", "set", WS, str(path))
    assert refused.status == 1
    assert refused.error["code"] == "invalid_payload"
    assert refused.error["message"].startswith("exclude_events.1:")
    emoji = tmp_path / "emoji.json"
    emoji.write_text('{"exclude_events": ["\\ud83d\\ude00"]}', encoding="utf-8")  # a pair: one emoji
    assert sb("mapping", "set", WS, str(emoji)).status == 0
    assert sb("mapping", "show", WS).json["exclude_events"] == ["\U0001f600"]
