"""Every segment-bridge command, given hostile arguments, ends in its result or a {"code", "message"}
error on stderr with a documented exit status (1 refused or failed, 2 wrong usage): never a traceback.

The CLI runs in process (bridge_dev.cli.main, what the console script calls) against the template's
resources on moto; the JSON-taking options get hypothesis' JSON (floats, NaN, empty keys, deep nesting).
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge_dev import cli as cli_module
from bridge_dev.events import DEMO_WORKSPACE_ID, FLOW_COMPLETED_RULE
from tests.conftest import ROOT
from tests.functional.conftest import Run

NOPE = "ws_nope"
EVENTS = ROOT / "events"
FUNCTIONS = ("IngestFunction", "ProcessorFunction", "EmitterFunction")


FILES: list[Path] = []
"""The module's scratch folder (one, removed with everything in it once the module's tests are done)."""


@pytest.fixture(scope="module", autouse=True)
def scratch() -> Iterator[None]:
    with tempfile.TemporaryDirectory(prefix="cli-never-traces-") as folder:
        FILES.append(Path(folder))
        yield
        FILES.pop()


def write(document: Any, suffix: str = ".json") -> Path:
    """A file holding `document` (text as is, anything else as JSON) in the module's scratch folder."""
    path = FILES[-1] / f"{uuid.uuid4().hex}{suffix}"
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


NOT_FOUND = [
    ("workspaces", "rotate-key", NOPE),
    ("workspaces", "revoke-key", NOPE, "k_1"),
    ("workspaces", "secret", NOPE, "--set", "s3cret"),
    ("destination", "set", NOPE, "--write-key", "wk_0123456789abcdef"),
    ("destination", "show", NOPE),
    ("mapping", "show", NOPE),
    ("mapping", "preview", NOPE, str(EVENTS / "ingest_webhook_batch.json")),
    ("users", "show", NOPE, "user-1"),
    ("users", "show", "a#b", "user-1"),
    ("events", "list", NOPE, "user-1"),
    ("events", "list", "", "user-1"),
    ("groups", "show", NOPE, "g-1"),
    ("rejected", "list", NOPE),
    ("replay", NOPE, "--since", "2026-01-01"),
    ("publish", NOPE, "--event", "Signed Up", "--user", "u-1"),
    ("stats", NOPE),
    ("tail", NOPE, "--seconds", "0.2"),
    ("rules", "delete", "no-such-rule"),
    ("invoke", "NoSuchFunction", "-e", str(EVENTS / "ingest_webhook_batch.json")),
]


@pytest.mark.parametrize("args", NOT_FOUND, ids=[" ".join(a[:2]) for a in NOT_FOUND])
def test_an_unknown_workspace_or_name_is_not_found_with_exit_1(sb, args):
    run = sb(*args)
    assert (run.status, run.error["code"]) == (1, "not_found"), run.err


USAGE = [
    ("rejected", "list", DEMO_WORKSPACE_ID, "--date", "2026-13-01"),
    ("replay", DEMO_WORKSPACE_ID, "--since", "yesterday"),
    ("replay", DEMO_WORKSPACE_ID, "--since", "2026-02-01", "--until", "2026-01-01"),
    ("mapping", "validate", "/no/such/mapping.yaml"),
    ("mapping", "set", DEMO_WORKSPACE_ID, "/no/such/mapping.yaml"),
    ("invoke", "IngestFunction", "-e", "/no/such/event.json"),
    ("rules", "set", "/no/such/rule.yaml"),
    ("rules", "test", str(EVENTS / "emitter_change_rule_modify.json")),
    ("publish", DEMO_WORKSPACE_ID, "--event", "E", "--user", "u", "--properties", "[1]"),
    ("publish", DEMO_WORKSPACE_ID, "--event", "E", "--user", "u", "--properties", '{"x": NaN}'),
    ("publish", DEMO_WORKSPACE_ID, "--event", "E", "--user", "u", "--properties", "{"),
    ("publish", DEMO_WORKSPACE_ID, "--event", "E"),
    ("stats", DEMO_WORKSPACE_ID, "--days", "0"),
    ("dlq", "list", "nowhere"),
    ("no-such-command",),
]


@pytest.mark.parametrize("args", USAGE, ids=[" ".join(a[:2]) for a in USAGE])
def test_wrong_usage_is_code_usage_with_exit_2(sb, args):
    run = sb(*args)
    assert (run.status, run.error["code"]) == (2, "usage"), run.err


def test_without_json_errors_are_one_line_on_stderr_not_a_traceback(sb):
    run = sb("events", "list", NOPE, "user-1", json_flag=False)
    assert run.status == 1
    assert run.err.strip() == f"error: No workspace {NOPE}."


def test_publish_takes_floats_and_leaves_out_empty_keys(sb):
    run = sb(
        "publish", DEMO_WORKSPACE_ID, "--event", "Paid", "--user", "u-1", "--properties", '{"x": 0.5, "": 1}'
    )
    assert run.status == 0, run.err
    assert json.loads(run.out)["messageId"].startswith("sbo-")


def test_a_number_dynamodb_cannot_hold_is_refused_with_why(sb):
    run = sb(
        "publish", DEMO_WORKSPACE_ID, "--event", "E", "--user", "u", "--properties", '{"x": ' + "9" * 40 + "}"
    )
    assert (run.status, run.error["code"]) == (1, "invalid_payload")
    assert "38 digits" in run.error["message"]


def test_an_invalid_rule_is_refused_naming_each_field(sb):
    bad = {"name": "no spaces allowed", "table": "", "when": "new.[", "event": "E", "properties": {"x": ""}}
    run = sb("rules", "set", str(write(bad)))
    assert (run.status, run.error["code"]) == (1, "invalid")
    for field_name in ("name", "table", "when", "properties.x"):
        assert f"{field_name}:" in run.error["message"]


def test_a_file_that_is_not_json_is_invalid_payload(sb):
    run = sb("invoke", "ProcessorFunction", "-e", str(write("{not json")))
    assert (run.status, run.error["code"]) == (1, "invalid_payload")


WRONG_SHAPES: list[Any] = [
    {},
    {"Records": "x"},
    {"Records": [{"body": 5}]},
    {"Records": [None, 1.5]},
    {"x": {"": 0.1}},
]


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("event", WRONG_SHAPES, ids=range(len(WRONG_SHAPES)))
def test_invoke_with_an_event_of_the_wrong_shape_answers_or_says_the_function_failed(sb, function, event):
    run = sb("invoke", function, "-e", str(write(event)))
    assert run.status in (0, 1)
    if run.status == 1:
        assert run.error["code"] == "function_error"
        assert run.error["message"].startswith(f"{function} failed: ")


def test_a_missing_stack_is_no_stack_with_exit_1(capsys):
    status = cli_module.main(["--endpoint", "http://127.0.0.1:9", "stats", "--json"])
    body = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (status, body["code"]) == (1, "no_stack")


# --- hypothesis: the JSON-taking options ------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
DOCUMENTED = {0, 1, 2}
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _answered(run: Run) -> None:
    assert run.status in DOCUMENTED
    if run.status:
        assert run.error["code"] != "internal_error", run.error
        assert not run.error["message"].startswith(("TypeError", "KeyError", "AttributeError")), run.error


@FEW
@given(properties=JSON)
def test_publish_properties_of_any_json_answer_or_refuse(sb, properties):
    run = sb(
        "publish", DEMO_WORKSPACE_ID, "--event", "E", "--user", "u", "--properties", json.dumps(properties)
    )
    _answered(run)
    if not isinstance(properties, dict):
        assert run.error["code"] == "usage"


MAPPING_FIELDS = st.sampled_from(
    [
        "event_types",
        "include_events",
        "exclude_events",
        "event_prefix",
        "channels",
        "preferences",
        "history_days",
        "version",
        "",
    ]
)


@FEW
@given(mapping=st.dictionaries(MAPPING_FIELDS, JSON, max_size=4) | JSON)
def test_mapping_files_of_any_json_are_valid_or_refused_with_a_documented_error(sb, mapping):
    path = write(mapping)
    _answered(sb("mapping", "validate", str(path)))
    _answered(sb("mapping", "set", DEMO_WORKSPACE_ID, str(path)))


@FEW
@given(
    function=st.sampled_from(FUNCTIONS),
    event=st.dictionaries(st.sampled_from(["Records", "body", "headers", ""]), JSON) | JSON,
)
def test_invoke_events_of_any_json_answer_or_say_why(sb, function, event):
    _answered(sb("invoke", function, "-e", str(write(event))))


@FEW
@given(
    rule=st.fixed_dictionaries(
        {}, optional={"name": JSON, "table": JSON, "when": JSON, "event": JSON, "properties": JSON}
    )
)
def test_rule_files_of_any_json_are_stored_or_refused(sb, rule):
    valid = FLOW_COMPLETED_RULE.model_dump(mode="json") | rule
    _answered(sb("rules", "set", str(write(valid))))
    _answered(
        sb("rules", "test", str(write(valid)), "--record", str(EVENTS / "emitter_change_rule_modify.json"))
    )
