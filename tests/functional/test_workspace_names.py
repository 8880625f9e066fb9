"""`workspaces create` refuses a name already in use (issue 21): a second "Acme" is most often the same
create run twice, which would leave a tenant nobody uses holding a live key."""

from __future__ import annotations


def test_creating_a_workspace_name_twice_is_refused_and_creates_nothing(sb):
    first = sb("workspaces", "create", "Acme")
    assert first.status == 0

    for again in ("Acme", "  acme ", "ACME"):
        refused = sb("workspaces", "create", again)
        assert refused.status != 0
        assert refused.error["code"] == "conflict"
        assert first.json["workspace_id"] in refused.error["message"]

    names = [w["name"] for w in sb("workspaces", "list").json]
    assert sorted(names) == ["Acme", "Demo", "Signed"]


def test_a_duplicate_name_is_created_when_the_operator_says_so(sb):
    first = sb("workspaces", "create", "Acme").json
    second = sb("workspaces", "create", "Acme", "--allow-duplicate-name").json
    assert second["workspace_id"] != first["workspace_id"]
    assert [w["name"] for w in sb("workspaces", "list").json].count("Acme") == 2


def test_a_different_name_is_not_taken_for_a_duplicate(sb):
    sb("workspaces", "create", "Acme")
    assert sb("workspaces", "create", "Acme Corp").status == 0
