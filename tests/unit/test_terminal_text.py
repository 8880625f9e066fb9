"""What the CLI prints of outside values is safe for a terminal: no character a terminal would interpret
(C0 such as ESC and CR, DEL, C1 such as CSI, the line separators, bidi overrides and isolates, lone
surrogates) reaches it; each is shown escaped, and printable text is shown as it is."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge_dev.cli.app import show, table_text, terminal_text, value_text

BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def interpretable(char: str) -> bool:
    """What a terminal may act on instead of showing."""
    return unicodedata.category(char) in {"Cc", "Cs", "Zl", "Zp"} or char in BIDI


any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=60)
"""Any code point, surrogates included (json.loads can make them from `\\ud800`)."""


@given(any_text)
def test_any_text_prints_without_a_control_character(text):
    for printed in (terminal_text(text), value_text(text), value_text({"name": text}), value_text([text])):
        assert not any(interpretable(char) for char in printed), printed
        printed.encode("utf-8")  # printable in a UTF-8 terminal: no lone surrogate left


@given(any_text)
def test_a_table_of_any_text_keeps_its_shape(text):
    rows = [{"name": text, "id": "m-1"}, {"name": "ok", "id": text}]
    lines = table_text(rows, ["name", "id"], "none").split("\n")
    assert len(lines) == 3  # the header and one line per row: no value adds or rewrites a line
    assert not any(interpretable(char) for line in lines for char in line)


@given(st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=60))
def test_printable_text_prints_as_it_is(text):
    if not any(char in BIDI for char in text):
        assert terminal_text(text) == text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]52;c;ZWNobyBwd25lZA==\x07", "\\x1b]52;c;ZWNobyBwd25lZA==\\x07"),
        ("mallory\x1b[2K\radmin-accepted", "mallory\\x1b[2K\\x0dadmin-accepted"),
        ("\x9b31m", "\\x9b31m"),
        ("\x7f", "\\x7f"),
        ("user\u202egnp.exe", "user\\u202egnp.exe"),
        ("a\nb", "a\\x0ab"),
    ],
)
def test_each_kind_of_control_is_shown_escaped(raw, shown):
    assert terminal_text(raw) == shown


def test_show_keeps_the_commands_own_lines_and_json_as_it_is(capsys):
    show(False, None, "line one\nline \x1b[31mtwo")
    assert capsys.readouterr().out == "line one\nline \\x1b[31mtwo\n"
    show(True, {"name": "\x1b]52;c;x\x07"}, "unused")
    assert json.loads(capsys.readouterr().out) == {"name": "\x1b]52;c;x\x07"}
