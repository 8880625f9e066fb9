"""The index of deleted ids (deleted_ids.py): what it may hold, as stored and read back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segment_bridge import deleted_ids
from segment_bridge.deleted_ids import DeletedIds, decoded, fingerprint

entity_keys = st.builds(
    lambda kind, i: f"{kind}#{i}",
    st.sampled_from("UAG"),
    # any text, lone surrogates too (intake refuses them; the index must not crash on one regardless)
    st.text(st.characters(categories=["L", "N", "P", "S", "Z", "Cs", "Cc"]), min_size=1, max_size=80),
)


@given(st.lists(entity_keys, max_size=40), st.lists(entity_keys, max_size=40))
def test_every_key_added_is_held_after_storing_and_reading_back(added: list[str], later: list[str]) -> None:
    index, writes = DeletedIds(0, frozenset()), 0
    for keys in (added, later):
        updated = index.adding(keys)
        if updated is not None:
            assert updated.epoch == index.epoch + 1
            index, writes = decoded(updated.epoch, updated.encoded()), writes + 1
    assert all(index.may_be_deleted(key) for key in [*added, *later])
    assert index.epoch == writes  # one epoch per change, none for adding what it held
    assert index.adding([*added, *later]) is None  # nothing new: no write, the epoch stays


@given(st.sets(entity_keys, min_size=1, max_size=40), entity_keys)
def test_a_key_never_added_is_not_held_unless_its_fingerprint_collides(added: set[str], other: str) -> None:
    index = DeletedIds(0, frozenset()).adding(added)
    assert index is not None
    held = index.may_be_deleted(other)
    assert held == (other in added or fingerprint(other) in {fingerprint(key) for key in added})


def test_an_unknown_index_holds_every_key_and_is_never_written() -> None:
    unknown = DeletedIds(3, None)
    assert unknown.may_be_deleted("U#anyone")
    assert unknown.adding(["U#new"]) is None
    assert decoded(3, None) == unknown


def test_an_index_past_its_limit_becomes_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deleted_ids, "MAX_FINGERPRINTS", 3)
    index = DeletedIds(0, frozenset()).adding(["U#a", "U#b", "U#c"])
    assert index is not None
    assert index.known
    full = index.adding(["U#d"])
    assert full is not None
    assert (full.known, full.epoch) == (False, 2)
    assert full.may_be_deleted("U#zzz")


def test_the_stored_index_holds_fingerprints_not_ids() -> None:
    index = DeletedIds(0, frozenset()).adding(["U#ada.lovelace@example.com"])
    assert index is not None
    assert b"ada" not in index.encoded()
    assert len(index.encoded()) == deleted_ids.FINGERPRINT_BYTES


def test_a_changed_epoch_is_a_change() -> None:
    assert DeletedIds(2, frozenset()).changed_since(DeletedIds(1, frozenset()))
    assert not DeletedIds(1, frozenset()).changed_since(DeletedIds(1, frozenset()))
